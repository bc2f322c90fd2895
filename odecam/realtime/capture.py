"""Newest-frame-only webcam / video-file capture on a background thread.

A live pipeline must never work on a backlog: when inference is slower than the camera,
old frames are worthless. :class:`LatestFrameCapture` reads the source on its own thread,
keeps only the newest frame (older unread frames are dropped and counted) and hands each
frame out once, stamped with its capture time (``time.monotonic()``) and a sequence number.

A video file can stand in for a camera (paced at its own fps, optionally looping; with
``keep_all`` every frame is handed out, the reader waiting for the consumer). A camera
that is unplugged is detected (failing reads), reopened with exponential backoff and picked
up again when the device returns; the ``opener`` is injectable so this can be exercised
without hardware.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Literal, Protocol

import cv2
import numpy as np

__all__ = [
    "CaptureError",
    "CaptureConfig",
    "CapturedFrame",
    "LatestFrameCapture",
    "VideoSource",
    "Opener",
    "default_opener",
]


class CaptureError(RuntimeError):
    """A camera or video file could not be opened (message is one sentence for the user)."""


class VideoSource(Protocol):
    """What the capture needs from an opened source (``cv2.VideoCapture`` satisfies it)."""

    def isOpened(self) -> bool: ...  # noqa: N802 (OpenCV naming)

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...

    def get(self, prop_id: int) -> float: ...

    def set(self, prop_id: int, value: float) -> bool: ...


Opener = Callable[[int | str], VideoSource]
"""Opens a source (camera index, device path / URL, or file path); may raise or return a closed source."""


def default_opener(source: int | str) -> VideoSource:
    """Open ``source`` with OpenCV's default backend."""
    return cv2.VideoCapture(source)


@dataclass(frozen=True)
class CapturedFrame:
    """One captured frame.

    Attributes:
        image: BGR ``uint8`` array ``(H, W, 3)`` as delivered by OpenCV.
        timestamp: ``time.monotonic()`` when the frame became available (after pacing); with
            ``keep_all``, when the consumer took it.
        seq: 0-based capture sequence number; gaps between frames you read are dropped frames.
    """

    image: np.ndarray
    timestamp: float
    seq: int


@dataclass
class CaptureConfig:
    """Configuration of a :class:`LatestFrameCapture`.

    Attributes:
        source: camera index (``0``), device path / stream URL, or a video file path.
        kind: ``"camera"`` (live: failing reads mean unplugged -> reconnect), ``"file"`` (failing
            read = end of file) or ``"auto"`` (ints, digit strings, ``/dev/...`` and URLs are cameras).
        width, height, fps: resolution and rate requested from a camera (ignored for files).
        pace: deliver frames no faster than ``pace_fps`` (None: pace files, not cameras).
        pace_fps: pacing rate; None uses the source's own fps (30 if unknown).
        loop: restart a file at its end instead of ending the stream.
        reconnect: reopen a camera that stopped delivering frames (with backoff).
        max_failed_reads: consecutive failed reads after which a camera counts as disconnected.
        backoff_initial_s, backoff_max_s: first and longest wait between reopen attempts.
        buffer_size: driver-side frame buffer requested from cameras (1 = lowest latency).
        keep_all: hand out every frame: the reader waits until the previous one was read instead of
            replacing it (for a video file whose every frame must be rendered; pacing then follows
            the slower of the file's fps and the consumer). Off = newest frame only (cameras).
    """

    source: int | str = 0
    kind: Literal["auto", "camera", "file"] = "auto"
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    pace: bool | None = None
    pace_fps: float | None = None
    loop: bool = False
    reconnect: bool = True
    max_failed_reads: int = 5
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 2.0
    buffer_size: int = 1
    keep_all: bool = False

    def resolved_source(self) -> int | str:
        """The source as OpenCV wants it: digit strings become camera indices."""
        if isinstance(self.source, str) and self.source.strip().isdigit():
            return int(self.source.strip())
        return self.source

    def is_camera(self) -> bool:
        """Whether the source is treated as a live device."""
        if self.kind != "auto":
            return self.kind == "camera"
        src = self.resolved_source()
        return isinstance(src, int) or src.startswith("/dev/") or "://" in src


def _describe(source: int | str, camera: bool) -> str:
    if isinstance(source, int):
        return f"camera {source}"
    return f"camera '{source}'" if camera else f"video file '{source}'"


class LatestFrameCapture:
    """Reads a camera or video file on a background thread and keeps only the newest frame.

    Usage::

        with LatestFrameCapture(CaptureConfig(source=0)) as cap:
            while True:
                frame = cap.read(timeout=1.0)   # newest unseen frame, or None
                if frame is None:
                    if cap.ended: break
                    continue                    # e.g. camera unplugged: cap.connected is False
                process(frame.image, frame.timestamp)

    Args:
        config: what to open and how (see :class:`CaptureConfig`).
        opener: function that opens the source; inject one to simulate devices in tests.
    """

    def __init__(self, config: CaptureConfig | None = None, opener: Opener | None = None) -> None:
        self.config = config or CaptureConfig()
        self._opener: Opener = opener or default_opener
        self._source = self.config.resolved_source()
        self._is_camera = self.config.is_camera()
        self._cap: VideoSource | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._latest: CapturedFrame | None = None
        self._last_returned = -1
        self._seq = 0
        self._dropped = 0
        self._connected = False
        self._ended = False
        self._disconnects = 0
        self._reconnects = 0
        self._open_attempts = 0
        self._source_fps = 0.0
        self._frame_size: tuple[int, int] | None = None
        self.last_error: str | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "LatestFrameCapture":
        """Open the source and start the reader thread.

        Raises:
            CaptureError: the camera or file cannot be opened.
        """
        if self._thread is not None:
            return self
        if not self._is_camera and isinstance(self._source, str) and not os.path.exists(self._source):
            raise CaptureError(f"Video file '{self._source}' does not exist.")
        cap = self._try_open()
        if cap is None:
            what = _describe(self._source, self._is_camera)
            hint = (
                "check that it is plugged in and not in use by another application"
                if self._is_camera
                else "check that it is a video format OpenCV can decode"
            )
            raise CaptureError(f"Could not open {what}; {hint}.")
        self._cap = cap
        self._connected = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="odecam-capture", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the reader thread and release the source (idempotent)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self._release()

    close = stop

    def __enter__(self) -> "LatestFrameCapture":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ consumer API
    def read(self, timeout: float | None = 1.0) -> CapturedFrame | None:
        """Return the newest frame not returned before, waiting up to ``timeout`` seconds.

        Returns None on timeout (e.g. while a camera is disconnected), or at once when the
        stream has ended (file finished, capture stopped). ``timeout=None`` waits indefinitely.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._latest is None or self._latest.seq <= self._last_returned:
                if self._ended or self._stop.is_set():
                    return None
                if deadline is None:
                    self._cond.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self._cond.wait(remaining)
            frame = self._latest
            self._last_returned = frame.seq
            if self.config.keep_all:
                # the frame waited in its slot for the consumer: its time starts now, when it is taken
                frame = CapturedFrame(image=frame.image, timestamp=time.monotonic(), seq=frame.seq)
                self._cond.notify_all()  # the reader waits for this
            return frame

    @property
    def connected(self) -> bool:
        """True while the source delivers frames; False while a camera is unplugged / reopening."""
        return self._connected

    @property
    def ended(self) -> bool:
        """True once no more frames will come (file ended without loop, reconnect off, stopped)."""
        return self._ended or self._stop.is_set()

    @property
    def dropped(self) -> int:
        """Frames replaced by a newer one before anybody read them."""
        return self._dropped

    @property
    def frames_captured(self) -> int:
        """Frames read from the source so far."""
        return self._seq

    @property
    def disconnects(self) -> int:
        """How many times the camera was lost."""
        return self._disconnects

    @property
    def reconnects(self) -> int:
        """How many times the camera came back after being lost."""
        return self._reconnects

    @property
    def open_attempts(self) -> int:
        """Calls made to the opener (the first open included)."""
        return self._open_attempts

    @property
    def source_fps(self) -> float:
        """Frame rate reported by the source (0 if unknown)."""
        return self._source_fps

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """``(width, height)`` of the last captured frame, None before the first one."""
        return self._frame_size

    # ------------------------------------------------------------------ internals
    def _try_open(self) -> VideoSource | None:
        self._open_attempts += 1
        try:
            cap = self._opener(self._source)
        except Exception as e:  # the device may throw anything while it is (dis)appearing
            self.last_error = f"open failed: {e}"
            return None
        if cap is None or not cap.isOpened():
            self.last_error = "open failed: source not available"
            if cap is not None:
                cap.release()
            return None
        if self._is_camera:
            cfg = self.config
            if cfg.buffer_size:
                cap.set(cv2.CAP_PROP_BUFFERSIZE, cfg.buffer_size)
            if cfg.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.width)
            if cfg.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.height)
            if cfg.fps:
                cap.set(cv2.CAP_PROP_FPS, cfg.fps)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._source_fps = fps if np.isfinite(fps) and fps > 0 else 0.0
        return cap

    def _release(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            try:
                cap.release()
            except Exception:
                pass

    def _pace_period(self) -> float:
        cfg = self.config
        pace = cfg.pace if cfg.pace is not None else not self._is_camera
        if not pace:
            return 0.0
        fps = cfg.pace_fps or self._source_fps or 30.0
        return 1.0 / fps

    def _finish(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def _reopen_with_backoff(self) -> bool:
        """Reopen a lost camera, waiting longer after each failure; False if stopped."""
        delay = self.config.backoff_initial_s
        while not self._stop.is_set():
            cap = self._try_open()
            if cap is not None:
                self._cap = cap
                self._connected = True
                self._reconnects += 1
                return True
            if self._stop.wait(delay):
                return False
            delay = min(delay * 2.0, self.config.backoff_max_s)
        return False

    def _run(self) -> None:
        failed = 0
        t0 = time.monotonic()
        n_paced = 0
        try:
            while not self._stop.is_set():
                if self._cap is None:
                    if not self._reopen_with_backoff():
                        break
                    failed, t0, n_paced = 0, time.monotonic(), 0
                assert self._cap is not None
                try:
                    ok, image = self._cap.read()
                except Exception as e:
                    ok, image = False, None
                    self.last_error = f"read failed: {e}"
                if not ok or image is None:
                    if not self._is_camera:  # end of file
                        self._release()
                        if self.config.loop and self._reopen_file():
                            continue
                        break
                    failed += 1
                    if failed < self.config.max_failed_reads and self._cap.isOpened():
                        self._stop.wait(0.005)
                        continue
                    # The device is gone: report it, then keep trying to get it back.
                    self._connected = False
                    self._disconnects += 1
                    self._release()
                    if not self.config.reconnect:
                        self.last_error = "camera disconnected"
                        break
                    continue
                failed = 0
                period = self._pace_period()
                if period > 0:
                    n_paced += 1
                    due = t0 + n_paced * period
                    now = time.monotonic()
                    if now > due + period:  # fell behind (slow decode): restart the schedule
                        t0, n_paced = now, 0
                    elif due > now and self._stop.wait(due - now):
                        break
                self._publish(image)
        finally:
            self._connected = False
            self._finish()

    def _reopen_file(self) -> bool:
        cap = self._try_open()
        if cap is None:
            return False
        self._cap = cap
        return True

    def _publish(self, image: np.ndarray) -> None:
        if self.config.keep_all:
            with self._cond:  # wait until the consumer took the previous frame
                while (self._latest is not None and self._latest.seq > self._last_returned
                       and not self._stop.is_set()):
                    self._cond.wait(0.05)
                if self._stop.is_set():
                    return
        frame = CapturedFrame(image=image, timestamp=time.monotonic(), seq=self._seq)
        with self._cond:
            if self._latest is not None and self._latest.seq > self._last_returned:
                self._dropped += 1
            self._latest = frame
            self._seq += 1
            self._frame_size = (image.shape[1], image.shape[0])
            self._cond.notify_all()

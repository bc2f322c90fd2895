"""Output side of ``odecam live``: the virtual camera, a file recorder and latency statistics.

* :class:`VirtualCameraSink` puts each avatar frame, letterboxed, on a fixed-size canvas and
  sends it to a pyvirtualcam device from its own pacing thread at a steady rate. Video-call apps
  expect a steady stream, so when inference stalls the last frame is sent again. It records the
  capture-to-sink latency of every new frame in a :class:`LatencyStats`.
* :class:`FileRecorder` writes frames to an ``.mp4`` (H.264, yuv420p, through PyAV), optionally placing
  them in time by their timestamps so a recording plays back at real speed.
* :class:`LatencyStats` keeps a rolling window of latencies: p50 / p95 / p99 and achieved fps.

All frames are BGR ``uint8`` (OpenCV's convention); the conversion to the camera's RGB is done here.
"""
from __future__ import annotations

import os
import platform
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

__all__ = [
    "VirtualCameraUnavailable",
    "RecordingError",
    "SinkConfig",
    "VirtualCameraSink",
    "FileRecorder",
    "LatencyStats",
    "letterbox",
    "virtual_camera_help",
]


class VirtualCameraUnavailable(RuntimeError):
    """No virtual camera device could be opened (message is one sentence telling the user what to do)."""


class RecordingError(RuntimeError):
    """A recording file could not be written (message is one sentence)."""


def virtual_camera_help(system: str | None = None) -> str:
    """One sentence telling the user how to create a virtual camera on ``system`` (default: this OS)."""
    system = system or platform.system()
    if system == "Linux":
        return (
            "No virtual camera device was found; create one with "
            "`sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=odecam` "
            "(Debian/Ubuntu package: v4l2loopback-dkms) and run odecam again."
        )
    if system in ("Windows", "Darwin"):
        return (
            "No virtual camera device was found; install OBS Studio, click 'Start Virtual Camera' "
            "once (then stop it and close OBS) and run odecam again."
        )
    return f"No virtual camera device was found, and pyvirtualcam has no virtual camera backend for {system}."


def letterbox(
    frame: np.ndarray,
    width: int,
    height: int,
    background: tuple[int, int, int] = (0, 0, 0),
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Scale ``frame`` to fit ``width`` x ``height`` keeping its aspect ratio, centred on a ``background`` canvas.

    Args:
        frame: ``(h, w, 3)`` uint8 image (any channel order; ``background`` is in the same order).
        out: optional preallocated ``(height, width, 3)`` uint8 canvas to draw into.
    """
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    h, w = frame.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = out if out is not None else np.empty((height, width, 3), np.uint8)
    x, y = (width - nw) // 2, (height - nh) // 2
    bg = np.asarray(background, np.uint8)
    grey = int(bg[0]) if bg.min() == bg.max() else None  # then a memset: a per-channel broadcast takes ~7 ms at 720p
    for strip in (canvas[:y], canvas[y + nh:], canvas[y:y + nh, :x], canvas[y:y + nh, x + nw:]):  # the borders only
        if strip.size:
            if grey is not None:
                strip.fill(grey)
            else:
                strip[...] = bg
    inner = canvas[y:y + nh, x:x + nw]
    if (nw, nh) == (w, h):
        inner[...] = frame[..., :3]
    else:  # straight into the canvas: no frame-sized temporary
        cv2.resize(np.ascontiguousarray(frame[..., :3]), (nw, nh), dst=inner,
                   interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return canvas


class LatencyStats:
    """Rolling latency / throughput statistics (thread-safe).

    Call :meth:`record` once per delivered frame with its capture-to-sink latency in ms;
    :attr:`fps` is the rate of those records over the window.

    Args:
        window: how many recent frames the statistics cover.
    """

    def __init__(self, window: int = 600) -> None:
        if window < 2:
            raise ValueError(f"LatencyStats window must be at least 2 frames, got {window}.")
        self._lat: deque[float] = deque(maxlen=window)
        self._times: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()
        self.total = 0

    def record(self, latency_ms: float, now: float | None = None) -> None:
        """Add one frame that reached the sink ``latency_ms`` after capture, at time ``now`` (monotonic s)."""
        with self._lock:
            self._lat.append(float(latency_ms))
            self._times.append(time.monotonic() if now is None else float(now))
            self.total += 1

    def reset(self) -> None:
        """Drop all recorded frames."""
        with self._lock:
            self._lat.clear()
            self._times.clear()
            self.total = 0

    @property
    def count(self) -> int:
        """Frames in the current window."""
        return len(self._lat)

    @property
    def fps(self) -> float:
        """Achieved frames per second over the window (0 with fewer than 2 frames)."""
        with self._lock:
            if len(self._times) < 2:
                return 0.0
            span = self._times[-1] - self._times[0]
            return (len(self._times) - 1) / span if span > 0 else 0.0

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100) of the latencies in ms (NaN when empty)."""
        with self._lock:
            if not self._lat:
                return float("nan")
            return float(np.percentile(np.fromiter(self._lat, float), q))

    def as_dict(self) -> dict[str, float]:
        """``{"fps", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms", "frames"}`` over the window."""
        with self._lock:
            lat = np.fromiter(self._lat, float)
        if lat.size == 0:
            nan = float("nan")
            return {"fps": 0.0, "p50_ms": nan, "p95_ms": nan, "p99_ms": nan, "mean_ms": nan, "max_ms": nan, "frames": 0}
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        return {
            "fps": self.fps,
            "p50_ms": float(p50),
            "p95_ms": float(p95),
            "p99_ms": float(p99),
            "mean_ms": float(lat.mean()),
            "max_ms": float(lat.max()),
            "frames": int(lat.size),
        }

    def summary(self) -> str:
        """One line, e.g. ``"29.9 fps | capture->sink p50 41.2 ms, p95 55.0 ms, p99 63.1 ms (n=600)"``."""
        d = self.as_dict()
        if not d["frames"]:
            return "no frames yet"
        return (
            f"{d['fps']:.1f} fps | capture->sink p50 {d['p50_ms']:.1f} ms, "
            f"p95 {d['p95_ms']:.1f} ms, p99 {d['p99_ms']:.1f} ms (n={d['frames']})"
        )


@dataclass
class SinkConfig:
    """Configuration of a :class:`VirtualCameraSink`.

    Attributes:
        width, height: size of the virtual camera picture (the canvas).
        fps: rate at which frames are sent (new or repeated).
        background: BGR colour around the letterboxed avatar.
        backend: pyvirtualcam backend name (``"v4l2loopback"``, ``"obs"``, ``"unitycapture"``); None = any.
        device: device to use (e.g. ``"/dev/video10"``); None = the first free one.
    """

    width: int = 1280
    height: int = 720
    fps: float = 30.0
    background: tuple[int, int, int] = (0, 0, 0)
    backend: str | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if self.width < 2 or self.height < 2 or self.width % 2 or self.height % 2:
            raise ValueError(f"The virtual camera size must be even and at least 2x2, got {self.width}x{self.height}.")
        if not 0 < self.fps <= 240:
            raise ValueError(f"The virtual camera fps must be between 0 and 240, got {self.fps}.")


class VirtualCameraSink:
    """Streams frames to a virtual camera at a steady rate from its own thread.

    Usage::

        sink = VirtualCameraSink(SinkConfig(width=1280, height=720, fps=30))
        try:
            sink.start()                       # raises VirtualCameraUnavailable (one clear sentence)
        except VirtualCameraUnavailable as e:
            print(e)                           # carry on with preview / recording only
        ...
        sink.submit(avatar_bgr, capture_ts=frame.timestamp)   # never blocks; newest wins
        ...
        print(sink.stats.summary()); sink.stop()

    Args:
        config: canvas size, rate, background and device selection.
        stats: where capture-to-sink latencies are recorded (a new :class:`LatencyStats` if None).
    """

    def __init__(self, config: SinkConfig | None = None, stats: LatencyStats | None = None) -> None:
        self.config = config or SinkConfig()
        self.stats = stats or LatencyStats()
        self._cam: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending: tuple[np.ndarray, float | None] | None = None
        self._frames_sent = 0
        self._new_frames = 0
        self._repeats = 0
        self._skipped = 0
        self.error: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "VirtualCameraSink":
        """Open the virtual camera and start the pacing thread.

        Raises:
            VirtualCameraUnavailable: no device / backend could be opened.
        """
        if self._thread is not None:
            return self
        import pyvirtualcam

        cfg = self.config
        backends = pyvirtualcam.camera.BACKENDS
        if cfg.backend is not None and cfg.backend not in backends:
            names = ", ".join(sorted(backends)) or "none"
            raise VirtualCameraUnavailable(
                f"Unknown virtual camera backend '{cfg.backend}'; available on this machine: {names}."
            )
        if not backends:
            raise VirtualCameraUnavailable(virtual_camera_help())
        try:
            self._cam = pyvirtualcam.Camera(
                cfg.width, cfg.height, cfg.fps,
                fmt=pyvirtualcam.PixelFormat.RGB, backend=cfg.backend, device=cfg.device,
            )
        except RuntimeError as e:
            if cfg.device is not None:
                raise VirtualCameraUnavailable(
                    f"Could not open virtual camera '{cfg.device}' ({_first_line(e)}); "
                    f"check the device name, or leave it out to use the first free one."
                ) from e
            raise VirtualCameraUnavailable(virtual_camera_help()) from e
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="odecam-vcam", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sending and close the device (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self._cam is not None:
            try:
                self._cam.close()
            finally:
                self._cam = None

    close = stop

    def __enter__(self) -> "VirtualCameraSink":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ producer API
    def submit(self, frame: np.ndarray, capture_ts: float | None = None) -> None:
        """Hand over the newest output frame (BGR uint8, any size); returns at once.

        Args:
            frame: the avatar frame; it is letterboxed onto the canvas by the pacing thread.
                The sink keeps a reference: do not modify the array afterwards.
            capture_ts: ``time.monotonic()`` of the webcam frame it was made from, for latency stats.
        """
        if frame.dtype != np.uint8 or not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (1, 3, 4))):
            raise ValueError(f"VirtualCameraSink.submit expects a uint8 BGR image, got {frame.dtype} {frame.shape}.")
        with self._lock:
            if self._pending is not None:
                self._skipped += 1
            self._pending = (frame, capture_ts)

    @property
    def running(self) -> bool:
        """True while the pacing thread sends frames."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def device(self) -> str | None:
        """Name of the virtual camera device in use (None when not started)."""
        return None if self._cam is None else self._cam.device

    @property
    def backend(self) -> str | None:
        """Name of the pyvirtualcam backend in use (None when not started)."""
        return None if self._cam is None else self._cam.backend

    @property
    def frames_sent(self) -> int:
        """Frames sent to the device, repeats included."""
        return self._frames_sent

    @property
    def new_frames(self) -> int:
        """Distinct submitted frames that were sent."""
        return self._new_frames

    @property
    def repeats(self) -> int:
        """Sends that repeated the previous picture because no new frame had arrived."""
        return self._repeats

    @property
    def skipped(self) -> int:
        """Submitted frames replaced by a newer one before their send slot (producer faster than fps)."""
        return self._skipped

    # ------------------------------------------------------------------ pacing thread
    def _run(self) -> None:
        cfg = self.config
        period = 1.0 / cfg.fps
        bg_rgb = tuple(int(c) for c in cfg.background[::-1])
        canvas = np.empty((cfg.height, cfg.width, 3), np.uint8)
        canvas[...] = np.asarray(bg_rgb, np.uint8)  # sent until the first frame arrives
        next_t = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now < next_t:
                    if self._stop.wait(next_t - now):
                        break
                with self._lock:
                    pending, self._pending = self._pending, None
                if pending is not None:
                    frame, capture_ts = pending
                    rgb = cv2.cvtColor(frame, _TO_RGB[frame.shape[2] if frame.ndim == 3 else 1])
                    letterbox(rgb, cfg.width, cfg.height, bg_rgb, out=canvas)
                self._cam.send(canvas)
                sent = time.monotonic()
                self._frames_sent += 1
                if pending is not None:
                    self._new_frames += 1
                    if pending[1] is not None:
                        self.stats.record((sent - pending[1]) * 1000.0, now=sent)
                else:
                    self._repeats += 1
                next_t += period
                if sent - next_t > period:  # fell behind (stalled device): resync, never burst
                    next_t = sent + period
        except Exception as e:  # e.g. the device disappeared; surface it through .error / .running
            self.error = e


class FileRecorder:
    """Writes BGR frames to an H.264 / yuv420p ``.mp4`` (:class:`odecam.engine.video.H264Writer`) at a
    fixed frame rate.

    The file is opened on the first frame, whose size fixes the video size (later frames of
    another size are resized). With timestamps, frames are placed in time: a gap repeats the
    previous frame and frames arriving faster than ``fps`` are skipped, so the recording plays
    back at real speed even when the producer's rate varies. Without timestamps every frame is
    written once, in order (a recording of a video file: one rendered frame per input frame).

    Args:
        path: output file (its directory must exist; ``.mp4``, ``.m4v`` or ``.mov``).
        fps: frame rate of the file.
        fourcc: ignored (kept for callers of the former OpenCV writer); the codec is H.264.
    """

    SUFFIXES = (".mp4", ".m4v", ".mov")

    def __init__(self, path: str | os.PathLike[str], fps: float = 30.0, fourcc: str | None = None) -> None:
        if not fps > 0:
            raise ValueError(f"Recording fps must be positive, got {fps}.")
        self.path = os.fspath(path)
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise RecordingError(f"Cannot record to '{self.path}': the folder '{parent}' does not exist.")
        if os.path.splitext(self.path)[1].lower() not in self.SUFFIXES:
            raise RecordingError(f"Cannot record to '{self.path}': odecam could not open it for writing "
                                 "(use a .mp4 file name).")
        self.fps = float(fps)
        self._writer = None
        self._size: tuple[int, int] | None = None
        self._t0: float | None = None
        self._last: np.ndarray | None = None
        self.frames_written = 0

    def write(self, frame: np.ndarray, timestamp: float | None = None) -> None:
        """Append ``frame`` (BGR uint8); with ``timestamp`` (seconds, monotonic) place it in time."""
        from odecam.engine.video import REALTIME_PRESET, H264Writer, VideoWriteError

        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if self._writer is None:
            h, w = frame.shape[:2]
            self._size = (w, h)
            try:
                self._writer = H264Writer(self.path, self.fps, (w, h), channels="bgr", preset=REALTIME_PRESET,
                                          background=True)  # encodes beside the model, never drops a frame
            except VideoWriteError as e:
                raise RecordingError(f"Cannot record to '{self.path}': {e}") from None
        assert self._size is not None
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        if timestamp is not None:
            if self._t0 is None:
                self._t0 = timestamp
            slot = int(round((timestamp - self._t0) * self.fps))
            if slot < self.frames_written:
                return  # this slot is already filled: the producer is faster than the file's fps
            while self._last is not None and self.frames_written < slot:
                self._writer.write(self._last)
                self.frames_written += 1
        self._writer.write(frame)
        if timestamp is not None:
            self._last = frame.copy()  # may be written again to fill a gap; the caller may reuse its buffer
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file (idempotent)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "FileRecorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_TO_RGB = {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__

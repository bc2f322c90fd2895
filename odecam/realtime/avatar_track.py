"""The server side of a WebRTC avatar call: a video track that animates an avatar from a remote track.

:class:`AnimatedTrack` reads the browser's webcam track, keeps only the NEWEST frame (older frames are
dropped and counted, so latency never builds up), runs the :class:`~odecam.engine.Animator` on it in a
thread executor (the event loop stays responsive) and hands each new avatar frame to aiortc's sender.

Output timing: ``recv`` returns as soon as a new avatar frame is ready, so the output rate is the
inference rate (at most the camera rate). Timestamps come from the wall clock at 90 kHz
(:data:`aiortc.mediastreams.VIDEO_TIME_BASE`), strictly increasing. Before the first driving frame, and
whenever no new frame arrives for ``idle_s``, the last image (at first the avatar's still portrait) is
sent again so the browser never shows a frozen black box.

With a :class:`~odecam.realtime.framing.FramingConfig` (``odecam serve`` passes one), each peer's frames are
framed as ``odecam live`` frames the webcam: the face followed and cropped, levelled for F_K, the face detector
run in the worker after the avatar frame went out (:meth:`FaceFramer.process(..., defer_detection=True)
<odecam.realtime.framing.FaceFramer.process>`), and with nobody in view the avatar glides to its rest pose instead
of following F_K on the empty room (:mod:`odecam.realtime.presence`). Without one the animator takes the frame's
centre square.

Avatar switches and recalibration requested from the event loop are applied by the worker thread right
before its next frame, so they never race with a running inference.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import zlib
from concurrent.futures import Executor
from dataclasses import asdict, dataclass

import numpy as np
from aiortc.mediastreams import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE, MediaStreamError, MediaStreamTrack
from av import VideoFrame

from odecam.engine.animator import Animator
from odecam.engine.avatar import Avatar
from odecam.engine.images import to_image, to_tensor
from odecam.engine.paste_back import AvatarPasters, PasteBack
from odecam.errors import OdecamError
from odecam.realtime.framing import FaceFramer, FramingConfig
from odecam.realtime.presence import Presence

log = logging.getLogger(__name__)


@dataclass
class TrackStats:
    """Per-peer counters (all since the track started)."""

    frames_in: int = 0         # frames received from the remote (browser) track
    frames_dropped: int = 0    # received frames replaced by a newer one before inference reached them
    frames_animated: int = 0   # avatar frames rendered by the animator
    frames_changed: int = 0    # rendered frames whose pixels differ from the previous rendered frame
    frames_sent: int = 0       # frames handed to the encoder (includes repeats)
    frames_repeated: int = 0   # repeats of the last image while no new frame was ready (idle_s)
    errors: int = 0            # driving frames the animator refused (e.g. too small)
    recalibrations: int = 0
    avatar_switches: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def still_image(avatar: Avatar, size: int) -> np.ndarray:
    """The avatar's source portrait at the model's output size, (S, S, 3) uint8: what is shown before
    any driving frame arrives."""
    return to_image(to_tensor(avatar.source_image, size))


class AnimatedTrack(MediaStreamTrack):
    """A video track of the avatar, driven by the newest frame of a source track.

    Args:
        animator: this peer's animator (its relative-motion state is per peer).
        executor: where inference runs (the server shares one single-thread executor between peers).
        idle_s: send the last image again if no new one is ready after this many seconds.
        framing: frame the driving face as ``odecam live`` does (see the module docstring); None: the centre square.
        paste_back: send the avatar in its whole photo, 2 S rows high (:mod:`odecam.engine.paste_back`), for
            avatars with a :attr:`~odecam.engine.avatar.Avatar.placement`; others stay squares.
    """

    kind = "video"

    def __init__(self, animator: Animator, executor: Executor | None = None, idle_s: float = 1.0,
                 framing: FramingConfig | None = None, paste_back: bool = False) -> None:
        super().__init__()
        self.animator = animator
        self._pasters = AvatarPasters(lambda placement: PasteBack.rows(placement, 2 * self.size, buffers=3)) \
            if paste_back else None  # each avatar in its photo, 2 S rows high
        self.framer = None if framing is None else FaceFramer(framing)
        self.presence = Presence()  # with framing: nobody in view, the avatar rests (odecam.realtime.presence)
        self._rest: tuple[Avatar, np.ndarray] | None = None  # the avatar at rest, RGB
        self.executor = executor
        self.idle_s = idle_s
        self.stats = TrackStats()
        self.size = animator.model.cfg.image_size
        self._output = self._in_photo(animator.avatar, still_image(animator.avatar, self.size))
        self._output_ready = asyncio.Event()
        self._output_ready.set()  # the still portrait goes out first
        self._latest: VideoFrame | None = None
        self._new_input = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._lock = threading.Lock()
        self._pending_avatar: Avatar | None = None
        self._pending_recalibrate = False
        self._last_crc: int | None = None
        self._t0: float | None = None
        self._last_pts = -1

    # -- control (called from the event loop) ----------------------------------------------------
    @property
    def avatar(self) -> Avatar:
        """The avatar shown now (or about to be, once a pending switch is applied)."""
        with self._lock:
            return self._pending_avatar or self.animator.avatar

    def set_avatar(self, avatar: Avatar) -> None:
        """Switch the avatar; applied before the next frame (at once if no frame was animated yet)."""
        with self._lock:
            self._pending_avatar = avatar
            self.stats.avatar_switches += 1
            if self.stats.frames_animated == 0:
                self._output = self._in_photo(avatar, still_image(avatar, self.size))
                self._output_ready.set()

    def recalibrate(self) -> None:
        """Take the next driving frame's pose as the neutral pose (with framing, the next face's when nobody is in
        view)."""
        with self._lock:
            self._pending_recalibrate = True
            self.stats.recalibrations += 1

    # -- source side -----------------------------------------------------------------------------
    def attach(self, source: MediaStreamTrack) -> None:
        """Start consuming ``source`` (the remote webcam track)."""
        self._tasks.append(asyncio.ensure_future(self._read(source)))
        if len(self._tasks) == 1:
            self._tasks.append(asyncio.ensure_future(self._work()))

    async def _read(self, source: MediaStreamTrack) -> None:
        while self.readyState == "live":
            try:
                frame = await source.recv()
            except MediaStreamError:
                log.debug("the driving track ended")
                return
            self.stats.frames_in += 1
            if self._latest is not None:
                self.stats.frames_dropped += 1
            self._latest = frame  # only the newest frame is kept
            self._new_input.set()

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while self.readyState == "live":
            await self._new_input.wait()
            self._new_input.clear()
            frame, self._latest = self._latest, None
            if frame is None:
                continue
            try:
                job = loop.run_in_executor(self.executor, self._animate, frame)
            except RuntimeError as exc:  # the executor was shut down: the server is stopping
                log.debug("inference stopped: %s", exc)
                return
            try:
                out = await job
            except OdecamError as exc:
                self.stats.errors += 1
                if self.stats.errors == 1:
                    log.warning("driving frame refused: %s", exc)
                continue
            except Exception:  # never let one bad frame freeze the avatar
                self.stats.errors += 1
                if self.stats.errors == 1:
                    log.exception("animating a driving frame failed")
                continue
            if out is None or self.readyState != "live":
                continue
            self._output = out
            self._output_ready.set()
            if self.framer is not None:  # the face detection the framing left for after the frame went out
                try:
                    await loop.run_in_executor(self.executor, self.framer.detect_deferred)
                except RuntimeError:  # the executor was shut down: the server is stopping
                    return

    def _animate(self, frame: VideoFrame) -> np.ndarray | None:
        """Worker thread: apply pending control, animate one driving frame."""
        if self.readyState != "live":
            return None
        with self._lock:
            avatar, self._pending_avatar = self._pending_avatar, None
            recal, self._pending_recalibrate = self._pending_recalibrate, False
        if avatar is not None:
            self.animator.set_avatar(avatar)
        if recal and self.framer is not None and self.presence.weight < 1.0:
            with self._lock:  # nobody in view (or gliding): take the neutral pose from the next face instead
                self._pending_recalibrate = True
        elif recal:
            self.animator.recalibrate()
        if self.framer is None:
            out = self.animator(frame.to_ndarray(format="rgb24"))
        else:
            framing = self.framer.process(frame.to_ndarray(format="bgr24"), defer_detection=True)
            weight = self.presence.update(self.presence.in_view(framing, self.framer.config.follow_face),
                                          time.monotonic())
            if self.presence.present and weight == 1.0:  # the face levelled for F_K, keypoints turned back
                out = self.animator(*framing.model_input_rgb())
                self.presence.hold(*self.animator.last_keypoints)
                return self._count(out)
            if self.presence.present:  # a face back after nobody: its pose glides in from rest
                value, jac = self.presence.hold(*self.animator.keypoints(*framing.model_input_rgb()))
            else:  # nobody in view: no F_K on the empty room; the last pose seen glides to rest
                value, jac = self.presence.held
                self.animator.set_blink(0.0)
            if weight == 0.0 or value is None:
                if self._rest is None or self._rest[0] is not self.animator.avatar:
                    self._rest = (self.animator.avatar, to_image(self.animator.render_rest()))
                out = self._rest[1]
            else:
                rest = None if getattr(self.animator, "relative", True) else self.animator.avatar.kp_source
                out = to_image(self.animator.render_tensor(*self.presence.towards_neutral(
                    value, jac, self.animator.motion, rest)))
        return self._count(out)

    def _in_photo(self, avatar: Avatar, out: np.ndarray) -> np.ndarray:
        """``out`` (S, S, 3) RGB, or with ``paste_back`` the avatar's photo with it blended in (a few buffers used in
        turn: the frame sent last is not overwritten before the next is ready)."""
        return out if self._pasters is None else self._pasters(avatar, out)

    def _count(self, out: np.ndarray) -> np.ndarray:
        """Count an animated frame (and whether it differs from the last one); returns it (in its photo with
        ``paste_back``)."""
        out = self._in_photo(self.animator.avatar, out)
        crc = zlib.crc32(out.data)
        with self._lock:
            self.stats.frames_animated += 1
            if self._last_crc is not None and crc != self._last_crc:
                self.stats.frames_changed += 1
        self._last_crc = crc
        return out

    # -- sink side (aiortc's sender calls this) --------------------------------------------------
    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        try:
            await asyncio.wait_for(self._output_ready.wait(), self.idle_s)
            repeated = False
        except asyncio.TimeoutError:
            repeated = True
        if self.readyState != "live":
            raise MediaStreamError
        self._output_ready.clear()
        frame = VideoFrame.from_ndarray(self._output, format="rgb24")
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        pts = max(int((now - self._t0) * VIDEO_CLOCK_RATE), self._last_pts + 1)
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        self.stats.frames_sent += 1
        self.stats.frames_repeated += repeated
        return frame

    def stop(self) -> None:
        super().stop()
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self._new_input.set()
        self._output_ready.set()

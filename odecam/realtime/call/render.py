"""The receiver's output clock: render the newest keypoints on one worker thread, emit frames steadily.

:class:`RenderLoop` is the rendering half of :class:`~odecam.realtime.call.receiver.KeypointReceiver`
(a mixin: the receiver owns the state it reads). While the event loop keeps emitting frames, the newest
decoded keypoints are rendered by the connection's :class:`~odecam.engine.Animator` (F_C, F_E, F_A,
F_G from keypoints that arrived over the network instead of F_K's output): a new frame is emitted as
soon as it is rendered, otherwise the last frame again every ``1/fps`` seconds (held), so the output
never stalls when packets are lost or a render is slow. Frames are (S, S, 3) uint8 RGB, or with ``paste_back`` the
avatar's photo around them (2 S rows high).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from odecam.engine.avatar import Avatar
from odecam.realtime.keypoint_packet import DROP_REASONS, DecodedKeypoints

log = logging.getLogger(__name__)

__all__ = ["FrameInfo", "ReceiverStats", "RenderLoop", "Sink"]


@dataclass(frozen=True)
class FrameInfo:
    """What a sink is told about each emitted frame.

    Attributes:
        time: ``time.monotonic()`` of the emission.
        new: a newly rendered frame (False: the previous frame held again).
        live: keypoints from a sender have been rendered (False: the avatar's still portrait).
        seq: sequence number of the keypoint packet the frame was rendered from (None for stills).
        capture_ts: the sender's capture time of that frame (its ``time.monotonic()``), or None.
        latency_ms: capture-to-emission latency when sender and receiver share a clock, else None.
    """

    time: float
    new: bool
    live: bool
    seq: int | None = None
    capture_ts: float | None = None
    latency_ms: float | None = None


Sink = Callable[[np.ndarray, FrameInfo], None]
"""Receives each emitted frame, (S, S, 3) uint8 RGB (the photo around it with ``paste_back``; do not modify it), on the
event loop thread."""


@dataclass
class ReceiverStats:
    """Counters of a :class:`KeypointReceiver` (since it started)."""

    sessions: int = 0             # peer connections answered
    replaced: int = 0             # connections replaced by a newer one
    messages: int = 0             # keypoint-channel messages received
    decoded: int = 0              # of those, decoded frames
    rendered: int = 0             # frames rendered from keypoints
    skipped: int = 0              # decoded frames replaced by a newer one before they were rendered
    emitted: int = 0              # frames handed to the sinks (new + held)
    held: int = 0                 # of those, repeats of the previous frame
    render_errors: int = 0
    sink_errors: int = 0
    key_requests: int = 0
    avatars_accepted: int = 0
    avatars_refused: int = 0
    control_refused: int = 0      # control messages refused (not JSON, too long, unknown type)
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    max_interval_ms: float = 0.0  # longest gap between two emitted frames while rendering

    def as_dict(self) -> dict:
        return asdict(self)

    def counts(self, written: int) -> dict[str, int]:
        """The end-of-call frame counts, in pipeline order: keypoint messages received, frames decoded
        from them, rendered, held (the previous frame emitted again) and ``written`` by the outputs."""
        return {"received": self.messages, "decoded": self.decoded, "rendered": self.rendered, "held": self.held,
                "written": written}


class RenderLoop:
    """Rendering and emission for :class:`~odecam.realtime.call.receiver.KeypointReceiver`."""

    def _still(self, avatar: Avatar) -> np.ndarray:
        from odecam.realtime.avatar_track import still_image

        return self._in_photo(avatar, still_image(avatar, self._size))

    def _in_photo(self, avatar: Avatar, frame: np.ndarray) -> np.ndarray:
        """``frame`` (S, S, 3) RGB, or with ``paste_back`` the avatar's photo with it blended in, 2 S rows high
        (:mod:`odecam.engine.paste_back`); an avatar without a photo (one the sender sent) stays a square. Only the
        current avatar's compositor is kept, so a sender swapping avatars cannot pile them up."""
        if not self.paste_back:
            return frame
        if getattr(self, "_pasters", None) is None:
            from odecam.engine.paste_back import AvatarPasters, PasteBack

            self._pasters = AvatarPasters(lambda p: PasteBack.rows(p, 2 * self._size, buffers=4), keep=1)
        return self._pasters(avatar, frame)

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _render_job(self, session, kp: DecodedKeypoints) -> np.ndarray:
        """On the render thread: keypoints -> avatar frame with this connection's animator."""
        if session.animator is None:
            session.animator = self.animator_factory(self.avatar)
        elif session.animator.avatar is not self.avatar:
            session.animator.set_avatar(self.avatar)
        jac = np.array(kp.jacobian) if self.with_jacobian and kp.jacobian is not None else None
        if session.animator.blink_active:
            session.animator.set_blink(session.blink)
        frame = session.animator.animate_keypoints(np.array(kp.value), jac)  # writable copies for torch
        return self._in_photo(session.animator.avatar, frame)

    async def _render_loop(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.fps
        next_emit = loop.time()
        while not self._closed:
            now = loop.time()
            # a finished render: emit it at once
            if self._render_future is not None and self._render_future.done():
                fut, self._render_future = self._render_future, None
                kp, session = self._rendering, self._render_session
                try:
                    frame = fut.result()
                except Exception as exc:  # noqa: BLE001 - a bad frame must not end the call
                    self.stats.render_errors += 1
                    self._ratelog(logging.WARNING, "render", "rendering keypoints failed (%s: %s); holding the "
                                  "last frame", type(exc).__name__, exc)
                else:
                    if session is self.session:
                        self._frame, self._live = frame, True
                        self._last_rendered = kp
                        self.stats.rendered += 1
                        latency = None
                        if session is not None and session.same_clock:
                            latency = (time.monotonic() - kp.timestamp) * 1000.0
                        self._emit(True, kp, latency)
                        next_emit = loop.time() + period
            # start rendering the newest keypoints if the render thread is free
            if self._render_future is None and self._pending is not None and self.session is not None:
                kp, self._pending = self._pending, None
                self._rendering, self._render_session = kp, self.session
                self._render_future = loop.run_in_executor(self.executor, self._render_job, self.session, kp)
                self._render_future.add_done_callback(lambda _f: self._poke())
            # nothing new in time: hold the last frame
            now = loop.time()
            if now >= next_emit:
                self._emit(False, None, None)
                next_emit += period
                if now - next_emit > period:  # fell behind (the machine stalled): resync, never burst
                    next_emit = now + period
            self._wake.clear()
            timeout = max(0.0, next_emit - loop.time())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    def _emit(self, new: bool, kp: DecodedKeypoints | None, latency: float | None) -> None:
        now = time.monotonic()
        if self._last_emit is not None:
            gap = (now - self._last_emit) * 1000.0
            if self._live:
                self.intervals.append(gap)
                self.stats.max_interval_ms = max(self.stats.max_interval_ms, gap)
        self._last_emit = now
        self.stats.emitted += 1
        if not new:
            self.stats.held += 1
        if latency is not None:
            self.latency.record(latency, now=now)
        last = self._last_rendered if self._live else None
        info = FrameInfo(time=now, new=new, live=self._live,
                         seq=(kp or last).seq if (kp or last) else None,
                         capture_ts=(kp or last).timestamp if (kp or last) else None,
                         latency_ms=latency)
        for sink in self.sinks:
            try:
                sink(self._frame, info)
            except Exception as exc:  # noqa: BLE001 - one broken output must not stop the others
                self.stats.sink_errors += 1
                self._ratelog(logging.WARNING, f"sink-{id(sink)}", "an output failed (%s: %s)",
                              type(exc).__name__, exc)

    # -- reporting ---------------------------------------------------------------------------------
    def summary(self) -> dict:
        """Counters, emission intervals and latency as one JSON-able dict."""
        iv = np.fromiter(self.intervals, float)
        out = {"stats": self.stats.as_dict(), "decoder": {
            "decoded": self.decoder.stats.decoded, "keyframes": self.decoder.stats.keyframes,
            "resyncs": self.decoder.stats.resyncs}}
        out["intervals_ms"] = ({"p50": float(np.percentile(iv, 50)), "p99": float(np.percentile(iv, 99)),
                                "max": float(iv.max()), "n": int(iv.size)} if iv.size else None)
        out["latency_ms"] = self.latency.as_dict() if self.latency.count else None
        out["avatar"] = self.avatar.name
        out["session"] = self.session.id if self.session else None
        return out

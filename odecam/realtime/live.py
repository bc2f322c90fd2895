"""The live pipeline behind ``odecam live``: webcam -> avatar -> virtual camera / preview / recording.

::

    capture thread            inference loop (caller's thread)                         outputs
    LatestFrameCapture  --->  newest frame only -> mirror -> FaceFramer crop        --> VirtualCameraSink (own
    (BGR, capture time)       -> Animator.keypoints -> One Euro (KeypointSmoother)      pacing thread, repeats
                              -> Animator.render_tensor -> avatar frame                 the last frame on stalls)
                                                                                    --> FileRecorder (canvas)
                                                                                    --> preview window + overlay
                              then, while waiting for the next frame: the face detector (every 3rd frame)
                              nobody in view (the face missed for 0.6 s): no F_K; the pose glides to rest
                              and the avatar at rest is repeated (:mod:`odecam.realtime.presence`)

Every frame keeps its capture timestamp (``time.monotonic()``) all the way to the sink, which records
the capture-to-sink latency in :attr:`LiveSession.stats` (with a virtual camera: when the frame is sent;
without one: when it was handed to the recorder / preview). Per-stage times of the loop are in
:attr:`LiveSession.timings` (``framing``, ``keypoints``, ``smoothing``, ``render``, ``output``, and
``face_search``: the face detector, run after the frame went out, so no frame's latency carries it; ``rest``
instead of ``keypoints`` .. ``render`` while the avatar rests; ``paste``: the square blended back into the
avatar's photo, with ``paste_back``).

Failures: no virtual camera -> the one-sentence how-to, and the session goes on with the preview or
recording when asked for (else :class:`LiveError`); a camera that stops delivering frames is reopened by
the capture while the sink keeps its rate by repeating the last good frame; an exception in a model step
skips that frame (logged, counted in :attr:`LiveSession.failed`) and the session goes on.

Controls (:func:`handle_key`, used by the preview window, and by ``c``/``1``-``9``/``m``/``q`` lines on stdin
with ``stdin_commands``): ``1``-``9`` switch avatar, ``c`` recalibrate, ``o`` overlay, ``m`` mirror,
``q``/Esc quit. They are thread-safe and take effect on the next frame. The window, the hotkeys, the
stdin commands and the statistics report live in :mod:`odecam.realtime.live_ui`; :class:`LiveConfig` (what
the session is asked to do, checked on creation) and :class:`LiveError` in :mod:`odecam.realtime.live_config`
(both importable from here too).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from odecam.engine.animator import Animator
from odecam.engine.avatar import Avatar
from odecam.engine.images import to_image, to_tensor
from odecam.engine.paste_back import AvatarPasters, PasteBack
from odecam.engine.timing import StageTimes
from odecam.engine.video import video_fps
from odecam.realtime.capture import CaptureConfig, CapturedFrame, CaptureError, LatestFrameCapture, Opener
from odecam.realtime.framing import FaceFramer, FramingConfig
from odecam.realtime.one_euro import OneEuroConfig, OneEuroFilter
from odecam.realtime.presence import Presence
from odecam.realtime.live_config import LiveConfig, LiveError
from odecam.realtime.live_ui import HOTKEYS, WINDOW, LiveReport, LiveWindow, display_problem, handle_key
from odecam.realtime.virtual_camera import (
    FileRecorder,
    LatencyStats,
    RecordingError,
    SinkConfig,
    VirtualCameraSink,
    VirtualCameraUnavailable,
    letterbox,
)

__all__ = ["LiveConfig", "LiveError", "LiveFrame", "LiveSession", "KeypointSmoother", "handle_key",
           "display_problem", "HOTKEYS"]

log = logging.getLogger(__name__)


class KeypointSmoother:
    """One Euro filtering of raw driving keypoints (and jacobians), between ``Animator.keypoints`` and
    ``Animator.render_tensor``::

        value, jac = animator.keypoints(frame_rgb)
        value, jac = smoother(value, jac, t=capture_timestamp)
        image = to_image(animator.render_tensor(value, jac))
    """

    def __init__(self, min_cutoff: float = OneEuroConfig.min_cutoff, beta: float = OneEuroConfig.beta,
                 enabled: bool = True) -> None:
        self._value = OneEuroFilter(min_cutoff, beta, enabled=enabled)
        self._jac = OneEuroFilter(min_cutoff, beta, enabled=enabled)

    @property
    def enabled(self) -> bool:
        return self._value.enabled

    @enabled.setter
    def enabled(self, on: bool) -> None:
        self._value.enabled = on
        self._jac.enabled = on

    def reset(self) -> None:
        """Forget the history (the next sample passes unchanged)."""
        self._value.reset()
        self._jac.reset()

    def __call__(self, value: torch.Tensor, jac: torch.Tensor | None, t: float
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.enabled:
            return value, jac
        v = self._value(value.detach().cpu().numpy(), t)
        value = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).to(value.device)
        if jac is not None:
            j = self._jac(jac.detach().cpu().numpy(), t)
            jac = torch.from_numpy(np.ascontiguousarray(j, dtype=np.float32)).to(jac.device)
        return value, jac


@dataclass
class LiveFrame:
    """One avatar frame made by the session.

    Attributes:
        seq: the driving frame's capture sequence number.
        timestamp: its capture time (``time.monotonic()``), carried to the sink.
        avatar: the avatar frame (S, S, 3) uint8 BGR; with ``paste_back`` the canvas (H, W, 3) with the frame
            blended into the avatar's photo (one of a few buffers used in turn: copy it to keep it).
        driving: the framed driving crop the model saw (S, S, 3) uint8 BGR.
        keypoints: raw driving keypoints (K, 2) in [-1, 1].
        smoothed: the keypoints after One Euro smoothing (what was rendered).
        stages: milliseconds per stage of this frame.
        present: whether someone was in view (False: the avatar glided to or rests at its rest pose).
    """

    seq: int
    timestamp: float
    avatar: np.ndarray
    driving: np.ndarray
    keypoints: np.ndarray
    smoothed: np.ndarray
    stages: dict[str, float] = field(default_factory=dict)
    present: bool = True


class _TeeStats(LatencyStats):
    """Session-long latency statistics that also feed a short window (the overlay's current fps)."""

    def __init__(self, window: int, recent: LatencyStats) -> None:
        super().__init__(window)
        self.recent = recent

    def record(self, latency_ms: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        super().record(latency_ms, now)
        self.recent.record(latency_ms, now)


class LiveSession(LiveWindow, LiveReport):
    """Runs the live pipeline: capture thread -> inference on the newest frame -> outputs.

    Usage::

        session = LiveSession(LiveConfig(virtual_camera=True, preview=True), animator, avatars)
        stats = session.run()          # until q / Ctrl+C / end of video / max_frames
        print(session.stats_line())

    Args:
        config: see :class:`LiveConfig`.
        animator: the engine (its avatar is shown first unless ``avatars`` says otherwise).
        avatars: the avatars keys 1-9 switch between (default: the animator's own).
        opener: opens the capture source (inject one to simulate cameras in tests).
        on_frame: called with every :class:`LiveFrame` after it was handed to the outputs.
    """

    def __init__(self, config: LiveConfig, animator: Animator, avatars: Sequence[Avatar] | None = None,
                 opener: Opener | None = None, on_frame: Callable[[LiveFrame], None] | None = None) -> None:
        self.config = config
        self.animator = animator
        self.avatars = list(avatars) if avatars else [animator.avatar]
        self.avatar_index = next((i for i, a in enumerate(self.avatars) if a is animator.avatar), 0)
        self.opener = opener
        self.on_frame = on_frame
        self.size = animator.model.cfg.image_size
        self.smoother = KeypointSmoother(config.min_cutoff, config.beta, enabled=config.smoothing)
        self.presence = Presence(config.rest_fade)  # nobody in view: the avatar rests
        self._rest_avatar: np.ndarray | None = None  # the avatar at rest, BGR (the same array for each rest frame)
        self._rest_of: Avatar | None = None
        # per avatar: its square pasted back into its photo on the canvas (resolved when the session starts); four
        # canvases in turn: the virtual camera's pending frame and the one it is copying stay untouched
        self._pasters = AvatarPasters(lambda placement: PasteBack(
            placement, self.canvas, background=self.config.background, order="bgr", buffers=4))
        self._resting = False  # said "nobody in view" (once per absence)
        self.framer = FaceFramer(FramingConfig(output_size=self.size, follow_face=config.follow_face,
                                               zoom=config.zoom, pan_x=config.pan_x, pan_y=config.pan_y,
                                               level_roll=config.level_roll))
        self.timings = StageTimes()
        self.recent = LatencyStats(window=60)
        self.stats: LatencyStats = _TeeStats(1_000_000, self.recent)
        self.mirror = config.mirror
        self.overlay = config.overlay
        self.capture: LatestFrameCapture | None = None
        self.sink: VirtualCameraSink | None = None
        self.recorder: FileRecorder | None = None
        self.preview = False
        self.canvas: tuple[int, int] | None = config.canvas
        self.frames = 0          # avatar frames delivered
        self.failed = 0          # frames skipped because a model step raised
        self.last: LiveFrame | None = None
        self.messages: list[str] = []
        self.interrupted = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pending_avatar: int | None = None
        self._calibrate = False
        self._reset_track = False
        self._started = False
        self._closed = False
        self._t_start: float | None = None
        self._t_end: float | None = None
        self._seen_disconnects = 0
        self._seen_reconnects = 0
        self._canvas_buf: np.ndarray | None = None
        self._preview_img: np.ndarray | None = None
        self._stdin_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ messages
    def say(self, text: str, warning: bool = False) -> None:
        """Print one line for the user (warnings to stderr) and keep it in :attr:`messages`."""
        self.messages.append(text)
        print(f"odecam live: {text}", file=sys.stderr if warning else sys.stdout, flush=True)

    # ------------------------------------------------------------------ controls (thread-safe)
    def switch_avatar(self, index: int) -> bool:
        """Show avatar ``index`` (0-based) from the next frame on; False if there is no such avatar."""
        if not 0 <= index < len(self.avatars):
            self.say(f"there is no avatar {index + 1}; {len(self.avatars)} loaded (keys 1-{len(self.avatars)}).")
            return False
        with self._lock:
            self._pending_avatar = index
            self.avatar_index = index
        self.say(f"avatar {index + 1}: {self.avatars[index].name}")
        return True

    def recalibrate(self) -> None:
        """Take the next frame's (smoothed) driving pose as the neutral pose."""
        with self._lock:
            self._calibrate = True
        if not self.animator.relative:
            self.say("recalibration has no effect with absolute keypoints (--no-relative).")

    def toggle_overlay(self) -> bool:
        self.overlay = not self.overlay
        return self.overlay

    def toggle_mirror(self) -> bool:
        """Flip the driving frame (or stop flipping); the neutral pose is re-taken from the next frame."""
        with self._lock:
            self.mirror = not self.mirror
            self._calibrate = True
            self._reset_track = True
        return self.mirror

    def stop(self) -> None:
        """Ask the loop to end (thread-safe; :meth:`run` returns after the current frame)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _take_controls(self) -> tuple[int | None, bool, bool, bool]:
        with self._lock:
            pending = (self._pending_avatar, self._calibrate, self._reset_track, self.mirror)
            self._pending_avatar, self._calibrate, self._reset_track = None, False, False
        return pending

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "LiveSession":
        """Open the outputs and the capture. Raises :class:`LiveError` (one sentence) when it cannot run."""
        if self._started:
            return self
        cfg = self.config
        if cfg.preview:
            problem = display_problem()
            if problem:
                self.say(problem, warning=True)
            else:
                self.preview = self._open_window()
        if cfg.record:
            # a video file is recorded frame for frame at its own rate; a camera in real time at --fps
            rate = video_fps(cfg.video, default=cfg.fps) if cfg.video is not None else cfg.fps
            try:
                self.recorder = FileRecorder(cfg.record, fps=rate)
            except RecordingError as e:
                raise LiveError(str(e)) from None
        want_vcam = cfg.virtual_camera
        if want_vcam:
            # fail early (before the camera opens) when the virtual camera is the only output and none exists
            import pyvirtualcam

            if not pyvirtualcam.camera.BACKENDS and not (self.preview or self.recorder):
                self._check_outputs(VirtualCameraUnavailable(_vcam_help()))
        if not (want_vcam or self.preview or self.recorder):
            raise LiveError("there is no output: pass --virtual-camera, --record OUT.mp4 or --preview "
                            "(the preview needs a display).")
        self.warm_up()
        self._open_capture()
        try:
            self._resolve_canvas()
            if want_vcam:
                w, h = self.canvas
                sink = VirtualCameraSink(SinkConfig(width=w, height=h, fps=cfg.fps, background=cfg.background,
                                                    backend=cfg.vcam_backend, device=cfg.vcam_device),
                                         stats=self.stats)
                try:
                    sink.start()
                    self.sink = sink
                    self.say(f"virtual camera {sink.device} ({sink.backend}), {w}x{h} at {cfg.fps:g} fps")
                except VirtualCameraUnavailable as e:
                    self._check_outputs(e)
        except BaseException:
            if self.capture is not None:
                self.capture.stop()
            self._close_outputs()
            raise
        if self.preview:
            self.say(f"preview hotkeys: {HOTKEYS}")
        if cfg.stdin_commands and not self.preview:
            self._start_stdin()
        self._started = True
        self._t_start = time.monotonic()
        return self

    def warm_up(self) -> None:
        """Run the model once on the avatar's own portrait, so that lazy backend set-up (graph compilation,
        first allocations) does not stall the first live frames. The neutral pose is left alone."""
        avatar = self.animator.avatar
        try:
            self.animator.keypoints(to_image(to_tensor(avatar.source_image, self.size)))
            backend = getattr(self.animator, "backend", None)
            if backend is not None and hasattr(backend, "run_frame"):
                jac = avatar.jac_source if self.animator.model.cfg.keypoints.estimate_jacobian else None
                backend.run_frame(avatar.kp_source, jac)
        except Exception as e:  # the live loop reports and skips failing frames itself
            log.warning("warm-up run failed (%s: %s)", type(e).__name__, e)
        if hasattr(self.animator, "reset_blink"):
            self.animator.reset_blink()
        self.animator.timings.reset()

    def _check_outputs(self, e: VirtualCameraUnavailable) -> None:
        if self.preview or self.recorder:
            rest = " and ".join(x for x, on in (("the preview", self.preview),
                                                (f"recording to {self.config.record}", self.recorder)) if on)
            self.say(str(e), warning=True)
            self.say(f"carrying on without the virtual camera, with {rest}.", warning=True)
            return
        if self.capture is not None:
            self.capture.stop()
        raise LiveError(str(e)) from None

    def _open_capture(self) -> None:
        cfg = self.config
        if cfg.video is not None:
            # every frame of a file is rendered (the reader waits for the model): no drops, no repeats
            cc = CaptureConfig(source=str(cfg.video), kind="file", loop=cfg.loop, keep_all=True)
        else:
            w, h = cfg.camera_size or (None, None)
            cc = CaptureConfig(source=cfg.camera, kind="camera", width=w, height=h, fps=cfg.fps)
        self.capture = LatestFrameCapture(cc, opener=self.opener)
        try:
            self.capture.start()
        except CaptureError as e:
            self.capture = None
            raise LiveError(str(e)) from None

    def _resolve_canvas(self) -> None:
        if self.canvas is not None:
            return
        assert self.capture is not None
        deadline = time.monotonic() + 10.0
        while self.capture.frame_size is None and time.monotonic() < deadline and not self.capture.ended:
            time.sleep(0.01)
        size = self.capture.frame_size
        if size is None:
            self.canvas = (1280, 720)
            self.say("the camera sent no frame to take its size from; using a 1280x720 canvas.", warning=True)
        else:
            self.canvas = (max(2, size[0] // 2 * 2), max(2, size[1] // 2 * 2))

    def close(self) -> None:
        """Stop the capture and close every output (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._t_end is None:
            self._t_end = time.monotonic()
        if self.sink is not None and self.sink.running and self.last is not None:
            time.sleep(1.5 / self.config.fps)  # let the last frame go out
        if self.capture is not None:
            self.capture.stop()
        self._close_outputs()
        if self._stdin_thread is not None:
            self._stdin_thread.join(timeout=1.0)

    def _close_outputs(self) -> None:
        if self.sink is not None:
            self.sink.stop()
        if self.recorder is not None:
            self.recorder.close()
        if self.preview:
            try:
                cv2.destroyWindow(WINDOW)
                cv2.waitKey(1)
            except cv2.error:
                pass

    def __enter__(self) -> "LiveSession":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict:
        """Run until ``q``, :meth:`stop`, Ctrl+C, the end of the video or ``max_frames``; returns :meth:`stats_dict`."""
        self.start()
        assert self.capture is not None
        cap = self.capture
        max_frames = self.config.max_frames
        waiting_since = time.monotonic()
        warned_no_frames = False
        try:
            while not self._stop.is_set():
                frame = cap.read(timeout=0.05)
                self._watch_connection()
                if frame is None:
                    if cap.ended:
                        if self.config.video is not None and not self._stop.is_set():
                            self.say(f"the video {os.path.basename(self.config.video)} ended after "
                                     f"{cap.frames_captured} frames ({self.frames} rendered); stopping "
                                     "(--loop plays it again).")
                        break
                    if (self.last is None and not warned_no_frames
                            and time.monotonic() - waiting_since > 5.0 and cap.connected):
                        warned_no_frames = True
                        self.say(f"no frames from {self.config.source_name} yet; still waiting.", warning=True)
                    self._poll_preview()
                    continue
                out = self.process(frame)
                if out is not None:
                    self.deliver(out)
                self._search_face()
                self._poll_preview()
                if max_frames is not None and self.frames >= max_frames:
                    break
                if self.sink is not None and not self.sink.running:
                    self.say(f"the virtual camera stopped ({self.sink.error}); ending.", warning=True)
                    break
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            self._t_end = time.monotonic()
            self.close()
        return self.stats_dict()

    def _search_face(self) -> None:
        """The face detection the framing left for after the frame went out (the wait for the next frame)."""
        t = time.perf_counter()
        if self.framer.detect_deferred():
            self.timings.add("face_search", (time.perf_counter() - t) * 1000.0)

    def _watch_connection(self) -> None:
        cap = self.capture
        if cap is None:
            return
        if cap.disconnects > self._seen_disconnects:
            self._seen_disconnects = cap.disconnects
            keep = "the virtual camera keeps showing the last frame" if self.sink else "waiting for it"
            self.say(f"{self.config.source_name} was lost; reconnecting ({keep}).", warning=True)
        if cap.reconnects > self._seen_reconnects:
            self._seen_reconnects = cap.reconnects
            with self._lock:
                self._reset_track = True
            self.say(f"{self.config.source_name} is back.")

    def process(self, frame: CapturedFrame) -> LiveFrame | None:
        """Driving frame -> :class:`LiveFrame`, or None when a step failed (logged, counted; frame skipped)."""
        pending_avatar, calibrate, reset_track, mirror = self._take_controls()
        stages: dict[str, float] = {}
        try:
            if pending_avatar is not None and self.avatars[pending_avatar] is not self.animator.avatar:
                self.animator.set_avatar(self.avatars[pending_avatar])
            if reset_track:
                self.smoother.reset()
                self.framer.reset()
            t = time.perf_counter()
            image = cv2.flip(frame.image, 1) if mirror else frame.image
            framing = self.framer.process(image, defer_detection=True)
            present = not self.config.rest or self.presence.in_view(framing, self.framer.config.follow_face)
            weight = self.presence.update(present, frame.timestamp)
            t = self._stage(stages, "framing", t)
            if present:
                rgb, roll = framing.model_input_rgb()  # the face levelled for F_K, keypoints turned back
                raw, jac = self.animator.keypoints(rgb, roll)
                t = self._stage(stages, "keypoints", t)
                value, jac = self.presence.hold(*self.smoother(raw, jac, frame.timestamp))
                if calibrate:
                    self.animator.motion.set_neutral(value, jac)
                t = self._stage(stages, "smoothing", t)
            else:  # nobody in view: no F_K on the empty room; the last pose seen glides to rest
                if calibrate:
                    with self._lock:
                        self._calibrate = True  # calibrate on the next face
                value, jac = self.presence.held
                raw = value
                self.animator.set_blink(0.0)
                self.smoother.reset()  # the next face starts the filter afresh
            if weight == 0.0 or value is None:
                if self._rest_avatar is None or self._rest_of is not self.animator.avatar:
                    self._rest_avatar = cv2.cvtColor(to_image(self.animator.render_rest()), cv2.COLOR_RGB2BGR)
                    self._rest_of = self.animator.avatar
                avatar = self._rest_avatar
                if value is None:
                    raw = value = self.animator.avatar.kp_source
                t = self._stage(stages, "rest", t)
                if not present and not self._resting:
                    self._resting = True
                    self.say("nobody in view: the avatar rests until a face is back (--no-rest: off).")
            else:
                if present and self._resting:
                    self._resting = False
                    self.say("a face is back: the avatar follows it again.")
                rest = None if self.animator.relative else self.animator.avatar.kp_source  # absolute: glide to it
                avatar_rgb = to_image(self.animator.render_tensor(*self.presence.towards_neutral(
                    value, jac, self.animator.motion, rest)))
                avatar = cv2.cvtColor(avatar_rgb, cv2.COLOR_RGB2BGR)
                t = self._stage(stages, "render", t)
            paste = self._paste_back()
            if paste is not None:  # the square blended back into the avatar's photo, fitted to the canvas
                avatar = paste(avatar)
                self._stage(stages, "paste", t)
        except Exception as e:  # a failed model step: skip this frame, keep going
            self.failed += 1
            if calibrate:
                with self._lock:
                    self._calibrate = True  # try again on the next frame
            if self.failed <= 3 or self.failed % 100 == 0:
                log.warning("frame %d skipped: a model step failed (%s: %s); %d skipped so far",
                            frame.seq, type(e).__name__, e, self.failed, exc_info=self.failed == 1)
            return None
        for name, ms in stages.items():
            self.timings.add(name, ms)
        return LiveFrame(seq=frame.seq, timestamp=frame.timestamp, avatar=avatar, driving=framing.image,
                         keypoints=raw[0].detach().cpu().numpy(), smoothed=value[0].detach().cpu().numpy(),
                         stages=stages, present=present)

    def _paste_back(self) -> PasteBack | None:
        """The current avatar's :class:`PasteBack` onto the canvas (made on its first frame), or None when
        ``paste_back`` is off or the avatar has no placement in a photo."""
        return self._pasters.get(self.animator.avatar) if self.config.paste_back else None

    @staticmethod
    def _stage(stages: dict[str, float], name: str, t0: float) -> float:
        t = time.perf_counter()
        stages[name] = (t - t0) * 1000.0
        return t

    def deliver(self, lf: LiveFrame) -> None:
        """Hand a frame to the virtual camera, the recorder and the preview."""
        t = time.perf_counter()
        if self.sink is not None:
            self.sink.submit(lf.avatar, capture_ts=lf.timestamp)
        if self.recorder is not None:
            w, h = self.canvas or (lf.avatar.shape[1], lf.avatar.shape[0])
            self._canvas_buf = letterbox(lf.avatar, w, h, self.config.background, out=self._canvas_buf)
            try:  # camera: placed in time (real-time playback); file: one recorded frame per input frame
                self.recorder.write(self._canvas_buf, timestamp=None if self.config.video else lf.timestamp)
            except RecordingError as e:
                self.say(f"{e} Recording stopped.", warning=True)
                self.recorder.close()
                self.recorder = None
        if self.sink is None:
            self.stats.record((time.monotonic() - lf.timestamp) * 1000.0)
        if self.preview:
            self._show(lf)
        lf.stages["output"] = (time.perf_counter() - t) * 1000.0
        self.timings.add("output", lf.stages["output"])
        self.frames += 1
        self.last = lf
        if self.on_frame is not None:
            self.on_frame(lf)

def _vcam_help() -> str:
    from odecam.realtime.virtual_camera import virtual_camera_help

    return virtual_camera_help()

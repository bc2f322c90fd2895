"""The user-facing parts of ``odecam live``: the preview window, its hotkeys, stdin commands and the
statistics report (split from :mod:`odecam.realtime.live`, whose :class:`~odecam.realtime.live.LiveSession`
mixes :class:`LiveWindow` and :class:`LiveReport` in).

Controls (:func:`handle_key`, used by the preview window, and by ``c``/``1``-``9``/``m``/``q`` lines on
stdin): ``1``-``9`` switch avatar, ``c`` recalibrate, ``o`` overlay, ``m`` mirror, ``q``/Esc quit.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import threading
import time
from typing import TYPE_CHECKING

import cv2
import numpy as np

from odecam.realtime.overlay import draw_stats

if TYPE_CHECKING:  # only for annotations
    from odecam.realtime.live import LiveFrame, LiveSession

__all__ = ["WINDOW", "HOTKEYS", "LiveWindow", "LiveReport", "display_problem", "handle_key"]

WINDOW = "odecam live"
HOTKEYS = "1-9 avatar, c recalibrate, o overlay, m mirror, q/Esc quit"
_ESC = 27


def display_problem() -> str | None:
    """Why no preview window can be shown here (one sentence), or None when a display seems available."""
    if platform.system() == "Linux" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display is available (DISPLAY is not set), so the preview window and its hotkeys are off."
    return None


class LiveWindow:
    """Preview window and stdin commands of a live session (a mixin: the session supplies ``say``,
    ``stop``, ``capture``, ``last``, ``recent``, ``avatars``, ``avatar_index``, ``mirror``, ``overlay``,
    ``preview`` and ``_stop``)."""

    # ------------------------------------------------------------------ preview window
    def _open_window(self) -> bool:
        try:
            cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
            cv2.waitKey(1)
            return True
        except cv2.error as e:
            self.say(f"OpenCV cannot open a window here ({str(e).strip().splitlines()[-1]}), so the preview "
                     "and its hotkeys are off.", warning=True)
            return False

    def preview_image(self, lf: LiveFrame, status: str | None = None) -> np.ndarray:
        """The preview picture: the avatar, the driving crop in a corner, the overlay when on."""
        h, w = lf.avatar.shape[:2]  # square, or the photo around it with --paste-back
        side = max(360, h)
        width = max(1, round(side * w / h))
        img = cv2.resize(lf.avatar, (width, side), interpolation=cv2.INTER_LINEAR)
        inset = side // 4
        pad = max(4, side // 60)
        img[side - inset - pad:side - pad, width - inset - pad:width - pad] = cv2.resize(
            lf.driving, (inset, inset), interpolation=cv2.INTER_AREA)
        if self.overlay:
            stages = {k: v for k, v in lf.stages.items()}
            draw_stats(img, self.recent.fps, stages)
            lines = [f"avatar {self.avatar_index + 1}/{len(self.avatars)} {self.avatars[self.avatar_index].name}"
                     + (" | mirror" if self.mirror else "") + ("" if lf.present else " | nobody in view: at rest")]
            if status:
                lines.append(status)
            for i, text in enumerate(reversed(lines)):
                y = side - pad - i * max(14, side // 24)
                cv2.putText(img, text, (pad, y), cv2.FONT_HERSHEY_SIMPLEX, side / 900.0, (0, 0, 0), 3, cv2.LINE_AA)
                cv2.putText(img, text, (pad, y), cv2.FONT_HERSHEY_SIMPLEX, side / 900.0, (80, 255, 80), 1,
                            cv2.LINE_AA)
        elif status:
            cv2.putText(img, status, (pad, side - pad), cv2.FONT_HERSHEY_SIMPLEX, side / 900.0, (80, 255, 255), 1,
                        cv2.LINE_AA)
        return img

    def _show(self, lf: LiveFrame) -> None:
        status = None if self.capture is None or self.capture.connected else "camera lost - reconnecting"
        self._preview_img = self.preview_image(lf, status)
        try:
            cv2.imshow(WINDOW, self._preview_img)
        except cv2.error as e:
            self.preview = False
            self.say(f"the preview window failed ({type(e).__name__}); carrying on without it.", warning=True)

    def _poll_preview(self) -> None:
        if not self.preview:
            return
        if self.last is not None and self.capture is not None and not self.capture.connected:
            self._show(self.last)
        try:
            key = cv2.waitKey(1)
            visible = cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE)
        except cv2.error:
            return
        if key != -1:
            handle_key(self, key)
        elif visible < 1 and self.last is not None:  # the user closed the window
            self.stop()

    # ------------------------------------------------------------------ stdin commands
    def _start_stdin(self) -> None:
        if os.name != "posix":
            return
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, OSError, ValueError):
            return
        if os.isatty(fd):
            self.say("type c + Enter to recalibrate, 1-9 + Enter to switch avatar, m mirror, q quit.")
        self._stdin_thread = threading.Thread(target=self._stdin_loop, args=(fd,), name="odecam-stdin",
                                              daemon=True)
        self._stdin_thread.start()

    def _stdin_loop(self, fd: int) -> None:
        import select

        buf = b""
        while not self._stop.is_set():
            try:
                if os.isatty(fd) and os.tcgetpgrp(fd) != os.getpgrp():
                    time.sleep(0.2)  # a background job must not read the terminal (SIGTTIN)
                    continue
                ready, _, _ = select.select([fd], [], [], 0.2)
                if not ready:
                    continue
                chunk = os.read(fd, 1024)
            except (OSError, ValueError):
                return
            if not chunk:
                return  # end of input
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode(errors="replace").strip()
                if text:
                    handle_key(self, text)



class LiveReport:
    """Statistics of a live session (a mixin: the session supplies ``stats``, ``timings``, ``animator``,
    ``frames``, ``failed``, ``capture``, ``sink``, ``recorder``, ``config``, ``canvas``, ``_t_start``,
    ``_t_end``)."""

    # ------------------------------------------------------------------ statistics
    def stats_dict(self) -> dict:
        """JSON-able statistics: capture-to-sink latency, fps (frames delivered over the session's wall
        time), per-stage p50/p95/p99, counters."""
        lat = self.stats.as_dict()
        end = self._t_end if self._t_end is not None else time.monotonic()
        seconds = (end - self._t_start) if self._t_start is not None else 0.0
        pct = self.timings.percentiles()
        model = self.animator.timings.percentiles()
        d: dict = {
            "frames": self.frames,
            "failed": self.failed,
            "seconds": round(seconds, 3),
            "fps": self.frames / seconds if seconds > 0 else 0.0,  # frames over wall time
            "fps_is": "avatar frames delivered / wall seconds from start to end",
            "p50_ms": lat["p50_ms"],
            "p95_ms": lat["p95_ms"],
            "p99_ms": lat["p99_ms"],
            "mean_ms": lat["mean_ms"],
            "max_ms": lat["max_ms"],
            "latency_frames": lat["frames"],
            "latency_measured_at": "virtual camera" if self.sink is not None else "outputs",
            "stages_ms": {k: {q: round(v[q], 3) for q in ("p50", "p95", "p99")} for k, v in pct.items()},
            "model_stages_ms": {k: {q: round(v[q], 3) for q in ("p50", "p95", "p99")} for k, v in model.items()
                                if k not in ("keypoints", "total")},
            "ode_fallbacks": self.animator.ode_fallbacks,
            "canvas": list(self.canvas) if self.canvas else None,
        }
        share = getattr(getattr(self.animator, "backend", None), "spin_share", lambda: None)()
        if share is not None:  # onnxruntime's spin 'auto': the share of frame-graph runs that spun
            d["spin_share"] = round(share, 3)
        if self.capture is not None:
            d["capture"] = {"frames": self.capture.frames_captured, "dropped": self.capture.dropped,
                            "disconnects": self.capture.disconnects, "reconnects": self.capture.reconnects}
        if self.sink is not None:
            sent = self.sink.frames_sent
            d["virtual_camera"] = {"device": self.sink.device, "frames_sent": sent, "new_frames": self.sink.new_frames,
                                   "repeats": self.sink.repeats, "fps": sent / seconds if seconds > 0 else 0.0}
        if self.recorder is not None or self.config.record:
            d["recorded_frames"] = self.recorder.frames_written if self.recorder is not None else None
        return _jsonable(d)

    def stats_line(self) -> str:
        """One line: frames, fps (frames over wall time), capture-to-sink latency p50/p95/p99, stages p50."""
        d = self.stats_dict()

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f} ms"

        stages = " ".join(f"{k} {v['p50']:.1f}" for k, v in d["stages_ms"].items())
        where = "virtual camera" if d["latency_measured_at"] == "virtual camera" else "output"
        return (f"{d['frames']} frames in {d['seconds']:.1f} s = {d['fps']:.1f} fps (frames over wall time) | "
                f"capture->{where} latency p50 {ms(d['p50_ms'])}, p95 {ms(d['p95_ms'])}, p99 {ms(d['p99_ms'])} | "
                f"skipped {d['failed']} failed frames | stages p50 ms: {stages}")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (np.floating, np.integer)):
        return _jsonable(obj.item())
    return obj


def handle_key(session: LiveSession, key: int | str | None) -> str | None:
    """Apply one hotkey to ``session``; returns what it did (``"avatar 2"``, ``"recalibrate"``,
    ``"overlay off"``, ``"mirror on"``, ``"quit"``) or None for a key without a meaning.

    ``key`` is a ``cv2.waitKey`` code (-1 = none) or a string (its first character counts).
    """
    if key is None:
        return None
    if isinstance(key, str):
        if not key:
            return None
        code = ord(key[0])
    else:
        if key < 0:
            return None
        code = key & 0xFF
    ch = chr(code).lower() if code < 128 else ""
    if code == _ESC or ch == "q":
        session.stop()
        return "quit"
    if "1" <= ch <= "9":
        index = int(ch) - 1
        return f"avatar {index + 1}" if session.switch_avatar(index) else None
    if ch == "c":
        session.recalibrate()
        session.say("recalibrating: the next frame's pose is the neutral pose.")
        return "recalibrate"
    if ch == "o":
        return f"overlay {'on' if session.toggle_overlay() else 'off'}"
    if ch == "m":
        on = session.toggle_mirror()
        session.say(f"mirror {'on' if on else 'off'} (recalibrating).")
        return f"mirror {'on' if on else 'off'}"
    return None

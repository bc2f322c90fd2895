"""What ``odecam live`` is asked to do: :class:`LiveConfig` (capture source, outputs, smoothing, framing),
checked when it is made, and :class:`LiveError`, the one-sentence failure of a live session (exit status 2 at
the command line). Split from :mod:`odecam.realtime.live`, which runs the session and re-exports both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from odecam.errors import OdecamError
from odecam.realtime.framing import FramingConfig
from odecam.realtime.one_euro import OneEuroConfig

__all__ = ["LiveConfig", "LiveError"]


class LiveError(OdecamError):
    """The live session cannot run (no usable output, camera cannot be opened, ...); one sentence."""


@dataclass
class LiveConfig:
    """What ``odecam live`` captures, how it processes it and where the result goes.

    Attributes:
        camera: camera index or device path / URL (used when ``video`` is None).
        video: a video file standing in for the camera: every frame is rendered, at the file's own fps
            when the model keeps up (slower when it does not); ``record`` then holds one frame per
            input frame at the file's fps, while the virtual camera keeps its steady ``fps``.
        loop: restart ``video`` at its end instead of ending the session.
        camera_size: ``(width, height)`` requested from a camera (None: the camera's default).
        fps: rate of the virtual camera and of the recording (and requested from a camera).
        canvas: ``(width, height)`` of the virtual camera picture and recording; None = the camera's size.
        background: BGR colour around the letterboxed (square) avatar.
        virtual_camera: send to a virtual camera (pyvirtualcam).
        vcam_backend, vcam_device: pyvirtualcam backend name / device (None: the first that works).
        preview: show a window with the avatar, the driving crop and (toggleable) statistics.
        record: write the canvas to this ``.mp4``.
        max_frames: stop after this many avatar frames (None: until the video ends, ``q`` or Ctrl+C).
        smoothing, min_cutoff, beta: One Euro filtering of the driving keypoints.
        zoom, pan_x, pan_y, follow_face, level_roll: framing of the driving frame (see :class:`FramingConfig`).
        rest, rest_fade: with nobody in view (the framer follows no face) the avatar glides to its rest pose over
            ``rest_fade`` seconds instead of following F_K on the empty room (:mod:`odecam.realtime.presence`).
        paste_back: show the avatar in its whole photo (the rendered square blended back where it was cut from,
            :mod:`odecam.engine.paste_back`), fitted to the canvas, instead of the square alone; avatars made
            without a :attr:`~odecam.engine.avatar.Avatar.placement` stay squares. Give it a model whose field is
            anchored at the square's edges (:func:`odecam.engine.paste_back.anchored`, as ``odecam live
            --paste-back`` does), or a head that moves far shows its moved hair twice where the square fades.
        mirror: flip the driving frame horizontally (the avatar moves like your mirror image).
        overlay: start with the statistics overlay on in the preview.
        stdin_commands: also read hotkeys as lines on stdin (``c`` + Enter), where the preview is off.
    """

    camera: int | str = 0
    video: str | None = None
    loop: bool = False
    camera_size: tuple[int, int] | None = None
    fps: float = 30.0
    canvas: tuple[int, int] | None = (1280, 720)
    background: tuple[int, int, int] = (0, 0, 0)
    virtual_camera: bool = False
    vcam_backend: str | None = None
    vcam_device: str | None = None
    preview: bool = False
    record: str | None = None
    max_frames: int | None = None
    smoothing: bool = True
    min_cutoff: float = OneEuroConfig.min_cutoff
    beta: float = OneEuroConfig.beta
    zoom: float = 1.0
    pan_x: float = 0.0
    pan_y: float = 0.0
    follow_face: bool = True
    level_roll: bool = True
    rest: bool = True
    rest_fade: float = 0.4
    paste_back: bool = False
    mirror: bool = False
    overlay: bool = True
    stdin_commands: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.fps <= 240:
            raise LiveError(f"--fps must be between 0 and 240, got {self.fps:g}.")
        if self.canvas is not None:
            w, h = self.canvas
            if w < 2 or h < 2 or w % 2 or h % 2:
                raise LiveError(f"the canvas must have an even width and height, got {w}x{h}; e.g. 1280x720.")
        if not 0 <= self.rest_fade <= 60:
            raise LiveError(f"--rest-fade must be between 0 and 60 seconds, got {self.rest_fade:g}.")
        if self.max_frames is not None and self.max_frames < 1:
            raise LiveError(f"--max-frames must be at least 1, got {self.max_frames}.")
        try:
            OneEuroConfig(min_cutoff=self.min_cutoff, beta=self.beta)
            FramingConfig(zoom=self.zoom)
        except ValueError as e:
            raise LiveError(str(e)) from None

    @property
    def source_name(self) -> str:
        if self.video is not None:
            return f"video {os.path.basename(self.video)}"
        return f"camera {self.camera}"

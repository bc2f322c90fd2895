"""Inputs of the photo animation protocol: one avatar photo, driving videos of someone else.

This is how a user meets odecam (``demo``, ``live``): the photo is framed to its face with
:func:`odecam.engine.portrait.find_portrait` (the built-in ``astronaut`` as well), and every driving
video is framed frame by frame with live's :class:`~odecam.realtime.framing.FaceFramer` (a
face-following square crop, still while the head is still) at the model's size S; where it levels a
tilted face for F_K, the levelled frame and its roll go along (:attr:`EvalVideo.levelled`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from odecam.engine.images import to_tensor
from odecam.engine.paste_back import Placement
from odecam.errors import OdecamError
from odecam.evaluation.protocols import EvalVideo, list_videos

__all__ = ["BUILTIN_SOURCE", "SourcePhoto", "load_source_photo", "load_framed_videos"]

BUILTIN_SOURCE = "astronaut"


@dataclass
class SourcePhoto:
    """The avatar photo of the animation protocol.

    Attributes: ``name``; ``image`` the face crop (H', W', 3) uint8 RGB; ``tensor`` (1, 3, S, S) in
    [0, 1] at the model's size; ``box`` (x, y, side) of the crop in the photo, or None (no face found:
    the whole photo); ``description`` one line saying what was done; ``placement`` where the model's square lies
    in the photo (:class:`odecam.engine.paste_back.Placement`: the avatar's surroundings, as ``demo`` has them).
    """

    name: str
    image: np.ndarray
    tensor: torch.Tensor
    box: tuple[int, int, int] | None
    description: str
    placement: Placement | None = None


def load_source_photo(spec: str, size: int, crop: bool = True, level: bool = True) -> SourcePhoto:
    """``spec``: an image file, or ``astronaut`` for the built-in portrait; framed to its face (turned upright
    first when tilted, unless ``level`` is False)."""
    from odecam import assets
    from odecam.engine.images import load_image
    from odecam.engine.portrait import describe_portrait, find_portrait

    if spec == BUILTIN_SOURCE and not Path(spec).exists():
        rgb, name = load_image(assets.default_avatar_path(), "built-in avatar"), BUILTIN_SOURCE
    else:
        rgb, name = load_image(spec, "source image"), Path(spec).stem
    found = find_portrait(rgb, crop, level=level)
    box = None if found.box is None else (found.box.x, found.box.y, found.box.size)
    return SourcePhoto(name, found.image, to_tensor(found.image, size), box,
                       describe_portrait(found, f"source {name}", crop), Placement.of_portrait(rgb, found, size))


def load_framed_videos(path: str | Path, size: int, max_frames: int | None = None,
                       min_frames: int = 2, level: bool = True) -> list[EvalVideo]:
    """Decode driving videos through live's face framing -> :class:`EvalVideo` (T, 3, S, S) in [0, 1];
    ``level``: live's roll levelling for F_K (``EvalVideo.levelled``; ``frames`` are never turned)."""
    from odecam.engine.video import read_frames
    from odecam.realtime.framing import FaceFramer, FramingConfig

    out = []
    for v in list_videos(path):
        framer = FaceFramer(FramingConfig(output_size=size, level_roll=level))
        frames, levelled = [], {}
        for rgb in read_frames(v, max_frames, role="driving video"):
            # as live frames BGR camera frames (its detections after each frame: they act from the next one)
            framing = framer.process(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), defer_detection=True)
            frames.append(to_tensor(cv2.cvtColor(framing.image, cv2.COLOR_BGR2RGB), size))
            if framing.level_image is not None:
                levelled[len(frames) - 1] = (to_tensor(cv2.cvtColor(framing.level_image, cv2.COLOR_BGR2RGB), size)[0],
                                             framing.roll)
        if len(frames) < min_frames:
            raise OdecamError(f"driving video {v.name!r} has {len(frames)} frames; it needs at least {min_frames}.")
        out.append(EvalVideo(v.stem, torch.cat(frames), levelled))
    return out

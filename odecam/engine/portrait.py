"""Frame the face in a user's avatar photo: the largest face, cropped square with live's margins.

Every command that takes an avatar image (``demo --source/--ref``, ``live``, ``serve``, ``receive``,
``eval --source``) passes it through :func:`frame_portrait` (or :func:`load_portrait`, which also
reads the file and prints one line saying what was done), so a wide photo keeps the whole face
instead of losing half of it to a centre square.

The crop uses the margins of :class:`odecam.realtime.framing.FramingConfig` (``face_scale``: the
square's side is 1.9 face-box sides; ``face_offset_y``: its centre sits 0.05 face sides above the
face box's centre), which is how ``live`` frames the webcam and how the training clips frame their
faces (measured on them: see ``FramingConfig``).
The square is shifted, never padded, to stay inside the image, and is at most the image's short
side. With no face found the whole image is kept and the model's centre square applies, as before.

A tilted face is levelled first (``level=True``, the default): the roll of its eye line (dlib's 5-point
model, :func:`odecam.realtime.face_detection.face_roll`) beyond :data:`LEVEL_MIN_ROLL` degrees is undone by turning
the photo about the face's centre (borders reflected, :mod:`odecam.rotation`), so the avatar is upright, as
live levels the driving face for F_K. Measured on carphone driving the astronaut turned by 20 degrees: head
roll correlation 0.44 kept tilted, 0.97 turned upright, as from the upright photo (EVALUATION.md, "A tilted
avatar photo is turned upright").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from odecam.config import LEVEL_MIN_ROLL
from odecam.engine.paste_back import Placement
from odecam.realtime.face_detection import detect_faces_scored, face_roll
from odecam.realtime.framing import CropBox, FramingConfig, face_crop_box
from odecam.rotation import warp_reflected

__all__ = ["PortraitFraming", "find_portrait", "frame_portrait", "read_portrait", "load_portrait", "avatar_photo",
           "describe_portrait"]

#: rows the detector sees: the photo's own height, clipped to this range (dlib's HOG finds faces of
#: about 80 px and up, so small photos are upscaled to 320 rows and huge ones downscaled to 1024)
DETECT_MIN_ROWS = 320
DETECT_MAX_ROWS = 1024
#: dlib detection score a face needs to compete on size (clear frontal faces score about 1-2; a
#: false hit on clothing or texture scores near 0)
MIN_SCORE = 0.3


@dataclass(frozen=True)
class PortraitFraming:
    """Result of :func:`find_portrait`.

    Attributes:
        image: the square crop around the face (H', W' = side, side), or the whole image when
            ``box`` is None (the model's centre square then applies).
        box: the crop in input-image pixels, or None when no face was found or cropping is off.
        face: the largest detected face box ``(x0, y0, x1, y1)`` in input pixels, or None.
        shape: ``(H, W)`` of the input image.
        faces: number of faces detected (confident ones; 1 when only a doubtful one was taken).
        roll: degrees the photo was turned clockwise to level the face (its eye line's roll,
            counter-clockwise on screen positive), about the face box's centre; 0.0 when it was not
            turned. ``box`` is in the pixels of that turned photo (same size as the input).
    """

    image: np.ndarray
    box: CropBox | None
    face: tuple[float, float, float, float] | None
    shape: tuple[int, int]
    faces: int = 0
    roll: float = 0.0


def find_portrait(rgb: np.ndarray, crop: bool = True, config: FramingConfig | None = None,
                  level: bool = True) -> PortraitFraming:
    """Detect the largest face in ``rgb`` (H, W, 3) uint8 RGB and crop a square around it.

    ``crop=False`` takes the image as it is (no detection). ``config`` supplies the margins
    (``face_scale``, ``face_offset_y``); the default is live's :class:`FramingConfig`. ``level``: turn a
    face whose roll exceeds :data:`LEVEL_MIN_ROLL` degrees upright before cropping (:attr:`PortraitFraming.roll`).
    """
    h, w = rgb.shape[:2]
    if not crop:
        return PortraitFraming(image=rgb, box=None, face=None, shape=(h, w))
    cfg = config or FramingConfig()
    rows = int(min(max(h, DETECT_MIN_ROWS), DETECT_MAX_ROWS))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    scored = detect_faces_scored(grey, rows)
    if not scored:
        return PortraitFraming(image=rgb, box=None, face=None, shape=(h, w))
    # the largest of the confident faces (a doubtful HOG hit on a shirt must not win by size),
    # or the most confident one when none is confident
    confident = [b for b, sc in scored if sc >= MIN_SCORE]
    if confident:
        face = max(confident, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    else:
        face = max(scored, key=lambda bs: bs[1])[0]
    faces = max(1, len(confident))
    roll = _tilt(rgb, face, cfg.max_roll) if level else 0.0
    if roll:  # turn the photo about the face's centre: the face box stays where it is, now upright
        centre = ((face[0] + face[2]) / 2.0, (face[1] + face[3]) / 2.0)
        rgb = warp_reflected(rgb, cv2.getRotationMatrix2D(centre, -roll, 1.0))
    box = face_crop_box(face, h, w, cfg.face_scale, cfg.face_offset_y)
    image = np.ascontiguousarray(rgb[box.y:box.y + box.size, box.x:box.x + box.size])
    return PortraitFraming(image=image, box=box, face=face, shape=(h, w), faces=faces, roll=roll)


def _tilt(rgb: np.ndarray, face: tuple[float, float, float, float], max_roll: float) -> float:
    """The roll of ``face`` in degrees, within +-``max_roll`` (live's limit), when it exceeds
    :data:`LEVEL_MIN_ROLL`; else 0.0 (also without dlib's 5-point model)."""
    roll = face_roll(rgb, face)
    return float(np.clip(roll, -max_roll, max_roll)) if roll is not None and abs(roll) > LEVEL_MIN_ROLL else 0.0


def frame_portrait(rgb: np.ndarray, crop: bool = True, level: bool = True) -> tuple[np.ndarray, CropBox | None]:
    """(H, W, 3) uint8 RGB -> ``(crop, box)``: the square around the largest face (levelled, see
    :func:`find_portrait`) and where it came from in ``rgb`` pixels, or ``(rgb, None)`` when no face was found
    (or ``crop`` is False)."""
    found = find_portrait(rgb, crop, level=level)
    return found.image, found.box


def describe_portrait(found: PortraitFraming, role: str = "avatar", crop: bool = True) -> str:
    """One line saying what :func:`find_portrait` did, e.g. for a command's console output."""
    h, w = found.shape
    if not crop:
        return f"{role}: taken as it is ({w}x{h}, --no-crop); the model sees its centre square"
    if found.box is None or found.face is None:
        s = min(h, w)
        return (f"{role}: no face found in the {w}x{h} image; using the whole image "
                f"(its centre {s}x{s} square)")
    x0, y0, x1, y1 = (int(round(v)) for v in found.face)
    b = found.box
    others = f" (the largest of {found.faces})" if found.faces > 1 else ""
    turned = (f"; tilted {abs(found.roll):.0f} degrees, turned upright (--keep-tilt keeps it)"
              if found.roll else "")
    return (f"{role}: face found at x {x0}-{x1}, y {y0}-{y1}{others}{turned}; cropped to "
            f"{b.size}x{b.size} at ({b.x}, {b.y}) of {w}x{h} (--no-crop keeps the whole image)")


def read_portrait(path: str | Path, role: str = "source image", crop: bool = True,
                  log: Callable[[str], None] | None = print, prefix: str = "",
                  level: bool = True) -> tuple[np.ndarray, PortraitFraming]:
    """Read an avatar image file and frame its face (levelled unless ``level`` is False) -> ``(photo, found)``: the
    photo as read, (H, W, 3) uint8 RGB, and :func:`find_portrait`'s result; ``log`` gets the one-line description.

    Raises :class:`odecam.errors.InputImageError` for unreadable files (see ``load_image``).
    """
    from odecam.engine.images import load_image

    photo = load_image(path, role)
    found = find_portrait(photo, crop, level=level)
    if log is not None:
        log(prefix + describe_portrait(found, f"{role} {Path(path).name}", crop))
    return photo, found


def load_portrait(path: str | Path, role: str = "source image", crop: bool = True,
                  log: Callable[[str], None] | None = print, prefix: str = "", level: bool = True) -> np.ndarray:
    """:func:`read_portrait`'s framed square alone."""
    return read_portrait(path, role, crop, log, prefix, level)[1].image


def avatar_photo(source: str | Path | None, size: int | None = None, crop: bool = True,
                 log: Callable[[str], None] | None = print, level: bool = True,
                 role: str = "source image") -> tuple[np.ndarray, Placement | None]:
    """The avatar's framed square from the photo file ``source`` (None: the built-in astronaut, cut with
    :data:`odecam.assets.AVATAR_CROP`) and, given the model's ``size``, where that square lies in the photo (for
    :class:`odecam.engine.paste_back.PasteBack`; None without ``size``)."""
    if source is None:
        from odecam import assets
        from odecam.engine.images import load_image

        photo = load_image(assets.default_avatar_path(), "built-in avatar")
        bounds = assets.AVATAR_CROP.bounds(photo)
        image = assets.AVATAR_CROP.apply(photo)
        return image, None if size is None else Placement.of_box(photo, *bounds, size)
    photo, found = read_portrait(source, role, crop, log=log, level=level)
    return found.image, None if size is None else Placement.of_portrait(photo, found, size)

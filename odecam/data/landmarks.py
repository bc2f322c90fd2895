"""dlib's 68 facial landmarks: index groups, the horizontal-flip permutation, normalisation and
simple expression / pose signals.

Coordinates
-----------
Landmarks are stored as ``(68, 2)`` float32 ``(x, y)`` arrays *normalised to [-1, 1] in crop
coordinates*, with the model's convention (:func:`odecam.model.geometry.make_coordinate_grid`,
``align_corners=True``): the centre of pixel column ``i`` of an ``S``-pixel-wide image is at
``2 i / (S - 1) - 1``, so -1 / +1 are the centres of the border pixels. Missing faces are rows of NaN. A horizontal flip of the image maps
``x -> -x`` and swaps the subject's left and right points (:data:`FLIP_PERMUTATION`).

Point groups (0-based, the iBUG 300-W convention dlib follows; "right" is the subject's right,
i.e. the left side of the image): jaw 0-16, right brow 17-21, left brow 22-26, nose bridge 27-30,
nostrils 31-35, right eye 36-41, left eye 42-47, outer lips 48-59, inner lips 60-67.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "NUM_LANDMARKS", "JAW", "RIGHT_BROW", "LEFT_BROW", "NOSE_BRIDGE", "NOSTRILS", "RIGHT_EYE", "LEFT_EYE",
    "OUTER_LIPS", "INNER_LIPS", "FLIP_PERMUTATION", "flip_landmarks", "pixels_to_normalised",
    "normalised_to_pixels", "missing_landmarks", "expression_signals", "landmark_descriptor",
]

NUM_LANDMARKS = 68
JAW = np.arange(0, 17)
RIGHT_BROW = np.arange(17, 22)
LEFT_BROW = np.arange(22, 27)
NOSE_BRIDGE = np.arange(27, 31)
NOSTRILS = np.arange(31, 36)
RIGHT_EYE = np.arange(36, 42)
LEFT_EYE = np.arange(42, 48)
OUTER_LIPS = np.arange(48, 60)
INNER_LIPS = np.arange(60, 68)


def _flip_permutation() -> np.ndarray:
    pairs = [(i, 16 - i) for i in range(8)]  # jaw, 8 is the chin
    pairs += [(17 + i, 26 - i) for i in range(5)]  # brows
    pairs += [(31, 35), (32, 34)]  # nostrils (33 is the tip)
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lips (51, 57 central)
    pairs += [(60, 64), (61, 63), (65, 67)]  # inner lips (62, 66 central)
    perm = np.arange(NUM_LANDMARKS)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


#: ``flipped[k] = original[FLIP_PERMUTATION[k]]`` (with x negated) after a horizontal image flip;
#: an involution (applying it twice is the identity).
FLIP_PERMUTATION: np.ndarray = _flip_permutation()


def flip_landmarks(lm: np.ndarray) -> np.ndarray:
    """Landmarks (..., 68, 2) normalised to [-1, 1] -> those of the horizontally flipped image."""
    out = np.array(lm, dtype=np.float32, copy=True)[..., FLIP_PERMUTATION, :]
    out[..., 0] *= -1.0
    return out


def pixels_to_normalised(pts: np.ndarray, x0: float, y0: float, side: float, size: int) -> np.ndarray:
    """Pixel ``(x, y)`` points (pixel-centre coordinates of the full frame) -> [-1, 1] coordinates of
    the square crop with top-left ``(x0, y0)`` and side ``side`` pixels once resized to ``size``
    pixels (a resize maps input pixel centre ``u`` to output ``(u + 0.5) * size / side - 0.5``)."""
    p = np.asarray(pts, np.float64)
    out_px = (p - np.array([x0, y0]) + 0.5) * (float(size) / float(side)) - 0.5
    return (2.0 * out_px / (size - 1) - 1.0).astype(np.float32)


def normalised_to_pixels(lm: np.ndarray, size: int) -> np.ndarray:
    """[-1, 1] landmarks -> pixel-centre coordinates of a ``size`` x ``size`` image (float32)."""
    return ((np.asarray(lm, np.float32) + 1.0) * 0.5 * (size - 1)).astype(np.float32)


def missing_landmarks(*shape: int) -> np.ndarray:
    """NaN landmarks of shape ``(*shape, 68, 2)`` float32 (a face that was not found)."""
    return np.full((*shape, NUM_LANDMARKS, 2), np.nan, np.float32)


def expression_signals(lm: np.ndarray) -> np.ndarray:
    """(..., 68, 2) landmarks -> (..., 5) signals: mouth opening, eye opening, roll, yaw, pitch proxies.

    * mouth: mean inner-lip gap (61-67, 62-66, 63-65) over the eye-corner distance (36-45);
    * eyes: mean eyelid gap of both eyes over the eye-corner distance;
    * roll: angle of the eye line in radians;
    * yaw: horizontal offset of the nose tip (33) from the eye-corner midpoint, over the eye-corner
      distance, measured along the eye line;
    * pitch: vertical offset of the nose tip from the eye midpoint, perpendicular to the eye line,
      over the eye-corner distance (its neutral value is about 0.6).
    Translation and scale are removed by construction. NaN where landmarks are missing.
    """
    p = np.asarray(lm, np.float64)
    r_out, l_out = p[..., 36, :], p[..., 45, :]
    axis = l_out - r_out
    iod = np.linalg.norm(axis, axis=-1)
    iod = np.where(iod > 1e-9, iod, np.nan)
    ex = axis / iod[..., None]
    ey = np.stack([-ex[..., 1], ex[..., 0]], -1)  # perpendicular, pointing down the face
    mouth = np.mean([np.linalg.norm(p[..., a, :] - p[..., b, :], axis=-1) for a, b in ((61, 67), (62, 66), (63, 65))],
                    axis=0) / iod
    eyes = np.mean([np.linalg.norm(p[..., a, :] - p[..., b, :], axis=-1)
                    for a, b in ((37, 41), (38, 40), (43, 47), (44, 46))], axis=0) / iod
    roll = np.arctan2(axis[..., 1], axis[..., 0])
    mid = (r_out + l_out) / 2.0
    nose = p[..., 33, :] - mid
    yaw = (nose * ex).sum(-1) / iod
    pitch = (nose * ey).sum(-1) / iod
    return np.stack([mouth, eyes, roll, yaw, pitch], -1)


def landmark_descriptor(lm: np.ndarray) -> np.ndarray:
    """(..., 68, 2) -> (..., 136) landmarks with translation and scale removed (centred on their mean,
    divided by the eye-corner distance) -- a configuration vector whose Euclidean distances compare
    expressions and head poses across frames. NaN where landmarks are missing."""
    p = np.asarray(lm, np.float64)
    c = p - np.nanmean(p, axis=-2, keepdims=True) if p.size else p
    iod = np.linalg.norm(p[..., 45, :] - p[..., 36, :], axis=-1)
    iod = np.where(iod > 1e-9, iod, np.nan)
    d = c / iod[..., None, None]
    return d.reshape(*d.shape[:-2], -1)

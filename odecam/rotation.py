"""Turning an image about its centre, and points in [-1, 1] units with it (numpy / OpenCV).

One rotation for the whole project: the live framing levels the face for F_K with it
(:func:`odecam.realtime.framing.level_image`) and training's ``rotate`` augmentation turns frames, landmarks
and motion fields with it (:func:`odecam.training.datasets.common.rotate_item`), so the model is trained on
exactly the turn it sees live.

Conventions: ``degrees`` > 0 turns the picture counter-clockwise on screen (as ``cv2.getRotationMatrix2D``),
about the centre ``((W - 1) / 2, (H - 1) / 2)`` of an (H, W[, C]) image; borders are reflected
(``BORDER_REFLECT_101``), bilinear. Points are (x, y) in [-1, 1] with -1 and 1 at the centres of the border
pixels (``align_corners=True``, :mod:`odecam.data.landmarks`).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["center_rotation", "warp_reflected", "rotate_image", "unit_rotation"]


def center_rotation(h: int, w: int, degrees: float) -> np.ndarray:
    """The 2x3 float64 affine matrix M (pixels -> pixels) turning an ``h`` x ``w`` image by ``degrees``
    counter-clockwise on screen about its centre ``((w - 1) / 2, (h - 1) / 2)``."""
    return cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), degrees, 1.0)


def warp_reflected(image: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``image`` (H, W[, C]) moved by the 2x3 pixel matrix ``m`` (output pixel M p takes input pixel p),
    same size and dtype; bilinear, borders reflected."""
    h, w = image.shape[:2]
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def rotate_image(image: np.ndarray, degrees: float) -> np.ndarray:
    """``image`` (H, W[, C]) turned by ``degrees`` counter-clockwise on screen about its centre (same size and
    dtype; borders reflected)."""
    h, w = image.shape[:2]
    return warp_reflected(image, center_rotation(h, w, degrees))


def unit_rotation(m: np.ndarray, h: int, w: int) -> np.ndarray:
    """The 2x2 float32 rotation R in [-1, 1] units of the centred pixel matrix ``m`` (:func:`center_rotation`
    of an ``h`` x ``w`` image): a point p in [-1, 1] moves to R p (p as a row: ``p @ R.T``).

    R = D^-1 M[:, :2] D with D = diag((w - 1) / 2, (h - 1) / 2), the pixel half-extents (the centre maps to
    (0, 0), so the translation drops out)."""
    half = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    return (m[:, :2] * half[None, :] / half[:, None]).astype(np.float32)

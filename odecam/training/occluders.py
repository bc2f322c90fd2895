"""Synthetic occluders over a face: hands, held objects and patches of other pictures, placed from landmarks.

For training F_K to place its keypoints where they are when part of the face is covered (``scripts/
occlusion_fk.py``): the same frame with and without an occluder must give the same keypoints. A hand in front
of the mouth otherwise moves F_K's mouth and chin keypoints, and the avatar's lower face melts (issue 9).

:func:`random_occluder` draws one of

* **hand** (half of the draws): a palm ellipse and 3-5 fingers of random length, width and spread, turned by a
  random angle, in a skin tone from light to dark, shaded across its width, sometimes only part-way in;
* **object**: a rounded rectangle (a phone, a cup, a microphone) in a flat colour with noise, or in a patch of
  another picture;
* **patch**: a random polygon filled with a patch of another picture (hair, a scarf, a second face).

placed over a random part of the face (mouth and chin most often, then a cheek, the nose, an eye), covering
about 15-90% of the face's width. All shapes are feathered at the edge. Images are (H, W, 3) uint8 RGB;
landmarks (68, 2) float in pixels (dlib's order).
"""

from __future__ import annotations

import cv2
import numpy as np

#: landmark groups an occluder is centred on, with their weights: (indices, weight)
ANCHORS: tuple[tuple[tuple[int, ...], float], ...] = (
    (tuple(range(48, 68)), 0.40),  # mouth
    ((6, 7, 8, 9, 10), 0.15),  # chin
    ((2, 3, 4, 48), 0.10),  # the image-left cheek
    ((12, 13, 14, 54), 0.10),  # the image-right cheek
    ((30, 31, 32, 33, 34, 35), 0.15),  # nose tip
    (tuple(range(36, 42)), 0.05),  # an eye
    (tuple(range(42, 48)), 0.05),  # the other eye
)
SKIN_RGB_RANGE = (np.array([95.0, 60.0, 45.0]), np.array([245.0, 205.0, 180.0]))  # dark to light


def _feather(mask: np.ndarray, face_w: float) -> np.ndarray:
    return np.clip(cv2.GaussianBlur(mask, (0, 0), max(0.8, face_w / 80)), 0.0, 1.0)


def _anchor(rng: np.random.Generator, lm: np.ndarray) -> np.ndarray:
    weights = np.array([w for _, w in ANCHORS])
    idx = ANCHORS[int(rng.choice(len(ANCHORS), p=weights / weights.sum()))][0]
    return lm[list(idx)].mean(0) + rng.normal(0.0, 0.03, 2) * np.ptp(lm[:, 0])


def _hand_mask(rng: np.random.Generator, shape: tuple[int, int], centre: np.ndarray, face_w: float) -> np.ndarray:
    """A palm and 3-5 fingers, as a float mask (H, W)."""
    h, w = shape
    size = face_w * rng.uniform(0.25, 0.45)
    angle = rng.uniform(-60.0, 60.0)  # the fingers' direction, degrees from "up"
    mask = np.zeros((h, w), np.float32)
    c = (int(round(centre[0])), int(round(centre[1])))
    cv2.ellipse(mask, c, (int(size), int(size * rng.uniform(0.75, 1.0))), angle, 0, 360, 1.0, -1)
    fingers = int(rng.integers(3, 6))
    up = np.array([np.sin(np.radians(angle)), -np.cos(np.radians(angle))])
    side = np.array([-up[1], up[0]])
    spread = size * rng.uniform(0.35, 0.5)
    for k in range(fingers):
        off = (k - (fingers - 1) / 2) / max(1, fingers - 1) * 2 * spread
        length = size * rng.uniform(0.6, 1.0)
        base = centre + up * size * 0.85 + side * off
        tip_c = base + up * length * 0.5
        cv2.ellipse(mask, (int(round(tip_c[0])), int(round(tip_c[1]))),
                    (max(1, int(size * rng.uniform(0.12, 0.18))), max(2, int(length * 0.6))),
                    angle + rng.uniform(-10, 10), 0, 360, 1.0, -1)
    return mask


def _object_mask(rng: np.random.Generator, shape: tuple[int, int], centre: np.ndarray, face_w: float) -> np.ndarray:
    """A rounded rectangle, as a float mask (H, W)."""
    h, w = shape
    half = face_w * np.array([rng.uniform(0.08, 0.25), rng.uniform(0.15, 0.45)])
    box = cv2.boxPoints(((float(centre[0]), float(centre[1])), (float(2 * half[0]), float(2 * half[1])),
                         float(rng.uniform(-45, 45))))
    mask = np.zeros((h, w), np.float32)
    cv2.fillConvexPoly(mask, box.round().astype(np.int32), 1.0)
    r = int(max(1, min(half) * 0.6)) | 1
    return cv2.GaussianBlur(cv2.dilate(cv2.erode(mask, np.ones((r, r))), np.ones((r, r))), (0, 0), 0.6)


def _patch_mask(rng: np.random.Generator, shape: tuple[int, int], centre: np.ndarray, face_w: float) -> np.ndarray:
    """A random star-shaped polygon, as a float mask (H, W)."""
    h, w = shape
    n = int(rng.integers(5, 10))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = face_w * rng.uniform(0.15, 0.35) * rng.uniform(0.6, 1.4, n)
    pts = centre[None] + np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None]
    mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(mask, [pts.round().astype(np.int32)], 1.0)
    return mask


def _texture(rng: np.random.Generator, shape: tuple[int, int], donor: np.ndarray | None) -> np.ndarray:
    """(H, W, 3) float fill: a shifted, rescaled copy of ``donor``, or a flat colour with noise."""
    h, w = shape
    if donor is not None and rng.random() < 0.7:
        s = rng.uniform(0.8, 2.0)
        m = np.array([[s, 0, rng.uniform(-w, 0) * (s - 0.5)], [0, s, rng.uniform(-h, 0) * (s - 0.5)]], np.float32)
        return cv2.warpAffine(donor, m, (w, h), borderMode=cv2.BORDER_REFLECT).astype(np.float32)
    colour = rng.uniform(0, 255, 3).astype(np.float32)
    return np.clip(colour[None, None] + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.float32)


def random_occluder(rng: np.random.Generator, image: np.ndarray, landmarks: np.ndarray,
                    donor: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (H, W, 3) uint8 RGB with an occluder over part of the face of ``landmarks`` (68, 2) pixels;
    ``donor`` (H, W, 3) uint8 RGB gives textures. Returns (occluded image uint8, mask (H, W) float in [0, 1])."""
    h, w = image.shape[:2]
    lm = np.asarray(landmarks, np.float64)
    face_w = float(max(np.ptp(lm[:, 0]), 8.0))
    centre = _anchor(rng, lm)
    kind = rng.choice(["hand", "object", "patch"], p=[0.5, 0.25, 0.25])
    if kind == "hand":
        if rng.random() < 0.3:  # sliding in: the hand's centre part-way from the side
            centre = centre + np.array([rng.choice([-1, 1]) * rng.uniform(0.2, 0.6) * face_w, 0.0])
        mask = _hand_mask(rng, (h, w), centre, face_w)
        lo, hi = SKIN_RGB_RANGE
        tone = lo + (hi - lo) * rng.uniform(0, 1)
        xx = np.arange(w, dtype=np.float32)[None, :, None]
        shade = np.clip(1.0 - rng.uniform(0.1, 0.35) * ((xx - centre[0]) / (face_w * 0.5)) ** 2, 0.55, 1.0)
        fill = np.broadcast_to(tone.astype(np.float32), (h, w, 3)) * shade
        fill = fill + rng.normal(0, 3, (h, w, 3)).astype(np.float32)
    else:
        mask = (_object_mask if kind == "object" else _patch_mask)(rng, (h, w), centre, face_w)
        fill = _texture(rng, (h, w), donor)
    mask = _feather(mask, face_w)
    out = image.astype(np.float32) * (1.0 - mask[..., None]) + np.clip(fill, 0, 255) * mask[..., None]
    return out.round().astype(np.uint8), mask

"""Landmark-guided synthetic motion: make a portrait open its mouth, blink and turn its head.

Given an image and its dlib 68 landmarks (``(68, 2)`` in [-1, 1], :mod:`odecam.data.landmarks`),
:func:`synthesize` moves the landmarks by a :class:`MotionParams` and warps the image with a
thin-plate spline (TPS) that carries every landmark to its new place:

* **mouth** ``mouth`` (inner-lip gap added, in mouth widths; negative closes an open mouth): the
  lower lip, the mouth corners (partly) and the jaw (chin fully, fading towards the ears) move down
  the face; the new gap between the inner lips is painted as a dark mouth interior (feathered), with
  an optional light strip of upper teeth;
* **blink** ``blink`` in [0, 1]: the upper eyelid moves to the lower one (1 = closed); a closed eye
  is painted over with the eyelid's skin tone and a dark lash line;
* **head pose** ``yaw``, ``pitch``, ``roll`` (radians): the landmarks, lifted to 3-D on a generic
  head (an ellipsoid of the face's size, plus a nose and lips standing out of it), are rotated about
  the head centre and projected with perspective (camera at 6 face radii); a ring of virtual points
  around the face (forehead, hair, ears) turns with the head, a wider ring and the image border stay.

The TPS maps output to input coordinates (backward warp, ``cv2.remap`` with reflected borders); it is
solved on the control points in [-1, 1] units and evaluated on a 48 x 48 grid, then upsampled
linearly. The warp closes an eye only half way (a full collapse folds the spline) and the painting does the rest;
where the map still folds over (negative Jacobian on the grid) all amplitudes are scaled down.
Everything is NumPy / OpenCV on uint8 RGB (H, W, 3) images of any square size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from odecam.data.landmarks import normalised_to_pixels
from odecam.training.datasets.common import FIELD_GRID
from odecam.training.datasets.stills import tps_solve

__all__ = ["FIELD_GRID", "MotionParams", "MotionConfig", "random_motion", "move_landmarks", "synthesize",
           "synthesize_with_field"]

# depth (in face radii) that the nose and the lips stand out of the head ellipsoid
_EXTRA_DEPTH = np.zeros(68)
_EXTRA_DEPTH[27:31] = (0.08, 0.16, 0.26, 0.36)
_EXTRA_DEPTH[31:36] = (0.14, 0.18, 0.22, 0.18, 0.14)
_EXTRA_DEPTH[48:68] = 0.1
# how much of the mouth opening each jaw point follows (chin = 1, fading towards the ears)
_JAW_FOLLOW = np.zeros(68)
_JAW_FOLLOW[3:14] = (0.05, 0.2, 0.45, 0.75, 0.92, 1.0, 0.92, 0.75, 0.45, 0.2, 0.05)


@dataclass(frozen=True)
class MotionParams:
    """One synthetic expression / pose change (all zero = the identity)."""

    mouth: float = 0.0  # inner-lip gap added, in mouth widths (negative closes)
    blink: float = 0.0  # 0 = as is, 1 = eyes closed
    yaw: float = 0.0  # radians, positive turns the face to the image's right
    pitch: float = 0.0  # radians, positive tilts the face down
    roll: float = 0.0  # radians, positive rotates clockwise in the image
    teeth: bool = False  # paint a light strip of upper teeth into an opened mouth


@dataclass
class MotionConfig:
    """Ranges of :func:`random_motion`: a uniform draw in [-x, x] (mouth in [mouth_close, mouth_open])."""

    mouth_open: float = 0.55
    mouth_close: float = -0.1
    blink_prob: float = 0.3
    yaw: float = math.radians(20)
    pitch: float = math.radians(12)
    roll: float = math.radians(12)
    teeth_prob: float = 0.4
    pose_prob: float = 0.8  # probability that the head turns at all


def random_motion(rng: np.random.Generator, cfg: MotionConfig | None = None, scale: float = 1.0) -> MotionParams:
    """Draw a :class:`MotionParams` (``scale`` shrinks every amplitude, e.g. 0.3 for a source frame)."""
    c = cfg or MotionConfig()
    pose = rng.random() < c.pose_prob
    u = lambda a: float(rng.uniform(-a, a)) * scale if pose else 0.0  # noqa: E731
    return MotionParams(
        mouth=float(rng.uniform(c.mouth_close, c.mouth_open)) * scale,
        blink=float(rng.uniform(0.5, 1.0)) * min(1.0, scale) if rng.random() < c.blink_prob else 0.0,
        yaw=u(c.yaw), pitch=u(c.pitch), roll=u(c.roll), teeth=bool(rng.random() < c.teeth_prob))


def _frame(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Face frame of (68, 2) points: centre, unit x (eye line), unit y (down the face), radius."""
    ex = p[45] - p[36]
    ex = ex / max(np.linalg.norm(ex), 1e-9)
    ey = np.array([-ex[1], ex[0]])
    centre = 0.5 * (p[:17].mean(0) + p[17:27].mean(0))
    radius = 0.5 * float(np.linalg.norm(p[16] - p[0]))
    return centre, ex, ey, max(radius, 1e-6)


def _expression(p: np.ndarray, m: MotionParams, lid_warp: float = 1.0) -> np.ndarray:
    """Mouth and eyelid motion in the image plane: (68, 2) -> (68, 2). ``lid_warp`` scales the lid
    motion (the warp closes an eye only half way: collapsing it fully folds the thin-plate spline)."""
    q = p.copy()
    _, ex, ey, _ = _frame(p)
    width = float(np.linalg.norm(p[54] - p[48]))
    gap = float(np.mean([(p[b] - p[a]) @ ey for a, b in ((61, 67), (62, 66), (63, 65))]))
    d = max(m.mouth * width, -max(gap, 0.0))  # never close past the upper lip
    if d != 0.0:
        # the lower lip drops most in the middle and tapers to the corners (less shear, no fold)
        for i, w in ((66, 1.0), (57, 1.0), (65, 0.75), (67, 0.75), (56, 0.85), (58, 0.85), (55, 0.55), (59, 0.55),
                     (48, 0.3), (54, 0.3), (60, 0.3), (64, 0.3)):
            q[i] += w * d * ey
        q[48] += 0.04 * d * ex
        q[54] -= 0.04 * d * ex
        q[:17] += _JAW_FOLLOW[:17, None] * 0.85 * d * ey[None]
    if m.blink > 0:
        for up, low in ((37, 41), (38, 40), (43, 47), (44, 46)):
            q[up] = p[up] + lid_warp * m.blink * 0.9 * (p[low] - p[up])
            q[low] = p[low] + lid_warp * m.blink * 0.1 * (p[up] - p[low])
    return q


def _pose(points: np.ndarray, p68: np.ndarray, m: MotionParams) -> np.ndarray:
    """Rotate ``points`` (K, 2) of a head whose landmarks are ``p68`` by yaw / pitch / roll, with perspective."""
    if m.yaw == 0 and m.pitch == 0 and m.roll == 0:
        return points.copy()
    c, ex, ey, r = _frame(p68)
    loc = np.stack([(points - c) @ ex, (points - c) @ ey], -1) / r  # face units
    z = np.sqrt(np.clip(1.0 - loc[:, 0] ** 2 - (loc[:, 1] * 0.75) ** 2, 0.02, None))
    if len(points) >= 68:
        z[:68] += _EXTRA_DEPTH
    X = np.stack([loc[:, 0], loc[:, 1], z], -1)
    cy, sy, cp, sp, cr, sr = (math.cos(m.yaw), math.sin(m.yaw), math.cos(m.pitch), math.sin(m.pitch),
                              math.cos(m.roll), math.sin(m.roll))
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    Rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    Y = X @ (Rz @ Rx @ Ry).T
    dist = 6.0

    def proj(v: np.ndarray) -> np.ndarray:
        return v[:, :2] * (dist / (dist - v[:, 2:3]))

    moved = loc + proj(Y) - proj(X)
    return c + r * (moved[:, :1] * ex + moved[:, 1:2] * ey)


def _anchors(p: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Virtual head-ring points (move with the head) and fixed points (outer ring + image border)."""
    c, ex, ey, r = _frame(p)
    ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    down = np.where(np.sin(ang) > 0, 2.0, 1.5)  # more room below the chin, which drops with the jaw
    ring = c - 0.2 * r * ey + r * (1.3 * np.cos(ang)[:, None] * ex + (down * np.sin(ang))[:, None] * ey)
    outer = c + r * (2.3 * np.cos(ang)[:, None] * ex + 2.5 * np.sin(ang)[:, None] * ey)
    t = np.linspace(0, size - 1, 5)
    border = np.concatenate([np.stack([t, np.zeros(5)], -1), np.stack([t, np.full(5, size - 1.0)], -1),
                             np.stack([np.zeros(3), t[1:-1]], -1), np.stack([np.full(3, size - 1.0), t[1:-1]], -1)])
    inside = (outer > -0.25 * size).all(1) & (outer < 1.25 * size).all(1)
    far = np.linalg.norm(outer[:, None] - border[None], axis=-1).min(1) > 0.08 * size
    fixed = np.concatenate([outer[inside & far], border])
    # ring points outside the image or next to a fixed point would tear the border: dropped
    keep = ((ring > 0.04 * size) & (ring < 0.96 * size)).all(1)
    keep &= np.linalg.norm(ring[:, None] - fixed[None], axis=-1).min(1) > 0.1 * size
    return ring[keep], fixed


def move_landmarks(p: np.ndarray, m: MotionParams) -> np.ndarray:
    """(68, 2) landmarks (any units, e.g. pixels or [-1, 1]) -> where ``m`` puts them."""
    p = np.asarray(p, np.float64)
    return _pose(_expression(p, m), p, m)


def _feather(mask: np.ndarray, size: int) -> np.ndarray:
    k = max(3, int(round(size * 0.012)) * 2 + 1)
    return cv2.GaussianBlur(mask.astype(np.float32), (k, k), 0)[..., None]


def _paint_mouth(img: np.ndarray, q: np.ndarray, m: MotionParams, size: int) -> np.ndarray:
    inner = q[60:68]
    _, ex, ey, _ = _frame(q)
    gap = float(np.mean([(q[b] - q[a]) @ ey for a, b in ((61, 67), (62, 66), (63, 65))]))
    if gap < 0.012 * size:
        return img
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(inner).astype(np.int32)], 1, lineType=cv2.LINE_AA)
    alpha = _feather(mask, size)
    out = img.astype(np.float32)
    interior = np.array([52.0, 18.0, 20.0], np.float32)  # dark red-brown (RGB)
    out = out * (1 - alpha) + interior * alpha
    if m.teeth and gap > 0.03 * size:
        top = q[[60, 61, 62, 63, 64]]
        strip = np.concatenate([top, top[::-1] + 0.3 * gap * ey])
        tm = np.zeros((size, size), np.uint8)
        cv2.fillPoly(tm, [np.round(strip).astype(np.int32)], 1, lineType=cv2.LINE_AA)
        ta = _feather(tm, size) * alpha
        out = out * (1 - 0.85 * ta) + np.array([225.0, 215.0, 200.0], np.float32) * 0.85 * ta
    return np.clip(out, 0, 255).astype(np.uint8)


def _paint_eyes(img: np.ndarray, q: np.ndarray, m: MotionParams, size: int) -> np.ndarray:
    """Paint closed eyes over ``q``'s eye polygons (the half-closed eyes of the warped image)."""
    if m.blink < 0.6:
        return img
    out = img.astype(np.float32)
    _, _, ey, _ = _frame(q)
    for eye in (np.arange(36, 42), np.arange(42, 48)):
        pts = q[eye]
        w = float(np.linalg.norm(pts[3] - pts[0]))
        cheek = pts[[4, 5]].mean(0) + 0.45 * w * ey  # skin just below the eye (above it may be a brow)
        x, y = int(round(cheek[0])), int(round(cheek[1]))
        r = max(1, int(0.12 * w))
        patch = img[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1].reshape(-1, 3)
        if len(patch) == 0:
            continue
        skin = np.median(patch, axis=0).astype(np.float32)
        grown = pts.mean(0) + (pts - pts.mean(0)) * np.array([1.08, 1.3])
        mask = np.zeros((size, size), np.uint8)
        cv2.fillPoly(mask, [np.round(grown).astype(np.int32)], 1, lineType=cv2.LINE_AA)
        a = _feather(mask, size) * min(1.0, (m.blink - 0.6) / 0.3)
        out = out * (1 - a) + skin * a
        lash = np.zeros((size, size), np.uint8)
        line = np.round(pts[[0, 5, 4, 3]]).astype(np.int32)  # along the lower lid, where the lid now rests
        cv2.polylines(lash, [line], False, 1, thickness=max(1, size // 160), lineType=cv2.LINE_AA)
        la = _feather(lash, size) * 0.7 * min(1.0, (m.blink - 0.6) / 0.3)
        out = out * (1 - la) + (skin * 0.35) * la
    return np.clip(out, 0, 255).astype(np.uint8)


def _tps_eval_fast(coef: np.ndarray, ctrl: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """:func:`~odecam.training.datasets.stills.tps_eval` without square roots: r^2 log r = r^2 log(r^2) / 2."""
    d2 = np.maximum((pts * pts).sum(1)[:, None] + (ctrl * ctrl).sum(1)[None] - 2.0 * pts @ ctrl.T, 0.0)
    U = 0.5 * d2 * np.log(np.maximum(d2, 1e-300))
    k = len(ctrl)
    return U @ coef[:k] + coef[k] + pts @ coef[k + 1:]


def _upsampler(n: int, size: int) -> np.ndarray:
    """(size, n) matrix of linear interpolation from ``n`` evenly spaced nodes onto ``size`` pixels
    (first and last node on the first and last pixel centre)."""
    t = np.linspace(0.0, n - 1.0, size)
    i = np.minimum(np.floor(t).astype(int), n - 2)
    f = t - i
    A = np.zeros((size, n))
    A[np.arange(size), i] = 1.0 - f
    A[np.arange(size), i + 1] = f
    return A


def _painted(q: np.ndarray, m: MotionParams, size: int, grid: int) -> np.ndarray:
    """(grid - 1, grid - 1) bool: the cells of the fold check that the painting covers (an opened
    mouth's interior, grown by half; closed eyes)."""
    cell = np.round((np.arange(grid - 1) + 0.5) * (size - 1) / (grid - 1)).astype(int)  # cell centres (pixels)
    polys = [q[60:68]] if m.mouth > 0 else []
    if m.blink >= 0.6:
        polys += [q[36:42], q[42:48]]
    if not polys:
        return np.zeros((grid - 1, grid - 1), bool)
    full = np.zeros((size, size), np.uint8)
    for poly in polys:
        c = poly.mean(0)
        cv2.fillPoly(full, [np.round(c + (poly - c) * 1.5).astype(np.int32)], 1)
    return full[np.ix_(cell, cell)].astype(bool)


def synthesize(img: np.ndarray, landmarks: np.ndarray, m: MotionParams, grid: int = FIELD_GRID
               ) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``m`` to a portrait.

    Args:
        img: (S, S, 3) uint8 RGB.
        landmarks: (68, 2) float in [-1, 1] (``align_corners=True``), all finite.

    Returns:
        ``(image, landmarks)``: the warped (S, S, 3) uint8 RGB image and its (68, 2) float32 landmarks
        in [-1, 1] (they may leave [-1, 1] when the head turns out of the frame).
    """
    out, lm, _ = synthesize_with_field(img, landmarks, m, grid)
    return out, lm


def _painted_nodes(q: np.ndarray, qw: np.ndarray, m: MotionParams, size: int, grid: int) -> np.ndarray:
    """(grid, grid) bool: the TPS nodes inside the painted regions (the inner mouth at ``q``, the eyes at
    both ``q`` and the warped ``qw``, grown by half) or within one node spacing of them."""
    polys = [q[60:68]] if m.mouth > 0 else []
    if m.blink > 0:
        polys += [q[36:42], q[42:48], qw[36:42], qw[42:48]]
    if not polys:
        return np.zeros((grid, grid), bool)
    full = np.zeros((size, size), np.uint8)
    for poly in polys:
        c = poly.mean(0)
        cv2.fillPoly(full, [np.round(c + (poly - c) * 1.5).astype(np.int32)], 1)
    step = max(1, int(math.ceil((size - 1) / (grid - 1))))
    full = cv2.dilate(full, np.ones((2 * step + 1, 2 * step + 1), np.uint8))
    node = np.round(np.arange(grid) * (size - 1) / (grid - 1)).astype(int)
    return full[np.ix_(node, node)].astype(bool)


def synthesize_with_field(img: np.ndarray, landmarks: np.ndarray, m: MotionParams, grid: int = FIELD_GRID
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`synthesize`, plus the exact backward field of the warp (training supervision).

    Returns:
        ``(image, landmarks, field)``; ``field`` is (grid, grid, 2) float32, (x, y) in [-1, 1] units,
        on the nodes ``make_coordinate_grid(grid, grid)``: ``image(p) = img(p + field(p))`` outside the
        painted regions, and NaN where the painting covers the warp (an opened mouth's interior and
        closed eyes, each grown by half): there the image is not a warp of ``img``.
    """
    size = img.shape[0]
    if img.shape[1] != size:
        raise ValueError(f"synthesize needs a square image, got {img.shape[:2]}")
    p = normalised_to_pixels(np.asarray(landmarks, np.float32), size).astype(np.float64)
    to_unit = lambda v: v * (2.0 / (size - 1)) - 1.0  # noqa: E731
    q = move_landmarks(p, m)  # where the landmarks end up (returned)
    g = np.linspace(-1.0, 1.0, grid)  # coarse nodes from border pixel centre to border pixel centre
    nodes = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    ring, fixed = _anchors(p, size)
    for shrink in (1.0, 0.6, 0.3, 0.0):  # back off if the warp folds over (never seen at 1.0 in tests)
        mm = MotionParams(m.mouth * shrink, m.blink * shrink, m.yaw * shrink, m.pitch * shrink, m.roll * shrink, m.teeth)
        qe = _expression(p, mm, lid_warp=0.5)
        qw = _pose(qe, p, mm)  # where the warp moves them
        below = np.clip((ring - p[:17].mean(0)) @ _frame(p)[2], 0, None)  # ring points under the face...
        follow = (below / max(below.max(initial=0.0), 1e-9))[:, None] * 0.7 * (qe[8] - p[8])[None]  # ...follow the chin
        ctrl_out = np.concatenate([qw, _pose(ring + follow, p, mm), fixed])
        ctrl_in = np.concatenate([p, ring, fixed])
        coef = tps_solve(to_unit(ctrl_out), to_unit(ctrl_in))
        src = _tps_eval_fast(coef, to_unit(ctrl_out), nodes).reshape(grid, grid, 2)
        jx, jy = np.diff(src, axis=1)[:-1], np.diff(src, axis=0)[:, :-1]
        det = jx[..., 0] * jy[..., 1] - jx[..., 1] * jy[..., 0]
        if det[~_painted(qw, mm, size, grid)].min() > 0:  # a painted-over mouth may fold: it is covered
            break
    if shrink != 1.0:
        m = mm
        q = move_landmarks(p, m)
        qw = _pose(_expression(p, m, lid_warp=0.5), p, m)
    field = (src - nodes.reshape(grid, grid, 2)).astype(np.float32)
    field[_painted_nodes(q, qw, m, size, grid)] = np.nan
    A = _upsampler(grid, size)  # (size, grid): linear interpolation, exact at the nodes and borders
    src = np.stack([A @ src[..., c] @ A.T for c in range(2)], -1).astype(np.float32)  # two small matmuls
    mx = np.ascontiguousarray((src[..., 0] + 1) * 0.5 * (size - 1))
    my = np.ascontiguousarray((src[..., 1] + 1) * 0.5 * (size - 1))
    out = cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    if m.mouth > 0:
        out = _paint_mouth(out, q, m, size)
    out = _paint_eyes(out, qw, m, size)
    return out, to_unit(q).astype(np.float32), field

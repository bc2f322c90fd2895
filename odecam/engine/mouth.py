"""Mouth retargeting: an avatar photographed with its teeth showing opens onto a mouth cavity, not stretched teeth.

When the driver opens wide, the motion field pulls the avatar's lips apart and fills the gap by stretching what
was between them: in a smiling photo, the teeth (issue 9's "stretched blob"). Beside the motion, as for blinks
(:mod:`odecam.engine.blink`):

1. once per avatar, :func:`open_mouth_views` finds the teeth between F_K's mouth keypoints (corners and inner
   lips; the mouth's axis from the eye line of dlib's 5 points, which F_K's corners on a still tilt; bright pixels
   clearly less saturated than the face around the mouth, in patches holding pixels much less saturated still,
   so pale lips and their highlights do not count; each column's teeth end at the first gap under them, so a lip
   highlight below does not either) and paints a dark cavity under a smooth line across them,
   keeping the upper teeth that an open mouth shows (less of them towards the corners, where the field stretches
   them most); :func:`open_mouth_state` caches F_S and F_C's view images of
   that picture with the avatar's own keypoints (same motion). A photo with closed lips has no teeth to paint,
   and a grey photo no colour to find them by: nothing changes for them.
2. per frame, :class:`MouthOpening` reads how far the transferred keypoints open the avatar's inner lips beyond
   its own gap, in mouth widths: amount m = 0 up to :data:`OPEN_FROM`, 1 from :data:`OPEN_TO`;
3. the backend renders from base + m (open-mouth - base) (``Backend.blend_views``), so the field stretches a
   dark cavity under the upper teeth instead of the teeth.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from odecam.checkpoint import role_indices

#: the roles of F_K's keypoints that place the mouth: its corners and the inner lips
MOUTH_ROLES = ("mouth_corner_right", "mouth_corner_left", "inner_upper_lip", "inner_lower_lip")
#: the avatar's inner-lip gap beyond its own, in mouth widths, where the amount starts rising and where it is 1
OPEN_FROM, OPEN_TO = 0.08, 0.2
#: m is rounded to steps of 1 / STEPS (a backend re-blends only when it changes)
STEPS = 8
#: teeth: brighter than this (HSV value, 0-255) and less saturated than that and than TEETH_SKIN x the median
#: saturation of the skin and lips around the mouth (a pale face's lips pass the fixed bound, not this one); at
#: least this share of the image
TEETH_VALUE, TEETH_SATURATION, TEETH_SKIN, TEETH_MIN_SHARE = 140, 90, 0.75, 0.0015
#: a patch of such pixels is teeth only when it holds this many pixels per squared mouth width (its "seeds") less
#: saturated than TEETH_SEED x the median saturation of the skin and lips around the mouth: pale lips and their
#: highlights pass the first test, not this one
TEETH_SEED, TEETH_SEED_SHARE = 0.55, 0.01
#: a face less saturated than this around its mouth (a grey photo) has no colour to tell its teeth by
MIN_SKIN_SATURATION = 25
#: the upper share of each column of teeth stays: an open mouth shows its upper teeth. The share falls off towards the
#: mouth's corners, to UPPER_TEETH_CORNER x UPPER_TEETH there (quadratically in the distance from the centre): the
#: field stretches the corners' columns most, and a tooth kept whole there became a fang
UPPER_TEETH = 0.45
UPPER_TEETH_CORNER = 0.0
#: a column's teeth end where a gap of more than this many rows opens under them (what lies below is the lower lip
#: and its highlight, which can pass the teeth test when F_K's inner lips sit low; on the built-in astronaut cut at
#: 31 squares of 150-230 px, the cavity outside dlib's inner lips fell from mean 0.056, max 0.355 to 0.004, 0.016)
RUN_GAP = 1
#: the painted cavity's colour (RGB)
CAVITY = (80, 40, 42)
#: the teeth's top and bottom edges are each one parabola across the mouth (fitted again without the columns this
#: many pixels off the first fit) before the cavity is cut under them: a smooth line, not a tooth-by-tooth saw edge
EDGE_TOLERANCE = 1.5


def mouth_indices(roles: tuple[str, ...]) -> tuple[int, int, int, int] | None:
    """Indices of :data:`MOUTH_ROLES` among a model's keypoint roles, or None."""
    return role_indices(roles, MOUTH_ROLES)


def teeth_mask(image: np.ndarray, points: np.ndarray, axis: np.ndarray | None = None) -> np.ndarray:
    """(S, S, 3) uint8 RGB and the mouth's (4, 2) pixel points (right corner, left corner, inner upper lip, inner
    lower lip) -> (S, S) bool: the bright pixels clearly less saturated than the face around the mouth
    (:data:`TEETH_SKIN`) inside the mouth's ellipse (as wide as the corners, centred between the inner lips,
    reaching a little past them), in the patches that hold enough much less saturated pixels
    (:data:`TEETH_SEED`): teeth, not pale lips. ``axis``: the mouth's direction (2,) (the eye line; default: the
    corners' line, which F_K tilts on some stills). Empty for a grey photo."""
    h, w = image.shape[:2]
    cr, cl, up, lo = (np.asarray(p, np.float64) for p in points)
    u = cl - cr if axis is None else np.asarray(axis, np.float64)
    u = u / max(float(np.linalg.norm(u)), 1e-9)
    width = abs(float((cl - cr) @ u))
    if width < 4.0:
        return np.zeros((h, w), bool)
    n = np.array([-u[1], u[0]])
    if n[1] < 0:
        n = -n  # down the face
    centre = 0.5 * (cr + cl)
    centre = centre + ((0.5 * (up + lo) - centre) @ n) * n  # level with the inner lips
    a = 0.5 * width
    b_up = max(-(up - centre) @ n, 0.0) + 0.08 * width
    b_lo = max((lo - centre) @ n, 0.0) + 0.08 * width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    s = (xx - centre[0]) * u[0] + (yy - centre[1]) * u[1]
    t = (xx - centre[0]) * n[0] + (yy - centre[1]) * n[1]
    r = (s / a) ** 2 + (t / np.where(t < 0, b_up, b_lo)) ** 2
    around = (np.abs(s) < 0.9 * width) & (np.abs(t) < 0.45 * width) & (r > 1.3)  # skin and lips, not the mouth
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    skin = float(np.median(hsv[..., 1][around])) if around.any() else 0.0
    if skin < MIN_SKIN_SATURATION:
        return np.zeros((h, w), bool)
    bright = (r <= 1.0) & (hsv[..., 2] > TEETH_VALUE) & (hsv[..., 1] < min(TEETH_SATURATION, TEETH_SKIN * skin))
    seeds = bright & (hsv[..., 1] < TEETH_SEED * skin)
    count, labels = cv2.connectedComponents(bright.astype(np.uint8), connectivity=8)
    keep = np.bincount(labels[seeds], minlength=count) >= TEETH_SEED_SHARE * width * width
    keep[0] = False  # the background label
    return keep[labels]


def _smooth_edge(span: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A parabola through ``values`` (C,) over columns ``span`` (C,), fitted by least squares twice, the second time
    without the points more than :data:`EDGE_TOLERANCE` pixels off the first: a mouth's edge is one smooth curve,
    and a lip's highlight touching the teeth, or a gap between two teeth, is not part of it."""
    x = (span - span.mean()) / max(float(np.ptp(span)), 1.0)
    degree = min(2, len(span) - 1)
    coef = np.polyfit(x, values, degree)
    near = np.abs(np.polyval(coef, x) - values) <= EDGE_TOLERANCE
    if near.sum() > degree + 2:
        coef = np.polyfit(x[near], values[near], degree)
    return np.polyval(coef, x)


def _first_run_end(teeth: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Per column of ``teeth`` (H, W) bool, the last row of its first run of teeth pixels from the top, runs
    :data:`RUN_GAP` rows apart or less counted as one: the teeth's bottom, not a pale highlight on the lower lip
    below them (the lip's own rows lie between)."""
    out = np.empty(len(columns), np.float64)
    for i, c in enumerate(columns):
        rows = np.nonzero(teeth[:, c])[0]
        breaks = np.nonzero(np.diff(rows) > RUN_GAP + 1)[0]
        out[i] = rows[breaks[0]] if len(breaks) else rows[-1]
    return out


def open_mouth_image(image: np.ndarray, points: np.ndarray, axis: np.ndarray | None = None) -> np.ndarray | None:
    """The photo with the lower part of its teeth painted as a mouth cavity (see the module docstring), or None
    when fewer than :data:`TEETH_MIN_SHARE` of its pixels are teeth (lips closed). ``axis``: as :func:`teeth_mask`.

    Per column of the teeth's span, their top row and the bottom of their first run from the top (gaps between
    teeth filled in; :func:`_first_run_end`), smoothed across columns (:func:`_smooth_edge`); the cavity fills each
    column from ``UPPER_TEETH`` of the way down (tapering to ``UPPER_TEETH_CORNER`` at the corners) to the bottom
    line."""
    teeth = teeth_mask(image, points, axis)
    if teeth.mean() < TEETH_MIN_SHARE:
        return None
    columns = np.nonzero(teeth.any(0))[0]
    first, last = int(columns.min()), int(columns.max())
    span = np.arange(first, last + 1)
    top = np.interp(span, columns, teeth[:, columns].argmax(0))
    bottom = np.interp(span, columns, _first_run_end(teeth, columns))
    cr, cl = np.asarray(points[0], np.float64), np.asarray(points[1], np.float64)
    centre_x, half = 0.5 * (cr[0] + cl[0]), max(0.5 * abs(cl[0] - cr[0]), 1.0)
    top, bottom = _smooth_edge(span, top), _smooth_edge(span, bottom)
    x = np.minimum(1.0, np.abs(span - centre_x) / half)  # 0 at the mouth's centre, 1 at its corners
    keep = UPPER_TEETH * (1.0 - (1.0 - UPPER_TEETH_CORNER) * x * x)
    cut = top + keep * (bottom - top + 1)
    rows = np.arange(teeth.shape[0])[:, None]
    lower = np.zeros(teeth.shape, np.uint8)
    lower[:, first:last + 1] = (rows >= cut) & (rows <= bottom)
    mask = cv2.dilate(lower, np.ones((3, 3), np.uint8)).astype(np.float32)
    mask = cv2.GaussianBlur(mask, (0, 0), 1.0)[..., None]
    out = image.astype(np.float32) * (1.0 - mask) + np.float32(CAVITY) * mask
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def mouth_axis(image: np.ndarray) -> np.ndarray | None:
    """The direction (2,) of the eye line of the largest face in ``image`` (S, S, 3) uint8 RGB (dlib's 5 points),
    from the eye on the left of the screen to the other: the mouth's axis on a frontal face. None when no face (or
    no predictor) is found."""
    from odecam.realtime.face_detection import detect_faces, eye_corners

    faces = detect_faces(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), detect_height=max(320, image.shape[0]))
    corners = eye_corners(image, faces[0]) if faces else None
    if corners is None:
        return None
    d = corners[1].mean(0) - corners[0].mean(0)
    norm = float(np.linalg.norm(d))
    return d / norm if norm > 1.0 else None


def open_mouth_views(views: torch.Tensor, kp: torch.Tensor, indices: tuple[int, int, int, int]
                     ) -> torch.Tensor | None:
    """The avatar's views (V, 3, S, S) in [0, 1] with their lower teeth painted as a cavity, placed by F_K's
    keypoints ``kp`` (V, K, 2) along each view's eye line (:func:`mouth_axis`); None when the source view shows no
    teeth. A reference view without teeth is kept."""
    from odecam.engine.blink import repainted_views

    size = views.shape[-1]
    points = (kp[:, list(indices)].detach().cpu().double().numpy() + 1.0) * 0.5 * (size - 1)  # (V, 4, 2) pixels
    return repainted_views(views, lambda rgb, j: open_mouth_image(rgb, points[j], mouth_axis(rgb)))


@torch.no_grad()
def open_mouth_state(model, state: dict[str, torch.Tensor], views: torch.Tensor) -> dict[str, torch.Tensor] | None:
    """The avatar state of the open-mouth views with the avatar's own keypoints, or None (no teeth, or a model
    whose keypoints do not name the mouth). ``views`` (1, V, 3, S, S) as the Avatar holds them."""
    indices = mouth_indices(tuple(getattr(model, "keypoint_roles", ())))
    if indices is None:
        return None
    from odecam.engine.blink import repainted_state

    painted = open_mouth_views(views[0], state["kp"], indices)
    return None if painted is None else repainted_state(model, state, painted.to(views))


class MouthOpening:
    """Transferred keypoints (1, K, 2) -> mouth amount m in [0, 1]: the avatar's inner-lip gap beyond its own
    (``kp_source`` (1, K, 2)), over its mouth width, mapped from [OPEN_FROM, OPEN_TO] to [0, 1]."""

    def __init__(self, indices: tuple[int, int, int, int], kp_source: torch.Tensor) -> None:
        self.indices = indices
        k = kp_source.detach().cpu().numpy()[0]
        cr, cl, up, lo = indices
        self.width = max(float(np.linalg.norm(k[cl] - k[cr])), 1e-6)
        self.gap = float(np.linalg.norm(k[lo] - k[up]))

    def __call__(self, kp: torch.Tensor) -> float:
        k = kp.detach().cpu().numpy()[0]
        _, _, up, lo = self.indices
        d = (float(np.hypot(*(k[lo] - k[up]))) - self.gap) / self.width
        if not np.isfinite(d):
            return 0.0
        m = (d - OPEN_FROM) / (OPEN_TO - OPEN_FROM)
        return round(min(1.0, max(0.0, m)) * STEPS) / STEPS

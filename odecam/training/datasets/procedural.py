"""Procedural talking objects: unlimited, offline, seeded cartoon talking heads drawn with OpenCV.

:class:`ProceduralTalkingObjects`: head pose with real (orthographic, ellipsoidal) yaw and pitch,
roll, scale, translation, blinking eyes with gaze, eyebrows, a talking mouth with teeth, nose, hair,
ears, neck and shoulders, Lambert shading with a moving light, textured skin, clothes and
backgrounds. Item format: :mod:`odecam.training.datasets.common` (dlib landmarks NaN; the optional
``kp_*`` keys carry the renderer's own 7 ground-truth points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from odecam.training.datasets.common import DatasetError, Item, _make_item

__all__ = ["ProceduralTalkingObjects"]


def _smooth_signal(rng: np.random.Generator, amp: float, fmin: float, fmax: float, n: int = 3):
    """A random smooth scalar function of time: sum of ``n`` sinusoids, amplitude about ``amp``."""
    f = rng.uniform(fmin, fmax, n)
    ph = rng.uniform(0, 2 * np.pi, n)
    a = rng.uniform(0.3, 1.0, n)
    a = a / a.sum() * amp

    def fn(t: float) -> float:
        return float(np.sum(a * np.sin(2 * np.pi * f * t + ph)))

    return fn


def _value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth value noise in [-1, 1], (size, size) float32."""
    g = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    return cv2.resize(g, (size, size), interpolation=cv2.INTER_CUBIC)


def _texture(rng: np.random.Generator, size: int, kind: str, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """A (size, size, 3) float32 texture in [0, 1] mixing colours c1 and c2."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == "gradient":
        ang = rng.uniform(0, 2 * np.pi)
        m = (np.cos(ang) * (xx - 0.5) + np.sin(ang) * (yy - 0.5)) + 0.5
        if rng.random() < 0.5:  # radial vignette
            m = np.sqrt((xx - rng.uniform(0.2, 0.8)) ** 2 + (yy - rng.uniform(0.2, 0.8)) ** 2) * 1.4
    elif kind == "stripes":
        ang = rng.uniform(0, np.pi)
        freq = rng.uniform(4, 16)
        m = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (np.cos(ang) * xx + np.sin(ang) * yy))
        if rng.random() < 0.5:
            m = (m > 0.5).astype(np.float32) * 0.8 + m * 0.2
    elif kind == "checker":
        n = rng.integers(3, 10)
        m = ((np.floor(xx * n) + np.floor(yy * n)) % 2).astype(np.float32)
        m = cv2.GaussianBlur(m, (0, 0), size / 256)
    elif kind == "noise":
        m = 0.5 + 0.35 * _value_noise(rng, size, int(rng.integers(4, 12))) + 0.15 * _value_noise(rng, size, 40)
    elif kind == "blobs":
        m = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(4, 12))):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.25)
            m += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        m = np.clip(m, 0, 1)
    else:  # solid
        m = np.full((size, size), rng.uniform(0, 0.3), np.float32)
    m = np.clip(m, 0, 1)[..., None]
    tex = c1[None, None] * (1 - m) + c2[None, None] * m
    tex = tex + 0.03 * _value_noise(rng, size, 64)[..., None]  # fine grain
    return np.clip(tex, 0, 1).astype(np.float32)


_SKIN_TONES = np.array(
    [[0.98, 0.85, 0.75], [0.93, 0.76, 0.62], [0.85, 0.65, 0.50], [0.72, 0.52, 0.38],
     [0.55, 0.38, 0.27], [0.40, 0.27, 0.19], [0.95, 0.80, 0.70], [0.80, 0.60, 0.45]], np.float32)
_HAIR = np.array(
    [[0.08, 0.06, 0.05], [0.25, 0.15, 0.08], [0.45, 0.30, 0.15], [0.75, 0.60, 0.35],
     [0.55, 0.20, 0.08], [0.6, 0.6, 0.6], [0.15, 0.12, 0.20]], np.float32)
_IRIS = np.array([[0.30, 0.18, 0.08], [0.20, 0.35, 0.60], [0.25, 0.45, 0.25], [0.45, 0.35, 0.20],
                  [0.15, 0.10, 0.06]], np.float32)


class _Canvas:
    """Supersampled float RGB canvas with alpha-blended, ROI-limited polygon drawing."""

    SHIFT = 4  # sub-pixel bits for cv2.fillPoly

    def __init__(self, img: np.ndarray) -> None:
        self.img = img  # (H, W, 3) float32
        self.h, self.w = img.shape[:2]

    def _mask(self, polys: Sequence[np.ndarray], thickness: int = 0, closed: bool = True):
        pts = np.concatenate([p.reshape(-1, 2) for p in polys])
        if not np.all(np.isfinite(pts)):
            return None
        pad = 2 + thickness
        x0 = int(max(0, np.floor(pts[:, 0].min()) - pad))
        y0 = int(max(0, np.floor(pts[:, 1].min()) - pad))
        x1 = int(min(self.w, np.ceil(pts[:, 0].max()) + pad + 1))
        y1 = int(min(self.h, np.ceil(pts[:, 1].max()) + pad + 1))
        if x1 <= x0 or y1 <= y0:
            return None
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        s = 1 << self.SHIFT
        ip = [np.round((p.reshape(-1, 2) - [x0, y0]) * s).astype(np.int32) for p in polys]
        if thickness > 0:
            cv2.polylines(m, ip, closed, 255, thickness, cv2.LINE_AA, self.SHIFT)
        else:
            cv2.fillPoly(m, ip, 255, cv2.LINE_AA, self.SHIFT)
        return m.astype(np.float32) / 255.0, (y0, y1, x0, x1)

    def fill(self, polys, color, alpha: float = 1.0, clip: np.ndarray | None = None) -> None:
        r = self._mask(polys if isinstance(polys, (list, tuple)) else [polys])
        if r is not None:
            self._blend(r, color, alpha, clip)

    def line(self, pts, color, thickness: float, alpha: float = 1.0, closed: bool = False, clip=None) -> None:
        r = self._mask([pts], thickness=max(1, int(round(thickness))), closed=closed)
        if r is not None:
            self._blend(r, color, alpha, clip)

    def _blend(self, r, color, alpha, clip) -> None:
        m, (y0, y1, x0, x1) = r
        m = m * alpha
        if clip is not None:
            m = m * clip[y0:y1, x0:x1]
        roi = self.img[y0:y1, x0:x1]
        c = np.asarray(color, np.float32)
        if c.ndim == 3:  # a full-canvas colour image
            c = c[y0:y1, x0:x1]
        roi += (c - roi) * m[..., None]

    def mask_of(self, polys) -> np.ndarray:
        """Full-canvas (H, W) float mask of filled polygons."""
        full = np.zeros((self.h, self.w), np.float32)
        r = self._mask(polys if isinstance(polys, (list, tuple)) else [polys])
        if r is not None:
            m, (y0, y1, x0, x1) = r
            full[y0:y1, x0:x1] = m
        return full


@dataclass
class _Pose:
    """Head pose at one instant (image units: fraction of the canvas; angles in radians)."""

    cx: float
    cy: float
    scale: float  # pixels per canonical unit
    roll: float
    yaw: float
    pitch: float


class _TalkingObject:
    """One seeded identity + motion (a 'video'); ``render(t)`` draws the frame at time t (s)."""

    def __init__(self, rng: np.random.Generator, size: int, face_prob: float) -> None:
        self.size = size
        self.is_face = bool(rng.random() < face_prob)
        # --- identity ---
        tone = _SKIN_TONES[rng.integers(len(_SKIN_TONES))]
        self.skin = np.clip(tone * rng.uniform(0.92, 1.08, 3), 0, 1)
        if not self.is_face or rng.random() < 0.08:  # fantasy colours now and then
            self.skin = rng.uniform(0.2, 0.95, 3).astype(np.float32)
        self.hair = _HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.8, 1.2)
        self.hair_style = int(rng.integers(0, 4))  # 0 bald, 1 short, 2 long, 3 fringe
        self.iris = _IRIS[rng.integers(len(_IRIS))]
        self.lip = np.clip(self.skin * np.array([0.95, 0.6, 0.6]) + rng.uniform(-0.05, 0.1), 0, 1)
        self.cloth = rng.uniform(0.05, 0.95, 3).astype(np.float32)
        self.head_h = rng.uniform(1.2, 1.42)  # vertical semi-axis (horizontal = 1)
        self.chin = rng.uniform(0.05, 0.25)  # jaw taper
        self.eye_x = rng.uniform(0.33, 0.43)
        self.eye_y = rng.uniform(-0.14, 0.0)
        self.eye_w = rng.uniform(0.13, 0.19)
        self.eye_h = rng.uniform(0.06, 0.095)
        self.iris_r = rng.uniform(0.055, 0.075)
        self.brow_th = rng.uniform(0.03, 0.06)
        self.brow_arch = rng.uniform(0.0, 0.06)
        self.nose_len = rng.uniform(0.24, 0.34)
        self.mouth_y = self.eye_y + 0.05 + self.nose_len + rng.uniform(0.17, 0.25)
        self.mouth_w = rng.uniform(0.24, 0.34)
        self.lip_th = rng.uniform(0.03, 0.055)
        self.fringe_side = float(rng.choice([-1.0, 1.0]))
        self.hairline = rng.uniform(0.45, 0.7)
        self.glasses = bool(self.is_face and rng.random() < 0.12)
        # --- scene ---
        kinds = ["gradient", "stripes", "checker", "noise", "blobs", "solid"]
        bg1, bg2 = rng.uniform(0, 1, 3).astype(np.float32), rng.uniform(0, 1, 3).astype(np.float32)
        self.background = _texture(rng, size, kinds[rng.integers(len(kinds))], bg1, bg2)
        tex_kind = ["noise", "stripes", "checker", "blobs"][rng.integers(4)]
        self.cloth_tex = _texture(rng, size, tex_kind, self.cloth, np.clip(self.cloth * rng.uniform(0.4, 1.4, 3), 0, 1))
        skin_tex = 0.6 * _value_noise(rng, 128, 10) + 0.4 * _value_noise(rng, 128, 48)
        self.skin_tex = skin_tex * rng.uniform(0.03, 0.09)
        if not self.is_face:
            t = _texture(rng, 128, ["stripes", "checker", "blobs", "noise"][rng.integers(4)],
                         np.zeros(3, np.float32), np.ones(3, np.float32))
            self.skin_tex = (t.mean(-1) - 0.5) * rng.uniform(0.3, 0.7)
            self.blob_r = rng.uniform(0.1, 0.35, 4)  # radial harmonics of the body outline
            self.blob_ph = rng.uniform(0, 2 * np.pi, 4)
            self.parts = [
                (rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), rng.uniform(0.12, 0.3),
                 rng.uniform(0.08, 0.2), rng.uniform(0, 1, 3).astype(np.float32),
                 _smooth_signal(rng, rng.uniform(0.2, 0.8), 0.2, 1.2), _smooth_signal(rng, 0.12, 0.2, 1.0))
                for _ in range(int(rng.integers(2, 5)))
            ]
        # --- motion (functions of t in seconds) ---
        self.f_tx = _smooth_signal(rng, rng.uniform(0.02, 0.09), 0.05, 0.4)
        self.f_ty = _smooth_signal(rng, rng.uniform(0.02, 0.06), 0.05, 0.4)
        self.base_scale = rng.uniform(0.85, 1.15)
        self.f_scale = _smooth_signal(rng, rng.uniform(0.02, 0.12), 0.05, 0.3)
        self.f_roll = _smooth_signal(rng, np.deg2rad(rng.uniform(3, 18)), 0.05, 0.5)
        self.f_yaw = _smooth_signal(rng, np.deg2rad(rng.uniform(5, 35)), 0.05, 0.4)
        self.f_pitch = _smooth_signal(rng, np.deg2rad(rng.uniform(3, 15)), 0.05, 0.4)
        self.f_mouth = _smooth_signal(rng, 1.0, 1.5, 5.0, n=4)
        self.talk = rng.uniform(0.3, 1.0)
        self.f_smile = _smooth_signal(rng, rng.uniform(0.2, 0.6), 0.05, 0.3)
        self.smile0 = rng.uniform(-0.2, 0.5)
        self.f_gx = _smooth_signal(rng, 0.8, 0.1, 0.8)
        self.f_gy = _smooth_signal(rng, 0.6, 0.1, 0.8)
        self.f_brow = _smooth_signal(rng, 1.0, 0.1, 0.7)
        self.blinks = np.cumsum(rng.uniform(1.5, 5.0, 16)) - rng.uniform(0, 3)
        self.blink_len = rng.uniform(0.12, 0.25)
        self.light0 = rng.uniform(-0.7, 0.7, 2)
        self.f_lx = _smooth_signal(rng, 0.3, 0.02, 0.15)
        self.f_ly = _smooth_signal(rng, 0.2, 0.02, 0.15)
        self.ambient = rng.uniform(0.45, 0.7)

    # -- pose & projection ---------------------------------------------------------------------
    def pose(self, t: float, ss: int) -> _Pose:
        S = self.size * ss
        return _Pose(
            cx=(0.5 + self.f_tx(t)) * S,
            cy=(0.48 + self.f_ty(t)) * S,
            scale=S * 0.25 * self.base_scale * (1 + self.f_scale(t)),
            roll=self.f_roll(t),
            yaw=self.f_yaw(t),
            pitch=self.f_pitch(t),
        )

    def project(self, pose: _Pose, uv: np.ndarray, dz: float | np.ndarray = 0.0) -> np.ndarray:
        """Canonical face points (M, 2) on the head ellipsoid (+ ``dz`` protrusion) -> image (M, 2).

        The head is the ellipsoid (1, head_h, 0.95); yaw/pitch rotate it (orthographic camera),
        roll/scale/translation act in the image plane.
        """
        uv = np.asarray(uv, np.float64).reshape(-1, 2)
        u, v = uv[:, 0], uv[:, 1]
        d = 0.95
        z = d * np.sqrt(np.clip(1 - u**2 - (v / self.head_h) ** 2, 0.02, 1)) + dz
        cy, sy = math.cos(pose.yaw), math.sin(pose.yaw)
        u2 = u * cy + z * sy
        z2 = -u * sy + z * cy
        cp, sp = math.cos(pose.pitch), math.sin(pose.pitch)
        v2 = v * cp - z2 * sp
        cr, sr = math.cos(pose.roll), math.sin(pose.roll)
        x = pose.cx + pose.scale * (u2 * cr - v2 * sr)
        y = pose.cy + pose.scale * (u2 * sr + v2 * cr)
        return np.stack([x, y], -1)

    def _to_local(self, pose: _Pose, roi: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Head-plane coordinates (roll, scale, translation undone) of the pixels of ``roi``.

        ``roi = (y0, y1, x0, x1)``; returns two (y1 - y0, x1 - x0) float32 arrays.
        """
        y0, y1, x0, x1 = roi
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dx, dy = (xx - pose.cx) / pose.scale, (yy - pose.cy) / pose.scale
        cr, sr = math.cos(pose.roll), math.sin(pose.roll)
        return dx * cr + dy * sr, -dx * sr + dy * cr

    # -- rendering ------------------------------------------------------------------------------
    def render(self, t: float, ss: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """Frame at time ``t`` -> ((size, size, 3) float32 in [0, 1], keypoints (K, 2) in pixels)."""
        S = self.size * ss
        bg = self.background if ss == 1 else cv2.resize(self.background, (S, S), interpolation=cv2.INTER_LINEAR)
        cv_ = _Canvas(bg.copy())
        pose = self.pose(t, ss)
        if self.is_face:
            kp = self._render_face(cv_, pose, t, S)
        else:
            kp = self._render_shape(cv_, pose, t, S)
        img = cv2.resize(cv_.img, (self.size, self.size), interpolation=cv2.INTER_AREA) if ss > 1 else cv_.img
        kp = (kp - (ss - 1) / 2.0) / ss
        return np.clip(img, 0, 1), kp.astype(np.float32)

    def _shade(self, cv_: _Canvas, pose: _Pose, t: float, mask: np.ndarray, ax: float, ay: float,
               tex: np.ndarray) -> None:
        """Lambert shading of an ellipsoid-like region + a texture that moves with the object."""
        x, y, w, h = cv2.boundingRect((mask > 0).astype(np.uint8))
        if w == 0 or h == 0:
            return
        roi = (y, y + h, x, x + w)
        m = mask[y : y + h, x : x + w, None]
        lx, ly = self.light0[0] + self.f_lx(t), self.light0[1] + self.f_ly(t)
        L = np.array([lx, ly, 1.0], np.float32)
        L /= np.linalg.norm(L)
        xl, yl = self._to_local(pose, roi)
        nx, ny = xl / ax, yl / ay
        nz = np.sqrt(np.clip(1 - nx**2 - ny**2, 0, 1))
        lam = np.clip(nx * L[0] + ny * L[1] + nz * L[2], 0, 1)
        shade = self.ambient + (1 - self.ambient) * 1.15 * lam
        spec = 0.25 * lam**24
        # texture in head coordinates (yaw approximated by a shift), sampled with cv2.remap
        th, tw = tex.shape
        mx = (((xl - 0.6 * math.sin(pose.yaw)) / 1.4 + 1) * 0.5 * (tw - 1)).astype(np.float32)
        my = ((yl / 1.8 + 1) * 0.5 * (th - 1)).astype(np.float32)
        tx = cv2.remap(tex.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        f = (shade * (1 + tx))[..., None]
        roi_img = cv_.img[y : y + h, x : x + w]
        roi_img += (roi_img * (f - 1) + spec[..., None]) * m

    def _render_face(self, cv_: _Canvas, pose: _Pose, t: float, S: int) -> np.ndarray:
        sc = pose.scale
        P = lambda uv, dz=0.0: self.project(pose, np.asarray(uv), dz)  # noqa: E731
        cr, sr = math.cos(pose.roll), math.sin(pose.roll)

        def plane(pts: np.ndarray) -> np.ndarray:  # head-plane (no yaw) -> image
            pts = np.asarray(pts, np.float64).reshape(-1, 2)
            return np.stack([pose.cx + sc * (pts[:, 0] * cr - pts[:, 1] * sr),
                             pose.cy + sc * (pts[:, 0] * sr + pts[:, 1] * cr)], -1)

        a = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        # silhouette extents of the rotated ellipsoid
        ax = math.sqrt(math.cos(pose.yaw) ** 2 + (0.95 * math.sin(pose.yaw)) ** 2)
        ay = math.sqrt((self.head_h * math.cos(pose.pitch)) ** 2 + (0.95 * math.sin(pose.pitch)) ** 2)
        sx = np.cos(a) * (1 - self.chin * np.clip(np.sin(a), 0, 1) ** 2)
        head = plane(np.stack([ax * sx, ay * np.sin(a)], -1))

        # shoulders and neck (translate with the head, roll a little)
        body_dx = pose.cx - 0.5 * S
        sh = np.array([[-2.8, 4.0], [-2.6, 2.2], [-1.2, 1.75], [1.2, 1.75], [2.6, 2.2], [2.8, 4.0]])
        shoulders = np.stack([pose.cx - body_dx * 0.5 + sh[:, 0] * sc, pose.cy + sh[:, 1] * sc], -1)
        cv_.fill(shoulders, self.cloth_tex if self.cloth_tex.shape[0] == S else cv2.resize(self.cloth_tex, (S, S)))
        neck = np.array([[-0.42, 0.6], [0.42, 0.6], [0.5, 1.9], [-0.5, 1.9]])
        neck_img = np.stack([pose.cx - body_dx * 0.2 + neck[:, 0] * sc + 0.15 * sc * math.sin(pose.roll) * (neck[:, 1] < 1),
                             pose.cy + neck[:, 1] * sc], -1)
        cv_.fill(neck_img, self.skin * 0.8)
        # back hair
        if self.hair_style in (1, 2, 3):
            back = plane(np.stack([1.1 * ax * np.cos(a), -0.15 + 1.05 * ay * np.sin(a)], -1))
            cv_.fill(back, self.hair)
            if self.hair_style == 2:
                long_hair = plane(np.array([[-1.15, -0.2], [1.15, -0.2], [1.25, 1.7], [-1.25, 1.7]]))
                cv_.fill(long_hair, self.hair * 0.9)
        # ears (on the rim, hidden behind the head when turned away)
        for side in (-1, 1):
            e = P(np.array([[side * 0.99, self.eye_y + 0.1]]))[0]
            ear = e + sc * np.stack([0.14 * np.cos(a), 0.24 * np.sin(a)], -1) @ np.array([[cr, sr], [-sr, cr]])
            vis = side * math.sin(pose.yaw) < 0.35
            if vis:
                cv_.fill(ear, self.skin * 0.85)
        # head + shading + skin texture
        head_mask = cv_.mask_of(head)
        cv_.fill(head, self.skin)
        # fringe / hair cap on the head
        if self.hair_style in (1, 2, 3):
            xs = np.linspace(-1.05, 1.05, 40)
            hl = -self.head_h * self.hairline + 0.06 * np.sin(xs * 5 + 1.3)
            if self.hair_style == 3:
                hl = hl + 0.3 * np.clip(0.5 + 0.5 * self.fringe_side * xs, 0, 1) ** 1.5
            cap = np.concatenate([np.stack([xs * ax, hl], -1), np.stack([xs[::-1] * ax * 1.02, np.full(40, -ay * 1.1)], -1)])
            cap_img = plane(cap) + np.array([sc * 0.3 * math.sin(pose.yaw) * cr, sc * 0.3 * math.sin(pose.yaw) * sr])
            cv_.fill(cap_img, self.hair, clip=head_mask)
        # eyes
        open_ = 1.0
        for tb in self.blinks:
            d = abs(t - tb)
            if d < self.blink_len:
                open_ = min(open_, d / self.blink_len)
        gx, gy = np.clip(self.f_gx(t), -1, 1), np.clip(self.f_gy(t), -1, 1)
        brow = self.f_brow(t)
        kps: list[np.ndarray] = []
        for side in (-1, 1):
            ex, ey, ew, eh = side * self.eye_x, self.eye_y, self.eye_w, self.eye_h
            # socket shadow
            sock = P(np.stack([ex + 1.3 * ew * np.cos(a), ey - 0.01 + 1.9 * eh * np.sin(a)], -1))
            cv_.fill(sock, self.skin * 0.75, alpha=0.35)
            top = np.where(np.sin(a) < 0, 1.0, 0.75)
            eye_uv = np.stack([ex + ew * np.cos(a), ey + eh * max(open_, 0.04) * top * np.sin(a)], -1)
            eye = P(eye_uv)
            eye_mask = cv_.mask_of(eye)
            cv_.fill(eye, np.array([0.95, 0.93, 0.9]) * (0.85 + 0.15 * self.ambient))
            ic = np.array([[ex + gx * ew * 0.45, ey + gy * eh * 0.35]])
            iris = P(ic + self.iris_r * np.stack([np.cos(a), np.sin(a)], -1))
            cv_.fill(iris, self.iris, clip=eye_mask)
            pupil = P(ic + 0.45 * self.iris_r * np.stack([np.cos(a), np.sin(a)], -1))
            cv_.fill(pupil, np.array([0.02, 0.02, 0.02]), clip=eye_mask)
            glint = P(ic + np.array([[0.3, -0.35]]) * self.iris_r + 0.15 * self.iris_r * np.stack([np.cos(a), np.sin(a)], -1))
            cv_.fill(glint, np.array([1.0, 1.0, 1.0]), alpha=0.8, clip=eye_mask)
            # upper lid / lashes
            ua = np.linspace(np.pi, 2 * np.pi, 20)
            lid = P(np.stack([ex + 1.04 * ew * np.cos(ua), ey + eh * max(open_, 0.04) * np.sin(ua)], -1))
            cv_.line(lid, self.hair * 0.5, thickness=max(1.0, 0.022 * sc))
            if open_ < 0.5:  # eyelid skin sliding down
                cv_.fill(P(np.concatenate([eye_uv[a >= np.pi], np.array([[ex - ew, ey], [ex + ew, ey]])[::-1]])),
                         self.skin * 0.9, alpha=1 - open_ * 2, clip=eye_mask)
            # eyebrow (a tapered ribbon)
            bx = np.linspace(-1.15, 1.15, 16)
            by = ey - eh - 0.09 - 0.05 * brow - self.brow_arch * (1 - bx**2) - 0.02 * side * bx * brow
            thick = self.brow_th * (1 - 0.5 * ((bx * side + 1.15) / 2.3))
            upper = np.stack([ex + bx * ew, by - thick / 2], -1)
            lower = np.stack([ex + bx * ew, by + thick / 2], -1)[::-1]
            cv_.fill(P(np.concatenate([upper, lower]), 0.02), self.hair * 0.8)
            kps.append(P(ic)[0])
            if self.glasses:
                cv_.line(P(np.stack([ex + 1.35 * ew * np.cos(a), ey + 2.2 * eh * np.sin(a)], -1), 0.08),
                         np.array([0.1, 0.1, 0.1]), max(1.0, 0.03 * sc), closed=True)
        if self.glasses:
            cv_.line(P(np.array([[-self.eye_x + 1.35 * self.eye_w, self.eye_y], [self.eye_x - 1.35 * self.eye_w, self.eye_y]]), 0.12),
                     np.array([0.1, 0.1, 0.1]), max(1.0, 0.03 * sc))
        # nose: side shadow, tip, nostrils (protruding: parallax under yaw)
        ny0, nl = self.eye_y + 0.05, self.nose_len
        side_sh = P(np.array([[0.04, ny0], [0.09, ny0 + nl * 0.7], [0.11, ny0 + nl], [0.0, ny0 + nl + 0.02]]),
                    np.array([0.05, 0.15, 0.22, 0.25]))
        cv_.fill(side_sh, self.skin * 0.6, alpha=0.4)
        bridge = P(np.array([[0.035, ny0 + 0.02], [0.05, ny0 + nl * 0.5], [0.07, ny0 + nl * 0.85]]), np.array([0.05, 0.12, 0.2]))
        cv_.line(bridge, self.skin * 0.55, thickness=max(1.0, 0.012 * sc), alpha=0.5)
        tip_c = np.array([[0.0, ny0 + nl]])
        cv_.fill(P(tip_c + np.stack([0.07 * np.cos(a), 0.05 * np.sin(a)], -1), 0.27), self.skin * 1.08, alpha=0.6)
        for side in (-1, 1):
            cv_.fill(P(np.array([[side * 0.055, ny0 + nl + 0.035]]) + np.stack([0.03 * np.cos(a), 0.016 * np.sin(a)], -1), 0.18),
                     self.skin * 0.35, alpha=0.85)
        kps.append(P(tip_c, 0.27)[0])
        # mouth
        o = float(np.clip(0.5 + 0.6 * self.f_mouth(t), 0, 1)) * self.talk
        sm = self.smile0 + self.f_smile(t)
        mw, my, lt = self.mouth_w * (1 + 0.12 * sm - 0.1 * o), self.mouth_y, self.lip_th
        q = np.linspace(-1, 1, 24)
        yc = my - sm * 0.05
        base = my + (yc - my) * q**2
        bow = 0.012 * np.cos(q * 2 * np.pi) * (np.abs(q) < 0.5)
        y_uo = base - lt * (1 - q**2) ** 0.6 - o * 0.03 * (1 - q**2) - bow
        y_ui = base - o * 0.05 * (1 - q**2) ** 0.7
        y_li = base + o * 0.2 * (1 - q**2) ** 0.7
        y_lo = y_li + 1.3 * lt * (1 - q**2) ** 0.6
        xs = q * mw
        lips = P(np.concatenate([np.stack([xs, y_uo], -1), np.stack([xs[::-1], y_lo[::-1]], -1)]), 0.05)
        cv_.fill(lips, self.lip)
        if o > 0.04:
            inner_uv = np.concatenate([np.stack([xs * 0.97, y_ui], -1), np.stack([xs[::-1] * 0.97, y_li[::-1]], -1)])
            inner = P(inner_uv, 0.05)
            inner_mask = cv_.mask_of(inner)
            cv_.fill(inner, np.array([0.25, 0.05, 0.06]))
            teeth = P(np.concatenate([np.stack([xs * 0.8, y_ui - 0.01], -1), np.stack([xs[::-1] * 0.8, y_ui[::-1] + 0.035], -1)]), 0.05)
            cv_.fill(teeth, np.array([0.95, 0.94, 0.88]), clip=inner_mask)
            tongue = P(np.array([[0.0, my + o * 0.11]]) + np.stack([0.12 * np.cos(a) * mw / 0.25, 0.04 * np.sin(a)], -1), 0.05)
            cv_.fill(tongue, np.array([0.75, 0.3, 0.3]), clip=inner_mask)
        else:
            cv_.line(P(np.stack([xs, y_ui], -1), 0.05), self.lip * 0.4, thickness=max(1.0, 0.012 * sc))
        kps.append(P(np.array([[-mw, yc], [mw, yc]]), 0.05)[0])
        kps.append(P(np.array([[mw, yc]]), 0.05)[0])
        kps.append(P(np.array([[0.0, y_uo[12]], [0.0, y_lo[12]]]), 0.05).mean(0))
        # shading & skin texture over head (and its features)
        self._shade(cv_, pose, t, head_mask, ax, ay, self.skin_tex)
        kps.append(plane(np.array([[0.0, ay]]))[0])  # chin
        return np.stack(kps)  # (7, 2): eyes (2), nose tip, mouth corners (2), mouth centre, chin

    def _render_shape(self, cv_: _Canvas, pose: _Pose, t: float, S: int) -> np.ndarray:
        sc = pose.scale
        a = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        r = 1 + sum(self.blob_r[k] * np.cos((k + 2) * a + self.blob_ph[k]) for k in range(4)) * 0.5
        squash = math.cos(pose.yaw)
        cr, sr = math.cos(pose.roll), math.sin(pose.roll)

        def plane(pts):
            pts = np.asarray(pts, np.float64).reshape(-1, 2) * np.array([squash, 1.0])
            return np.stack([pose.cx + sc * (pts[:, 0] * cr - pts[:, 1] * sr),
                             pose.cy + sc * (pts[:, 0] * sr + pts[:, 1] * cr)], -1)

        body = plane(np.stack([r * np.cos(a), r * np.sin(a)], -1))
        mask = cv_.mask_of(body)
        cv_.fill(body, self.skin)
        kps = [plane(np.zeros((1, 2)))[0]]
        for (px, py, rx, ry, col, f_ang, f_off) in self.parts:
            ang = f_ang(t)
            c = np.array([px + f_off(t), py - f_off(t + 1.0)])
            loc = np.stack([rx * np.cos(a), ry * np.sin(a)], -1) @ np.array([[math.cos(ang), math.sin(ang)], [-math.sin(ang), math.cos(ang)]])
            cv_.fill(plane(loc + c), col)
            cv_.fill(plane(0.35 * loc + c + np.array([0.3 * rx * math.cos(ang), 0.3 * rx * math.sin(ang)])), col * 0.3)
            kps.append(plane(c[None])[0])
        self._shade(cv_, pose, t, mask, squash * 1.3, 1.3, self.skin_tex)
        kp = np.stack(kps)
        if len(kp) < 7:  # pad to a fixed count (repeat the centre)
            kp = np.concatenate([kp, np.repeat(kp[:1], 7 - len(kp), 0)])
        return kp[:7]


class ProceduralTalkingObjects(Dataset):
    """Unlimited offline talking heads (and other articulated shapes), drawn with OpenCV.

    Item ``i`` is a deterministic "video" seeded by ``(seed, i)``: an identity (skin, hair, eyes,
    face geometry, clothes, textured background) and smooth motion (head translation, roll, scale,
    ellipsoidal yaw and pitch, blinking, gaze, eyebrows, talking mouth, moving light). Its
    ``video_length`` frames at ``fps`` are a fixed sequence; the item picks ``num_refs + 2``
    distinct frames of it (also seeded): source, references, driving.

    Item: ``{'source': (3, S, S), 'refs': (N, 3, S, S), 'driving': (3, S, S)}`` float32 in [0, 1];
    with ``return_keypoints`` also ``'kp_source' (7, 2)``, ``'kp_refs' (N, 7, 2)``,
    ``'kp_driving' (7, 2)``: ground-truth landmarks (eye pupils, nose tip, mouth corners, mouth
    centre, chin) in [-1, 1] (x, y), ``align_corners=True`` convention.

    Args:
        length: number of items (videos).
        image_size: output side S.
        num_refs: reference frames N.
        seed: base seed (use different seeds for train and test).
        face_prob: probability that an item is a face (else an articulated textured shape).
        video_length: frames per video.
        fps: frame rate of the parametric motion.
        supersample: render at this factor and downsample (anti-aliasing).
        noise: standard deviation of per-frame sensor noise.
    """

    def __init__(
        self,
        length: int = 10000,
        image_size: int = 256,
        num_refs: int = 3,
        seed: int = 0,
        *,
        face_prob: float = 0.85,
        video_length: int = 100,
        fps: float = 25.0,
        supersample: int = 2,
        noise: float = 0.01,
        return_keypoints: bool = False,
    ) -> None:
        if video_length < num_refs + 2:
            raise DatasetError(f"video_length {video_length} is shorter than num_refs + 2 = {num_refs + 2} frames.")
        self.length = int(length)
        self.image_size = int(image_size)
        self.num_refs = int(num_refs)
        self.seed = int(seed)
        self.face_prob = face_prob
        self.video_length = int(video_length)
        self.fps = float(fps)
        self.supersample = int(supersample)
        self.noise = float(noise)
        self.return_keypoints = return_keypoints
        self.skipped = 0  # API parity with VideoFolderDataset

    def __len__(self) -> int:
        return self.length

    def _object(self, index: int) -> _TalkingObject:
        return _TalkingObject(np.random.default_rng([self.seed, index, 0]), self.image_size, self.face_prob)

    def _frame(self, obj: _TalkingObject, index: int, f: int) -> tuple[np.ndarray, np.ndarray]:
        img, kp = obj.render(f / self.fps, self.supersample)
        if self.noise > 0:
            nrng = np.random.default_rng([self.seed, index, 1, f])
            img = np.clip(img + nrng.standard_normal(img.shape, dtype=np.float32) * self.noise, 0, 1)
        return img, kp

    def frame_indices(self, index: int) -> np.ndarray:
        """Frame numbers [source, refs..., driving] (N + 2,) used by item ``index``."""
        rng = np.random.default_rng([self.seed, index, 2])
        return rng.choice(self.video_length, size=self.num_refs + 2, replace=False)

    def render_video(self, index: int, frames: Sequence[int] | None = None) -> np.ndarray:
        """Render frames (default: all ``video_length``) of video ``index``: (T, S, S, 3) uint8 RGB."""
        obj = self._object(index)
        frames = range(self.video_length) if frames is None else frames
        out = [self._frame(obj, index, f)[0] for f in frames]
        return (np.stack(out) * 255 + 0.5).astype(np.uint8)

    def __getitem__(self, index: int) -> Item:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        obj = self._object(index)
        imgs, kps = zip(*(self._frame(obj, index, int(f)) for f in self.frame_indices(index)))
        item = _make_item(np.stack(imgs), self.num_refs)
        if self.return_keypoints:
            k = torch.from_numpy(np.stack(kps)) * (2.0 / (self.image_size - 1)) - 1.0
            item["kp_source"], item["kp_refs"], item["kp_driving"] = k[0], k[1 : 1 + self.num_refs], k[1 + self.num_refs]
        return item

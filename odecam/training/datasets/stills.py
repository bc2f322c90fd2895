"""Still images animated by smooth random warps (affine + thin-plate spline): :class:`StillImageAnimation`.

The thin-plate-spline helpers :func:`tps_solve` / :func:`tps_eval` are shared with the
landmark-guided motion of :mod:`odecam.training.datasets.landmark_motion`. Item format:
:mod:`odecam.training.datasets.common` (landmarks NaN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from torch.utils.data import Dataset

from odecam.training.datasets.common import (
    IMAGE_EXTS, AugmentConfig, DatasetError, Item, PathLike, VideoDecodeError, _make_item, _resolve_augment,
    _square_resize,
)
from odecam.training.datasets.videos import read_video

__all__ = ["WarpConfig", "StillImageAnimation", "default_still_images", "tps_solve", "tps_eval"]


def default_still_images() -> list[Path]:
    """Offline still portraits shipped by installed packages (scikit-image's astronaut)."""
    import importlib.util

    out: list[Path] = []
    spec = importlib.util.find_spec("skimage")
    if spec is not None and spec.submodule_search_locations:
        p = Path(list(spec.submodule_search_locations)[0]) / "data" / "astronaut.png"
        if p.is_file():
            out.append(p)
    return out


def tps_solve(ctrl: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Thin-plate-spline coefficients mapping ``ctrl`` (K, 2) onto ``target`` (K, 2): (K + 3, 2)."""
    K = len(ctrl)
    d = np.linalg.norm(ctrl[:, None] - ctrl[None], axis=-1)
    U = np.where(d > 0, d**2 * np.log(d + 1e-12), 0.0)
    P = np.concatenate([np.ones((K, 1)), ctrl], 1)
    A = np.zeros((K + 3, K + 3))
    A[:K, :K] = U + 1e-8 * np.eye(K)
    A[:K, K:] = P
    A[K:, :K] = P.T
    b = np.zeros((K + 3, 2))
    b[:K] = target
    return np.linalg.solve(A, b)


def tps_eval(coef: np.ndarray, ctrl: np.ndarray, pts: np.ndarray) -> np.ndarray:
    d = np.linalg.norm(pts[:, None] - ctrl[None], axis=-1)
    U = np.where(d > 0, d**2 * np.log(d + 1e-12), 0.0)
    K = len(ctrl)
    return U @ coef[:K] + coef[K] + pts @ coef[K + 1 :]


@dataclass
class WarpConfig:
    """Amplitudes of the smooth random warps of :class:`StillImageAnimation`.

    Angles in degrees, shifts and TPS displacements in units of the half image side ([-1, 1] coords).
    """

    rotation: float = 8.0
    scale: float = 0.08
    shift: float = 0.08
    tps_points: int = 4  # control grid is tps_points x tps_points
    tps_sigma: float = 0.05
    min_freq: float = 0.3  # cycles per pseudo-video
    max_freq: float = 1.5
    zoom: float = 1.08  # base zoom-in that keeps borders mostly out of view


class StillImageAnimation(Dataset):
    """Pseudo-videos from still images by smooth random warps (affine + thin-plate spline).

    Each item ``i`` takes image ``i % len(images)``, draws a smooth random warp trajectory
    (rotation, scale, translation and TPS control-point displacements, each a sum of sinusoids
    of the pseudo-time t in [0, 1]; seeded by ``(seed, i)``) and renders ``num_refs + 2`` instants
    of it with ``cv2.remap`` (reflected borders): source, references, driving.

    Item: ``{'source': (3, S, S), 'refs': (N, 3, S, S), 'driving': (3, S, S)}`` float32 in [0, 1].

    Args:
        images: RGB uint8 arrays (H, W, 3), image paths, or video paths / frame folders (then
            ``frames_per_video`` evenly spaced non-dark frames are taken). Default: astronaut.
        length: number of items (default ``len(images) * 100``).
        image_size: output side S (non-square images are centre-cropped).
        num_refs: reference frames N.
        seed: base seed.
        warp: :class:`WarpConfig`.
        augment: optional :class:`AugmentConfig` (flip / colour jitter consistent per item).
    """

    def __init__(
        self,
        images: Sequence[np.ndarray | PathLike] | None = None,
        length: int | None = None,
        image_size: int = 256,
        num_refs: int = 3,
        seed: int = 0,
        *,
        warp: WarpConfig | None = None,
        augment: bool | AugmentConfig | None = False,
        frames_per_video: int = 8,
    ) -> None:
        self.image_size = int(image_size)
        self.num_refs = int(num_refs)
        self.seed = int(seed)
        self.warp = warp or WarpConfig()
        self.augment = _resolve_augment(augment, "train") if augment is not None else None
        self.skipped = 0
        srcs = list(images) if images is not None else default_still_images()
        base: list[np.ndarray] = []
        S = self.image_size
        for src in srcs:
            if isinstance(src, np.ndarray):
                arr = src if src.dtype == np.uint8 else (np.clip(src, 0, 1) * 255 + 0.5).astype(np.uint8)
                if arr.ndim == 2:
                    arr = np.repeat(arr[..., None], 3, -1)
                base.append(_square_resize(arr[..., :3], S, "center"))
                continue
            p = Path(src)
            if not p.exists():
                raise DatasetError(f"The still image {p} does not exist.")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTS:
                img = cv2.imread(str(p), cv2.IMREAD_COLOR)
                if img is None:
                    raise DatasetError(f"The still image {p} could not be decoded.")
                base.append(_square_resize(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), S, "center"))
            else:
                try:
                    frames = read_video(p, S, "center")
                except VideoDecodeError as e:
                    raise DatasetError(f"Could not take stills from {p}: {e}.") from e
                keep = np.where(frames.reshape(len(frames), -1).mean(1) >= 8.0)[0]
                if len(keep) == 0:
                    raise DatasetError(f"Every frame of {p} is dark.")
                pick = keep[np.linspace(0, len(keep) - 1, min(frames_per_video, len(keep))).round().astype(int)]
                base.extend(frames[i] for i in pick)
        if not base:
            raise DatasetError("StillImageAnimation got no images (and no default still image is installed).")
        self.images = base
        self.length = int(length) if length is not None else len(base) * 100
        n = self.warp.tps_points
        g = np.linspace(-1, 1, n)
        self._ctrl = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
        gs = 33  # coarse grid on which the warp is evaluated, then upsampled
        c = np.linspace(-1, 1, gs)
        self._coarse = np.stack(np.meshgrid(c, c), -1).reshape(-1, 2)

    def __len__(self) -> int:
        return self.length

    def _trajectory(self, rng: np.random.Generator):
        w = self.warp
        K = len(self._ctrl)

        def sig(amp: float, shape=()):
            f = rng.uniform(w.min_freq, w.max_freq, shape)
            ph = rng.uniform(0, 2 * np.pi, shape)
            a = rng.uniform(0.3, 1.0, shape) * amp
            return lambda t: a * np.sin(2 * np.pi * f * t + ph)

        return (sig(np.deg2rad(w.rotation)), sig(w.scale), sig(w.shift, (2,)), sig(w.tps_sigma, (K, 2)))

    def warp_grid(self, traj, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Sampling maps (map_x, map_y), each (S, S) float32 pixels, of the warp at time ``t``."""
        f_rot, f_sc, f_sh, f_tps = traj
        S = self.image_size
        ang, sc, sh = float(f_rot(t)), float(f_sc(t)), f_sh(t)
        coef = tps_solve(self._ctrl, self._ctrl + f_tps(t))
        src = tps_eval(coef, self._ctrl, self._coarse)
        ca, sa = math.cos(ang), math.sin(ang)
        R = np.array([[ca, -sa], [sa, ca]]) / ((1 + sc) * self.warp.zoom)
        src = src @ R.T + sh
        gs = int(round(math.sqrt(len(self._coarse))))
        grid = src.reshape(gs, gs, 2).astype(np.float32)
        grid = cv2.resize(grid, (S, S), interpolation=cv2.INTER_CUBIC)
        mx = (grid[..., 0] + 1) * 0.5 * (S - 1)
        my = (grid[..., 1] + 1) * 0.5 * (S - 1)
        return np.ascontiguousarray(mx), np.ascontiguousarray(my)

    def __getitem__(self, index: int) -> Item:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        img = self.images[index % len(self.images)]
        traj = self._trajectory(rng)
        ts = rng.uniform(0, 1, self.num_refs + 2)
        frames = []
        for t in ts:
            mx, my = self.warp_grid(traj, float(t))
            frames.append(cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101))
        arr = np.stack(frames)
        if self.augment is not None:
            return _make_item(self.augment.apply(arr, rng), self.num_refs)
        return _make_item(arr, self.num_refs)


#: old private names
_tps_solve, _tps_eval = tps_solve, tps_eval

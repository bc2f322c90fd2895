"""Shared pieces of the training datasets: the item format, errors, file kinds, augmentation.

Every dataset yields the sample of the paper's training setup (Sec. 3, Fig. 3): one *source* frame S,
``N`` *reference* frames R^(j) and one *driving* frame D of ONE identity, plus, for face crops,
dlib's 68 landmarks of each frame (NaN rows where unknown). Datasets without landmarks are wrapped in
:class:`WithLandmarks` (NaN landmarks) when mixed with face crops, so that their items collate into
one batch (``ConcatDataset``)::

    {
        "source":  float32 tensor (3, H, W) in [0, 1],
        "driving": float32 tensor (3, H, W) in [0, 1],
        "refs":    float32 tensor (N, 3, H, W) in [0, 1],   # N = num_refs, may be 0
        # with face crops (faces:DIR), and in every dataset mixed with them (NaN = unknown):
        "source_landmarks":  float32 (68, 2) in [-1, 1] or NaN,
        "driving_landmarks": float32 (68, 2) in [-1, 1] or NaN,
        "refs_landmarks":    float32 (N, 68, 2) in [-1, 1] or NaN,
        "driving_field":     float32 (2, G, G) or NaN: the exact backward field from the source to a
                             synthetic driving frame (landmark-guided motion), G = FIELD_GRID = 48,
                             (x, y) in [-1, 1] units on ``make_coordinate_grid(G, G)``; NaN where
                             unknown (real pairs, painted mouth interiors and closed eyes)
    }

Landmark coordinates: :mod:`odecam.data.landmarks` (``align_corners=True``, (x, y)).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from odecam.data.landmarks import NUM_LANDMARKS, flip_landmarks
from odecam.rotation import center_rotation, unit_rotation, warp_reflected

#: side G of the synthetic-motion backward fields in items (``driving_field``, the TPS grid of
#: :func:`~odecam.training.datasets.landmark_motion.synthesize_with_field`)
FIELD_GRID = 48

try:  # tqdm is a declared dependency; keep the module importable without it anyway.
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover
    tqdm = None  # type: ignore[assignment]

VIDEO_EXTS: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".gif")
IMAGE_EXTS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
#: File names that are evaluation-only (never trained on); see /work/shared/data/README.md.
EVAL_ONLY_FILES: tuple[str, ...] = ("carphone_pristine",)

PathLike = Union[str, os.PathLike]
Item = dict[str, torch.Tensor]


class DatasetError(ValueError):
    """A dataset cannot be used (empty, unreadable, too short videos, ...). Raised before training."""


class VideoDecodeError(RuntimeError):
    """A single video failed to decode (a dataset skips such an item at run time and counts it)."""


# ----------------------------------------------------------------------------------------------
# Small image helpers
# ----------------------------------------------------------------------------------------------


def _square_resize(frame: np.ndarray, size: int, crop: str) -> np.ndarray:
    """Crop/resize an (H, W, 3) uint8 frame to (size, size, 3).

    ``crop='center'`` takes the central square; ``crop='resize'`` squashes the whole frame.
    """
    h, w = frame.shape[:2]
    if crop == "center" and h != w:
        m = min(h, w)
        y0, x0 = (h - m) // 2, (w - m) // 2
        frame = frame[y0 : y0 + m, x0 : x0 + m]
    elif crop not in ("center", "resize"):
        raise ValueError(f"crop must be 'center' or 'resize', got {crop!r}")
    if frame.shape[0] != size or frame.shape[1] != size:
        interp = cv2.INTER_AREA if frame.shape[0] > size else cv2.INTER_LINEAR
        frame = cv2.resize(frame, (size, size), interpolation=interp)
    return np.ascontiguousarray(frame)


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(K, H, W, 3) uint8 or float in [0, 1] -> float32 tensor (K, 3, H, W) in [0, 1]."""
    if frames.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    else:
        t = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).permute(0, 3, 1, 2)
        t = t.clamp_(0.0, 1.0)
    return t.contiguous()


def _make_item(frames: np.ndarray, num_refs: int, landmarks: np.ndarray | None = None,
               field: np.ndarray | None = None) -> Item:
    """Frames ordered [source, refs..., driving] (K = N + 2, H, W, 3) -> the item dict.

    ``landmarks``: (K, 68, 2) float in [-1, 1] in the same order, NaN rows where unknown; None = no
    landmark keys (:class:`WithLandmarks` adds NaN ones when such items are mixed with face crops).
    ``field``: the driving frame's backward field (G, G, 2) or None (then NaN when landmarks are given).
    """
    t = _to_tensor(frames)
    item = {"source": t[0], "refs": t[1 : 1 + num_refs], "driving": t[1 + num_refs]}
    if landmarks is not None:
        lm = torch.from_numpy(np.ascontiguousarray(landmarks, dtype=np.float32))
        item.update(source_landmarks=lm[0], refs_landmarks=lm[1 : 1 + num_refs], driving_landmarks=lm[1 + num_refs])
        if field is None:
            item["driving_field"] = torch.full((2, FIELD_GRID, FIELD_GRID), float("nan"))
        else:
            item["driving_field"] = torch.from_numpy(np.ascontiguousarray(np.moveaxis(field, -1, 0), dtype=np.float32))
    return item


LANDMARK_KEYS = ("source_landmarks", "refs_landmarks", "driving_landmarks")


def add_missing_landmarks(item: Item) -> Item:
    """Give an item without landmarks NaN ones of the right shapes ((68, 2), (N, 68, 2), (68, 2))."""
    if "source_landmarks" not in item:
        n = item["refs"].shape[0]
        item["source_landmarks"] = torch.full((NUM_LANDMARKS, 2), float("nan"))
        item["driving_landmarks"] = torch.full((NUM_LANDMARKS, 2), float("nan"))
        item["refs_landmarks"] = torch.full((n, NUM_LANDMARKS, 2), float("nan"))
    if "driving_field" not in item:
        item["driving_field"] = torch.full((2, FIELD_GRID, FIELD_GRID), float("nan"))
    return item


class WithLandmarks(Dataset):
    """Wraps a dataset whose items carry no landmarks and adds NaN ones, so that its items collate
    with those of :class:`~odecam.training.datasets.faces.FaceCropDataset` in one batch."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Item:
        return add_missing_landmarks(self.dataset[index])

    @property
    def skipped(self) -> int:
        return int(getattr(self.dataset, "skipped", 0))

    def __getattr__(self, name: str):
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def _torch_seed() -> int:
    """A seed drawn from torch's generator (seeded per DataLoader worker and by torch.manual_seed)."""
    return int(torch.randint(0, 2**62, (1,)).item())


# ----------------------------------------------------------------------------------------------
# Augmentation (consistent across all frames of one item)
# ----------------------------------------------------------------------------------------------


@dataclass
class AugmentConfig:
    """Photometric/geometric augmentation, applied identically to every frame of an item.

    Defaults follow FOMM's ``augmentation_params`` (horizontal flip; colour jitter 0.1 each; hue in
    torchvision units, i.e. a fraction of the hue circle in [-hue, hue]).
    """

    flip_prob: float = 0.5
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.1
    #: in-plane rotation of the whole item (every frame, its landmarks and field by one angle drawn
    #: uniformly in [-rotation, rotation] degrees, about the centre): heads tilted as a webcam held askew
    #: films them (carphone's driver is rolled about 20 degrees throughout); 0 = off
    rotation: float = 0.0

    def apply(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(K, H, W, 3) uint8 RGB -> augmented (K, H, W, 3) float32 RGB in [0, 1]."""
        return self.apply_with_landmarks(frames, None, rng)[0]

    def apply_with_landmarks(self, frames: np.ndarray, landmarks: np.ndarray | None, rng: np.random.Generator
                             ) -> tuple[np.ndarray, np.ndarray | None]:
        """As :meth:`apply`, and landmarks (K, 68, 2) in [-1, 1] moved with the image: a horizontal flip
        negates x and swaps the face's left and right points (:data:`odecam.data.landmarks.FLIP_PERMUTATION`)."""
        x, landmarks, _ = self.apply_with_geometry(frames, landmarks, None, rng)
        return x, landmarks

    def apply_with_geometry(self, frames: np.ndarray, landmarks: np.ndarray | None, field: np.ndarray | None,
                            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """As :meth:`apply_with_landmarks`, and a backward field (G, G, 2) moved with the image: a flip
        mirrors its columns and negates its x component."""
        if self.rotation > 0:
            frames, landmarks, field = rotate_item(frames, landmarks, field,
                                                   float(rng.uniform(-self.rotation, self.rotation)))
        x = frames.astype(np.float32) / 255.0
        if rng.random() < self.flip_prob:
            x = x[:, :, ::-1]
            if landmarks is not None:
                landmarks = flip_landmarks(landmarks)
            if field is not None:
                field = field[:, ::-1] * np.array([-1.0, 1.0], np.float32)
        if self.brightness > 0:
            x = x * rng.uniform(1 - self.brightness, 1 + self.brightness)
        if self.contrast > 0:
            c = rng.uniform(1 - self.contrast, 1 + self.contrast)
            gray = (x @ np.array([0.299, 0.587, 0.114], np.float32)).mean(axis=(1, 2), keepdims=True)
            x = (x - gray[..., None]) * c + gray[..., None]
        if self.saturation > 0:
            s = rng.uniform(1 - self.saturation, 1 + self.saturation)
            gray = x @ np.array([0.299, 0.587, 0.114], np.float32)
            x = (x - gray[..., None]) * s + gray[..., None]
        x = np.clip(x, 0.0, 1.0)
        if self.hue > 0:
            h = rng.uniform(-self.hue, self.hue) * 360.0
            out = np.empty_like(x)
            for k in range(x.shape[0]):
                hsv = cv2.cvtColor(np.ascontiguousarray(x[k]), cv2.COLOR_RGB2HSV)
                hsv[..., 0] = np.mod(hsv[..., 0] + h, 360.0)
                out[k] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
            x = out
        return np.clip(x, 0.0, 1.0), landmarks, field


def rotate_item(frames: np.ndarray, landmarks: np.ndarray | None, field: np.ndarray | None, degrees: float
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Rotate an item's frames (K, H, W, 3) about their centre by ``degrees`` (counter-clockwise on screen,
    as ``cv2.getRotationMatrix2D``; borders reflected: :mod:`odecam.rotation`, the turn the live framing levels
    faces with), with its landmarks (K, 68, 2) and backward field (G, G, 2) in [-1, 1] units
    (``align_corners=True``).

    With R the rotation in [-1, 1] units, a point p moves to R p, and the field d (``driving(p) =
    source(p + d(p))``) becomes d'(p) = R d(R^-1 p): resampled bilinearly at R^-1 p and turned; NaN where
    R^-1 p leaves the grid or touches an unknown node."""
    k, h, w = frames.shape[:3]
    m = center_rotation(h, w, degrees)
    out = np.stack([warp_reflected(np.ascontiguousarray(f), m) for f in frames])
    r = unit_rotation(m, h, w)  # the same turn in [-1, 1] units
    if landmarks is not None:
        landmarks = (landmarks @ r.T).astype(np.float32)
    if field is not None:
        g = field.shape[0]
        nodes = np.stack(np.meshgrid(np.linspace(-1, 1, g), np.linspace(-1, 1, g), indexing="xy"), -1)
        src = nodes @ np.linalg.inv(r).T  # R^-1 p for every node p, (G, G, 2)
        pos = (src + 1) * (g - 1) / 2
        inside = ((pos >= -1e-6) & (pos <= g - 1 + 1e-6)).all(-1)
        pos = np.clip(pos, 0, g - 1)
        i0 = np.minimum(np.floor(pos).astype(int), g - 2)
        t = (pos - i0).astype(np.float32)
        x0, y0 = i0[..., 0], i0[..., 1]
        tx, ty = t[..., :1], t[..., 1:]
        sampled = ((1 - ty) * ((1 - tx) * field[y0, x0] + tx * field[y0, x0 + 1])
                   + ty * ((1 - tx) * field[y0 + 1, x0] + tx * field[y0 + 1, x0 + 1]))
        sampled[~inside] = np.nan
        field = (sampled @ r.T).astype(np.float32)
    return out, landmarks, field


def _resolve_augment(augment: bool | AugmentConfig | None, split: str) -> AugmentConfig | None:
    if augment is None:
        return AugmentConfig() if split == "train" else None
    if augment is True:
        return AugmentConfig()
    if augment is False:
        return None
    return augment


# ----------------------------------------------------------------------------------------------
# File kinds
# ----------------------------------------------------------------------------------------------


def _is_video(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in VIDEO_EXTS


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTS


def _frame_files(d: Path) -> list[Path]:
    return sorted(q for q in d.iterdir() if _is_image(q))



def _check_not_eval_only(p: Path, split: str, allow_eval_only: bool) -> None:
    if split == "train" and not allow_eval_only and any(n in p.name for n in EVAL_ONLY_FILES):
        raise DatasetError(f"{p.name} is an evaluation-only clip and must not be used for training.")
    if split == "train" and not allow_eval_only and p.is_dir():
        for q in p.rglob("*"):
            if any(n in q.name for n in EVAL_ONLY_FILES):
                raise DatasetError(f"{q} is an evaluation-only clip and must not be used for training.")

"""Prepared face crops with dlib landmarks (``faces:DIR``): :class:`FaceCropDataset`.

``DIR`` is written by ``odecam prepare-faces`` (:mod:`odecam.data.prepare`): ``DIR/videos/NAME/``
holds one clip's square crops ``%05d.jpg`` and ``landmarks.npy`` (T, 68, 2); ``DIR/stills/NAME.jpg``
and ``NAME.npy`` (68, 2) hold portraits.

Item (the common format of :mod:`odecam.training.datasets.common`, landmarks always present)::

    {
        "source":  (3, S, S), "refs": (N, 3, S, S), "driving": (3, S, S),   # float32 in [0, 1]
        "source_landmarks":  (68, 2) float32,      # dlib's 68 points, (x, y) in [-1, 1]
        "refs_landmarks":    (N, 68, 2) float32,   # (align_corners=True: -1/+1 = border pixel centres)
        "driving_landmarks": (68, 2) float32,      # rows of NaN where no face was found
    }

All frames of an item come from ONE clip (or ONE portrait), so they show one identity.

Sampling (pairs that differ in expression and pose, so that copying the source does not pay):

* the source is a random frame with landmarks;
* the driving frame is, with probability ``far_prob``, the farthest from the source among
  ``far_candidates`` random frames of the clip, in a landmark space of expression and pose signals
  (mouth opening, eye opening, roll, yaw and pitch proxies; translation and scale removed:
  :func:`odecam.data.landmarks.expression_signals`, divided by :data:`SIGNAL_SCALES`); otherwise a
  uniformly drawn frame;
* references are drawn among the remaining frames at least ``ref_gap`` frames away from the driving
  frame (a near-duplicate reference would let the model copy the answer);
* with probability ``synthetic_prob`` the driving frame (and, in part, the references) is instead
  synthesised from the source frame by landmark-guided motion
  (:mod:`odecam.training.datasets.landmark_motion`: mouth opening, blinks, head yaw / pitch / roll);
  a portrait's items are always synthesised (the source gets a small motion of its own).

Augmentation (:class:`~odecam.training.datasets.common.AugmentConfig`) is the same for every frame
of an item and moves the landmarks with the image (a flip negates x and swaps left / right points; a
rotation, ``rotate=DEG``, turns frames, landmarks and the synthetic motion's field together).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset

from odecam.data.landmarks import expression_signals, normalised_to_pixels
from odecam.training.datasets.common import (
    AugmentConfig, DatasetError, Item, PathLike, _make_item, _resolve_augment, _torch_seed,
)
from odecam.training.datasets.landmark_motion import FIELD_GRID, MotionConfig, random_motion, synthesize_with_field

__all__ = ["FaceCropDataset", "SIGNAL_SCALES", "far_driving_index", "resize_landmarks"]

log = logging.getLogger(__name__)

#: typical spread of each :func:`expression_signals` signal (mouth, eyes, roll, yaw, pitch) in talking-head
#: clips; dividing by it weighs an open mouth like a head turn in the far-sampling distance
SIGNAL_SCALES = np.array([0.08, 0.03, 0.08, 0.08, 0.06])


def resize_landmarks(lm: np.ndarray, old: int, new: int) -> np.ndarray:
    """[-1, 1] landmarks of an ``old``-pixel image -> those of the image resized to ``new`` pixels
    (cv2's half-pixel resize: exact in the ``align_corners=True`` convention)."""
    if old == new:
        return lm
    px = normalised_to_pixels(lm, old)
    px = (px + 0.5) * (new / old) - 0.5
    return (2.0 * px / (new - 1) - 1.0).astype(np.float32)


def far_driving_index(signals: np.ndarray, source: int, candidates: np.ndarray) -> int:
    """Among ``candidates`` (frame indices), the one whose scaled signals are farthest from ``source``'s.

    ``signals``: (T, 5) as from :func:`expression_signals`; NaN rows (no face) count as distance 0.
    """
    d = (signals[candidates] - signals[source]) / SIGNAL_SCALES
    dist = np.sqrt(np.nansum(d * d, axis=1))
    dist[~np.isfinite(signals[candidates]).all(1)] = 0.0
    return int(candidates[int(np.argmax(dist))])



def _synthesize_or_keep(img: np.ndarray, lm: np.ndarray, m) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`synthesize_with_field`, or the frame unmoved (a zero field) when a random motion cannot be
    built for this face (a rare geometric corner case must not mark the whole clip bad)."""
    try:
        return synthesize_with_field(img, lm, m)
    except (ValueError, np.linalg.LinAlgError, cv2.error) as e:
        log.debug("synthetic motion skipped: %s", e)
        return img, lm, np.zeros((FIELD_GRID, FIELD_GRID, 2), np.float32)


def _unknown_field() -> np.ndarray:
    return np.full((FIELD_GRID, FIELD_GRID, 2), np.nan, np.float32)

class _Clip:
    def __init__(self, folder: Path, landmarks: np.ndarray, person: str) -> None:
        self.folder = folder
        self.landmarks = landmarks  # (T, 68, 2)
        self.signals = expression_signals(landmarks)  # (T, 5)
        self.valid = np.where(np.isfinite(landmarks).all(axis=(1, 2)))[0]
        self.person = person

    def __len__(self) -> int:
        return len(self.landmarks)


class FaceCropDataset(Dataset):
    """Face crops prepared by ``odecam prepare-faces`` (see the module docstring for items and sampling).

    Args:
        root: the prepared folder (``videos/``, ``stills/``).
        split: ``'train'`` (random items, augmentation on by default) or ``'test'`` (deterministic).
        image_size: output side S (crops are resized when it differs from the prepared size).
        num_refs: reference frames N.
        augment: ``True``/``False``/:class:`AugmentConfig`; ``None``: on for train, off for test.
        repeats: each clip counts this many times per epoch (portraits: see ``stills_share``).
        far_prob, far_candidates: far-driving sampling (module docstring).
        ref_gap: references are at least this many frames from the driving frame.
        synthetic_prob: share of clip items whose driving frame is synthesised from the source.
        use_stills: include ``stills/`` portraits (always synthesised).
        stills_share: the share of items that are portraits when there are clips too (at least one
            item per ``repeats`` each way; without clips every item is a portrait).
        motion: ranges of the synthetic motion.
        min_frames: clips with fewer frames that have landmarks are left out.
        rotation: with augmentation, rotate each item by up to this many degrees
            (:attr:`AugmentConfig.rotation`; spec option ``rotate=DEG``).
        seed: base seed of the test split.
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        image_size: int = 256,
        num_refs: int = 3,
        *,
        augment: bool | AugmentConfig | None = None,
        repeats: int = 1,
        far_prob: float = 0.8,
        far_candidates: int = 12,
        ref_gap: int = 3,
        synthetic_prob: float = 0.3,
        use_stills: bool = True,
        stills_share: float = 0.25,
        motion: MotionConfig | None = None,
        min_frames: int | None = None,
        rotation: float = 0.0,
        seed: int = 0,
    ) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.root = Path(root)
        self.split = split
        self.image_size = int(image_size)
        self.num_refs = int(num_refs)
        self.augment = _resolve_augment(augment, split)
        if rotation and self.augment is not None:
            self.augment = dataclasses.replace(self.augment, rotation=float(rotation))
        self.repeats = max(1, int(repeats))
        self.far_prob = float(far_prob)
        self.far_candidates = max(1, int(far_candidates))
        self.ref_gap = int(ref_gap)
        self.synthetic_prob = float(synthetic_prob)
        self.motion = motion or MotionConfig()
        self.seed = int(seed)
        self.stills_share = float(stills_share)
        #: items replaced by another clip or portrait because a crop could not be read (this process)
        self.skipped = 0
        #: clips / portraits that failed at run time: "clip:I" or "still:I" -> reason
        self.bad: dict[str, str] = {}
        need = max(self.num_refs + 2, int(min_frames or 0))
        vdir, sdir = self.root / "videos", self.root / "stills"
        if not self.root.is_dir() or not (vdir.is_dir() or sdir.is_dir()):
            raise DatasetError(f"{self.root} is not a folder prepared by 'odecam prepare-faces' "
                               f"(no videos/ or stills/ inside); run odecam prepare-faces SRC --out {self.root}.")
        self.clips: list[_Clip] = []
        self.rejected: list[tuple[str, str]] = []
        for d in sorted(vdir.iterdir()) if vdir.is_dir() else []:
            if not d.is_dir() or d.name.startswith("."):
                continue
            lm = self._load_landmarks(d / "landmarks.npy", 3)
            if lm is None:
                self.rejected.append((str(d), "has no readable landmarks.npy of shape (T, 68, 2)"))
                continue
            n_jpg = sum(1 for _ in d.glob("*.jpg"))
            lm = lm[:n_jpg]
            if np.isfinite(lm).all(axis=(1, 2)).sum() < need:
                self.rejected.append((str(d), f"has fewer than {need} frames with a face"))
                continue
            person = d.name
            meta = d / "meta.json"
            if meta.is_file():
                try:
                    person = str(json.loads(meta.read_text()).get("person", person))
                except (ValueError, OSError):
                    pass
            self.clips.append(_Clip(d, lm, person))
        self.stills: list[tuple[Path, np.ndarray]] = []
        if use_stills and sdir.is_dir():
            for f in sorted(sdir.glob("*.jpg")):
                lm = self._load_landmarks(f.with_suffix(".npy"), 2)
                if lm is None or not np.isfinite(lm).all():
                    self.rejected.append((str(f), "has no usable landmarks (.npy of shape (68, 2))"))
                    continue
                self.stills.append((f, lm))
        for path, why in self.rejected:
            log.warning("dataset %s: skipping %s: it %s", self.root, path, why)
        if not self.clips and not self.stills:
            raise DatasetError(f"{self.root} holds no usable prepared clip or portrait "
                               f"({len(self.rejected)} rejected); run odecam prepare-faces again.")

    @staticmethod
    def _load_landmarks(path: Path, ndim: int) -> np.ndarray | None:
        try:
            a = np.load(path, allow_pickle=False)  # never unpickle
        except (OSError, ValueError):
            return None
        if a.ndim != ndim or a.shape[-2:] != (68, 2) or not np.issubdtype(a.dtype, np.floating):
            return None
        return a.astype(np.float32)

    # -- reading ------------------------------------------------------------------------------------
    def _read(self, path: Path, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A prepared crop at ``image_size`` and its landmarks moved to that size."""
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise DatasetError(f"{path} could not be decoded; run odecam prepare-faces again.")
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        size0 = img.shape[0]
        if img.shape[0] != self.image_size or img.shape[1] != self.image_size:
            interp = cv2.INTER_AREA if img.shape[0] > self.image_size else cv2.INTER_LINEAR
            img = cv2.resize(img, (self.image_size, self.image_size), interpolation=interp)
        return img, resize_landmarks(np.asarray(lm, np.float32), size0, self.image_size)

    # -- sampling -----------------------------------------------------------------------------------
    @property
    def num_clip_items(self) -> int:
        return len(self.clips) * self.repeats

    @property
    def num_still_items(self) -> int:
        if not self.stills:
            return 0
        if not self.clips:
            return len(self.stills) * self.repeats
        share = min(max(self.stills_share, 0.0), 0.95)
        return max(self.repeats, int(round(self.num_clip_items * share / (1.0 - share))))

    def __len__(self) -> int:
        return self.num_clip_items + self.num_still_items

    def sample_indices(self, clip: _Clip, rng: np.random.Generator, far: bool | None = None) -> np.ndarray:
        """Frame indices [source, refs..., driving] (N + 2,) of one item of ``clip`` (module docstring)."""
        n = len(clip)
        src = int(rng.choice(clip.valid))
        others = np.delete(np.arange(n), src)
        if far is None:
            far = rng.random() < self.far_prob
        cand = rng.choice(others, size=min(self.far_candidates, len(others)), replace=False)
        drv = far_driving_index(clip.signals, src, cand) if far else int(cand[0])
        pool = others[(others != drv) & (np.abs(others - drv) >= self.ref_gap)]
        if len(pool) < self.num_refs:
            pool = others[others != drv]
        refs = rng.choice(pool, size=self.num_refs, replace=False) if self.num_refs else np.zeros(0, int)
        return np.concatenate([[src], refs, [drv]]).astype(int)

    def _clip_item(self, clip: _Clip, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> frames (N + 2, S, S, 3), landmarks (N + 2, 68, 2), the driving frame's exact backward field
        from the source (G, G, 2), NaN unless the driving frame is synthetic motion of the source."""
        idx = self.sample_indices(clip, rng)
        frames, lms = map(list, zip(*(self._read(clip.folder / f"{int(t):05d}.jpg", clip.landmarks[t]) for t in idx)))
        field = _unknown_field()
        if rng.random() < self.synthetic_prob:
            # the driving frame becomes the source moved by synthetic motion; half the references too
            for k in [len(idx) - 1] + [1 + j for j in range(self.num_refs) if rng.random() < 0.5]:
                frames[k], lms[k], f = _synthesize_or_keep(frames[0], lms[0], random_motion(rng, self.motion))
                if k == len(idx) - 1:
                    field = f
        return np.stack(frames), np.stack(lms), field

    def _still_item(self, path: Path, lm: np.ndarray, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As :meth:`_clip_item`; the field is known when the source is the portrait itself."""
        img, lm = self._read(path, lm)
        frames, lms = [], []
        field = _unknown_field()
        source_moved = False
        for k in range(self.num_refs + 2):
            scale = 0.3 if k == 0 else 1.0
            m = random_motion(rng, self.motion, scale=scale) if (k > 0 or rng.random() < 0.5) else None
            if m is None:
                frames.append(img)
                lms.append(lm)
            else:
                f, l2, fld = _synthesize_or_keep(img, lm, m)
                frames.append(f)
                lms.append(l2)
                source_moved = source_moved or k == 0
                if k == self.num_refs + 1 and not source_moved:
                    field = fld
        return np.stack(frames), np.stack(lms), field

    def __getitem__(self, index: int) -> Item:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        rng = np.random.default_rng(_torch_seed() if self.split == "train" else [self.seed, index])
        units = [("clip", i) for i in range(len(self.clips))] + [("still", i) for i in range(len(self.stills))]
        if index < self.num_clip_items:
            first = index % len(self.clips)
        else:
            k = index - self.num_clip_items
            if self.split == "train":  # a portrait drawn at random: every one gets its turn over epochs
                k = int(rng.integers(len(self.stills)))
            first = len(self.clips) + k % len(self.stills)
        for attempt in range(len(units)):  # a corrupt crop: skip to the next clip / portrait, count it
            kind, i = units[(first + attempt) % len(units)]
            key = f"{kind}:{i}"
            if key in self.bad:
                continue
            try:
                if kind == "clip":
                    frames, lms, field = self._clip_item(self.clips[i], rng)
                else:
                    frames, lms, field = self._still_item(*self.stills[i], rng)
                break
            except (DatasetError, cv2.error, ValueError) as e:
                self.bad[key] = str(e)
                self.skipped += 1
                log.warning("dataset %s: skipping %s: %s", self.root, key, e)
        else:
            raise DatasetError(f"No prepared crop of {self.root} could be read ({len(self.bad)} failed).")
        if self.augment is not None:
            x, lms, field = self.augment.apply_with_geometry(frames, lms, field, rng)
            return _make_item(x, self.num_refs, lms, field)
        return _make_item(frames, self.num_refs, lms, field)

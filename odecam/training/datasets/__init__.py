"""Training data: real videos, prepared face crops with landmarks, procedural talking objects,
animated stills and landmark-guided synthetic motion -- one module per source.

Every dataset yields the same item, the sample of the paper's training setup (Sec. 3, Fig. 3): one
*source* frame S, ``N`` *reference* frames R^(j) and one *driving* frame D, all of ONE identity, so
that the generator can be trained to reconstruct D from S and the references (Eq. 7) while the
keypoint detector is regularised by the equivariance loss (Eq. 8); with face crops (and anything
mixed with them) also dlib's 68 landmarks of each frame, NaN where unknown
(:mod:`~odecam.training.datasets.common` gives the exact format)::

    {"source": (3, H, W), "driving": (3, H, W), "refs": (N, 3, H, W),            # float32 in [0, 1]
     "source_landmarks": (68, 2), "driving_landmarks": (68, 2), "refs_landmarks": (N, 68, 2)}

With a ``torch.utils.data.DataLoader`` the batch has shapes (B, 3, H, W), (B, N, 3, H, W), (B, 68, 2) ...

Modules
-------
* :mod:`.videos` -- :class:`VideoFolderDataset` (FOMM layout, folder of videos, or one video) and
  video decoding (:func:`read_video`, :func:`write_video`);
* :mod:`.faces` -- :class:`FaceCropDataset`: crops + landmarks prepared by ``odecam prepare-faces``,
  driving frames sampled far (in expression and pose) from the source, synthetic motion mixed in;
* :mod:`.landmark_motion` -- :class:`LandmarkMotion`: a portrait with landmarks made to open the
  mouth, blink and turn the head by a landmark-controlled thin-plate-spline warp;
* :mod:`.procedural` -- :class:`ProceduralTalkingObjects`;
* :mod:`.stills` -- :class:`StillImageAnimation` (smooth random warps of still photos);
* :func:`build_dataset` -- one entry point for all of the above and their mixtures
  (``torch.utils.data.ConcatDataset``).

``carphone_pristine.mp4`` is an evaluation clip: :func:`build_dataset` refuses it for training.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Sequence

from torch.utils.data import ConcatDataset, Dataset

from odecam.training.datasets.common import (  # noqa: F401 -- private names re-exported for old imports
    EVAL_ONLY_FILES, IMAGE_EXTS, VIDEO_EXTS, AugmentConfig, DatasetError, Item, PathLike, VideoDecodeError,
    _check_not_eval_only, _make_item, _resolve_augment, _square_resize, _to_tensor, _torch_seed,
)
from odecam.training.datasets.common import WithLandmarks
from odecam.training.datasets.faces import FaceCropDataset
from odecam.training.datasets.landmark_motion import MotionConfig, MotionParams, synthesize
from odecam.training.datasets.procedural import ProceduralTalkingObjects
from odecam.training.datasets.stills import StillImageAnimation, WarpConfig, default_still_images
from odecam.training.datasets.videos import VideoFolderDataset, _shot_segments, read_video, write_video  # noqa: F401

__all__ = [
    "DatasetError",
    "VideoDecodeError",
    "WarpConfig",
    "AugmentConfig",
    "VideoFolderDataset",
    "ProceduralTalkingObjects",
    "StillImageAnimation",
    "FaceCropDataset",
    "WithLandmarks",
    "MotionConfig",
    "MotionParams",
    "synthesize",
    "build_dataset",
    "skipped_count",
    "default_still_images",
    "read_video",
    "write_video",
    "EVAL_ONLY_FILES",
    "VIDEO_EXTS",
    "IMAGE_EXTS",
]


def build_dataset(
    spec: str | PathLike | Sequence[str | PathLike],
    *,
    split: str = "train",
    image_size: int = 256,
    num_refs: int = 3,
    seed: int = 0,
    augment: bool | AugmentConfig | None = None,
    allow_eval_only: bool = False,
    **kwargs: Any,
) -> Dataset:
    """Build a dataset from a spec string, a path, or a list of specs (mixed with ConcatDataset).

    Spec grammar (several joined with ``'+'`` or given as a list are concatenated):

    * ``'procedural'`` or ``'procedural:LENGTH'`` -- :class:`ProceduralTalkingObjects` (the test
      split uses a different seed);
    * ``'stills'`` (scikit-image's astronaut) or ``'stills:PATH[,PATH...]'`` (images, videos or
      frame folders to take stills from) -- :class:`StillImageAnimation`;
    * ``'faces:DIR'`` -- :class:`FaceCropDataset`: crops and landmarks written by ``odecam
      prepare-faces`` (far driving frames, landmark-guided synthetic motion, portraits); options
      ``faces:DIR,synthetic=P,far=P,stills=SHARE,candidates=N,rotate=DEG`` set ``synthetic_prob``,
      ``far_prob``, ``stills_share``, ``far_candidates`` and ``rotation`` (whole-item tilt, degrees);
    * any existing path -- :class:`VideoFolderDataset` (FOMM layout, folder of videos, or a file).

    Extra keyword arguments go to :class:`VideoFolderDataset` (e.g. ``repeats``, ``cache_bytes``) and
    those it accepts to :class:`FaceCropDataset` (e.g. ``repeats``, ``synthetic_prob``). When a
    mixture holds face crops, the other datasets are wrapped in :class:`WithLandmarks` (NaN landmarks).
    The evaluation-only clip (``carphone_pristine``) is refused for ``split='train'`` unless
    ``allow_eval_only``.

    Returns:
        a ``Dataset`` whose items are ``{'source', 'refs', 'driving'}`` (+ landmarks with face crops;
        see the module docstring).
    """
    if isinstance(spec, (list, tuple)):
        parts = [build_dataset(s, split=split, image_size=image_size, num_refs=num_refs, seed=seed + 7919 * i,
                               augment=augment, allow_eval_only=allow_eval_only, **kwargs)
                 for i, s in enumerate(spec)]
        if len(parts) == 1:
            return parts[0]
        if any(_has_landmarks(d) for d in parts):  # NaN landmarks for the others, so batches collate
            parts = [d if _has_landmarks(d) else WithLandmarks(d) for d in parts]
        return ConcatDataset(parts)
    s = os.fspath(spec)
    if not Path(s).exists() and "+" in s:
        return build_dataset([x for x in s.split("+") if x], split=split, image_size=image_size,
                             num_refs=num_refs, seed=seed, augment=augment, allow_eval_only=allow_eval_only, **kwargs)
    head, _, arg = s.partition(":")
    test_seed = seed + 1_000_003 if split == "test" else seed
    if head == "procedural" and not Path(s).exists():
        length = int(arg) if arg else (10000 if split == "train" else 200)
        return ProceduralTalkingObjects(length, image_size, num_refs, test_seed)
    if head == "stills" and not Path(s).exists():
        paths = [Path(x) for x in arg.split(",") if x] if arg else None
        for p in paths or []:
            _check_not_eval_only(p, split, allow_eval_only)
        aug = _resolve_augment(augment, split)
        return StillImageAnimation(paths, kwargs.pop("length", None), image_size, num_refs, test_seed, augment=aug or False)
    if head == "faces" and not Path(s).exists():
        if not arg:
            raise DatasetError("The dataset spec 'faces' needs a folder: faces:DIR, DIR written by odecam prepare-faces.")
        path, *opts = arg.split(",")
        root = Path(path)
        if not root.exists():
            raise DatasetError(f"The prepared face folder {root} does not exist; run odecam prepare-faces SRC --out {root}.")
        _check_not_eval_only(root, split, allow_eval_only)
        known = inspect.signature(FaceCropDataset.__init__).parameters
        extra = {k: v for k, v in kwargs.items() if k in known}
        names = {"synthetic": "synthetic_prob", "far": "far_prob", "stills": "stills_share", "candidates": "far_candidates",
                 "rotate": "rotation"}
        for opt in opts:
            key, _, value = opt.partition("=")
            if key not in names or not value:
                raise DatasetError(f"Unknown option {opt!r} in {s!r}: use faces:DIR[,synthetic=P][,far=P][,stills=SHARE]"
                                   f"[,candidates=N][,rotate=DEG], e.g. faces:{path},synthetic=0.5.")
            try:
                extra[names[key]] = int(value) if key == "candidates" else float(value)
            except ValueError:
                raise DatasetError(f"{opt!r} in {s!r} needs a number, e.g. {key}=0.5.") from None
        return FaceCropDataset(root, split, image_size, num_refs, augment=augment, seed=test_seed, **extra)
    p = Path(s)
    if not p.exists():
        raise DatasetError(f"Unknown dataset spec {s!r}: not 'procedural', 'stills', 'faces:DIR' or an existing path.")
    _check_not_eval_only(p, split, allow_eval_only)
    return VideoFolderDataset(p, split, image_size, num_refs, augment=augment, seed=seed, **kwargs)


def _has_landmarks(ds: Dataset) -> bool:
    if isinstance(ds, ConcatDataset):
        return all(_has_landmarks(d) for d in ds.datasets)
    return isinstance(ds, (FaceCropDataset, WithLandmarks))


def skipped_count(ds: Dataset) -> int:
    """Total ``skipped`` items of a dataset, summed over ConcatDataset members."""
    if isinstance(ds, ConcatDataset):
        return sum(skipped_count(d) for d in ds.datasets)
    return int(getattr(ds, "skipped", 0))

"""Training data: real videos, procedural talking objects and animated stills.

Every dataset here yields the same item, the sample of the paper's training setup (Sec. 3, Fig. 3):
one *source* frame S, ``N`` *reference* frames R^(j) and one *driving* frame D, all drawn from ONE
video (same identity), so that the generator can be trained to reconstruct D from S and the
references (Eq. 7) while the keypoint detector is regularised by the equivariance loss (Eq. 8)::

    {
        "source":  float32 tensor (3, H, W) in [0, 1],
        "driving": float32 tensor (3, H, W) in [0, 1],
        "refs":    float32 tensor (N, 3, H, W) in [0, 1],   # N = num_refs, may be 0
    }

With a ``torch.utils.data.DataLoader`` the batch has shapes (B, 3, H, W) and (B, N, 3, H, W).

Datasets
--------
* :class:`VideoFolderDataset` -- the First Order Motion Model layout (``root/train``, ``root/test``
  holding videos ``.mp4/.avi/.mov/.mkv/.webm/.gif``, folders of frames ``.png/.jpg``, or FOMM's
  "strip" images: frames concatenated horizontally in one ``.png``), or a plain folder of videos, or
  a single video file. Validates at construction (raises :class:`DatasetError`), decodes each video
  once into a uint8 cache with a memory cap, skips and counts corrupt items at run time.
* :class:`ProceduralTalkingObjects` -- unlimited, offline, seeded cartoon talking heads (and other
  articulated shapes) rendered with OpenCV: head pose with real (orthographic, ellipsoidal) yaw and
  pitch, roll, scale, translation, blinking eyes with gaze, eyebrows, a talking mouth with teeth,
  nose, hair, ears, neck and shoulders, Lambert shading with a moving light, textured skin,
  clothes and backgrounds.
* :class:`StillImageAnimation` -- pseudo-videos from still photos by smooth random affine +
  thin-plate-spline warps (``cv2.remap``).
* :func:`build_dataset` -- one entry point for all of the above and their mixtures
  (``torch.utils.data.ConcatDataset``).

``carphone_pristine.mp4`` is an evaluation clip: :func:`build_dataset` refuses it for training.
"""

from __future__ import annotations

import logging
import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

import cv2
import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

try:  # tqdm is a declared dependency; keep the module importable without it anyway.
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover
    tqdm = None  # type: ignore[assignment]

__all__ = [
    "DatasetError",
    "VideoDecodeError",
    "WarpConfig",
    "AugmentConfig",
    "VideoFolderDataset",
    "ProceduralTalkingObjects",
    "StillImageAnimation",
    "build_dataset",
    "skipped_count",
    "default_still_images",
    "read_video",
    "write_video",
    "EVAL_ONLY_FILES",
    "VIDEO_EXTS",
    "IMAGE_EXTS",
]

log = logging.getLogger(__name__)

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


def _make_item(frames: np.ndarray, num_refs: int) -> Item:
    """Frames ordered [source, refs..., driving] (K = N + 2, H, W, 3) -> the item dict."""
    t = _to_tensor(frames)
    return {"source": t[0], "refs": t[1 : 1 + num_refs], "driving": t[1 + num_refs]}


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

    def apply(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(K, H, W, 3) uint8 RGB -> augmented (K, H, W, 3) float32 RGB in [0, 1]."""
        x = frames.astype(np.float32) / 255.0
        if rng.random() < self.flip_prob:
            x = x[:, :, ::-1]
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
        return np.clip(x, 0.0, 1.0)


def _resolve_augment(augment: bool | AugmentConfig | None, split: str) -> AugmentConfig | None:
    if augment is None:
        return AugmentConfig() if split == "train" else None
    if augment is True:
        return AugmentConfig()
    if augment is False:
        return None
    return augment


# ----------------------------------------------------------------------------------------------
# Video reading / writing
# ----------------------------------------------------------------------------------------------


def _is_video(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in VIDEO_EXTS


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTS


def _frame_files(d: Path) -> list[Path]:
    return sorted(q for q in d.iterdir() if _is_image(q))


def read_video(
    path: PathLike,
    image_size: int | None = None,
    crop: str = "center",
    max_frames: int | None = None,
) -> np.ndarray:
    """Decode a whole video (any layout :class:`VideoFolderDataset` accepts) to RGB uint8.

    Args:
        path: video file, folder of frames, or a horizontal strip image of square frames.
        image_size: if given, every frame is cropped/resized to (image_size, image_size).
        crop: ``'center'`` square crop or ``'resize'`` (squash) when resizing.
        max_frames: keep at most this many frames, evenly spaced.

    Returns:
        (T, H, W, 3) uint8 RGB.

    Raises:
        VideoDecodeError: if nothing (or a corrupt frame) could be decoded.
    """
    p = Path(path)

    def post(f: np.ndarray) -> np.ndarray:
        return _square_resize(f, image_size, crop) if image_size else f

    frames: list[np.ndarray] = []
    if p.is_dir():
        files = _frame_files(p)
        if max_frames and len(files) > max_frames:
            files = [files[i] for i in np.linspace(0, len(files) - 1, max_frames).round().astype(int)]
        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise VideoDecodeError(f"frame {f.name} of {p} could not be decoded")
            frames.append(post(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)))
    elif p.suffix.lower() in IMAGE_EXTS:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise VideoDecodeError(f"{p} could not be decoded")
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        h, w = img.shape[:2]
        if w % h != 0:
            raise VideoDecodeError(f"{p} is not a strip of square frames (width {w} is not a multiple of height {h})")
        frames = [post(img[:, i * h : (i + 1) * h]) for i in range(w // h)]
    elif p.suffix.lower() == ".gif":
        from PIL import Image, ImageSequence  # pillow comes with scikit-image

        try:
            with Image.open(p) as im:
                for fr in ImageSequence.Iterator(im):
                    frames.append(post(np.asarray(fr.convert("RGB"))))
        except Exception as e:  # noqa: BLE001 -- any decoder error is a decode failure
            raise VideoDecodeError(f"{p} could not be decoded: {e}") from e
    else:
        cap = cv2.VideoCapture(str(p))
        try:
            if not cap.isOpened():
                raise VideoDecodeError(f"{p} could not be opened")
            while True:
                ok, f = cap.read()
                if not ok or f is None:
                    break
                frames.append(post(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)))
        finally:
            cap.release()
    if not frames:
        raise VideoDecodeError(f"no frame of {p} could be decoded")
    if max_frames and len(frames) > max_frames:
        idx = np.linspace(0, len(frames) - 1, max_frames).round().astype(int)
        frames = [frames[i] for i in idx]
    return np.stack(frames)


def write_video(path: PathLike, frames: np.ndarray | Sequence[np.ndarray], fps: float = 25.0) -> Path:
    """Write (T, H, W, 3) uint8 RGB frames with OpenCV (``.mp4``: mp4v, ``.avi``: MJPG).

    Returns the path. Raises ``RuntimeError`` if OpenCV cannot open a writer.
    """
    p = Path(path)
    frames = [np.asarray(f) for f in frames]
    h, w = frames[0].shape[:2]
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if p.suffix.lower() == ".avi" else "mp4v"))
    wr = cv2.VideoWriter(str(p), fourcc, float(fps), (w, h))
    if not wr.isOpened():
        raise RuntimeError(f"OpenCV could not open a video writer for {p}")
    try:
        for f in frames:
            if f.dtype != np.uint8:
                f = (np.clip(f, 0, 1) * 255 + 0.5).astype(np.uint8)
            wr.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    finally:
        wr.release()
    return p


@dataclass
class _Probe:
    path: Path
    num_frames: int | None  # None: unknown until decoded
    error: str | None = None


def _probe(p: Path) -> _Probe:
    """Cheap validity check of one video item (opens it, reads its length, decodes one frame)."""
    try:
        if p.is_dir():
            n = len(_frame_files(p))
            return _Probe(p, n, None if n else "holds no frames")
        if p.suffix.lower() in IMAGE_EXTS:
            from PIL import Image

            with Image.open(p) as im:
                w, h = im.size
            if h == 0 or w % h != 0:
                return _Probe(p, None, f"is not a strip of square frames ({w}x{h})")
            return _Probe(p, w // h)
        if p.suffix.lower() == ".gif":
            from PIL import Image

            with Image.open(p) as im:
                return _Probe(p, int(getattr(im, "n_frames", 1)))
        cap = cv2.VideoCapture(str(p))
        try:
            if not cap.isOpened():
                return _Probe(p, None, "could not be opened")
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            ok, f = cap.read()
            if not ok or f is None:
                return _Probe(p, None, "has no decodable frame")
        finally:
            cap.release()
        return _Probe(p, n if n > 0 else None)
    except Exception as e:  # noqa: BLE001
        return _Probe(p, None, f"could not be read ({e})")


# ----------------------------------------------------------------------------------------------
# VideoFolderDataset
# ----------------------------------------------------------------------------------------------


@dataclass
class _Decoded:
    frames: np.ndarray  # (T, S, S, 3) uint8
    segments: list[np.ndarray]  # frame indices of usable shots

    @property
    def nbytes(self) -> int:
        return int(self.frames.nbytes)


def _shot_segments(
    frames: np.ndarray, min_len: int, dark_threshold: float, cut_threshold: float | None
) -> list[np.ndarray]:
    """Split a (T, H, W, 3) uint8 video into usable shots.

    Frames darker than ``dark_threshold`` (mean of 0-255) are dropped (e.g. Megamind's black opening
    frame); ``cut_threshold`` (mean absolute difference of consecutive frames at 64x64, 0-255) marks
    shot cuts. Returns the index arrays of shots with at least ``min_len`` frames.
    """
    small = np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in frames]).astype(np.float32)
    bright = small.mean(axis=(1, 2, 3)) >= dark_threshold
    cut = np.zeros(len(frames), bool)
    if cut_threshold is not None and len(frames) > 1:
        d = np.abs(np.diff(small, axis=0)).mean(axis=(1, 2, 3))
        cut[1:] = d > cut_threshold
    segments: list[np.ndarray] = []
    cur: list[int] = []
    for i in range(len(frames)):
        if not bright[i] or cut[i]:
            if len(cur) >= min_len:
                segments.append(np.array(cur))
            cur = [i] if bright[i] else []
        else:
            cur.append(i)
    if len(cur) >= min_len:
        segments.append(np.array(cur))
    return segments


class VideoFolderDataset(Dataset):
    """Videos in the First Order Motion Model layout, one (source, refs, driving) sample per item.

    Accepted ``root``:

    * ``root/train`` and ``root/test`` folders (FOMM layout; ``split`` picks one), each holding
      videos (``.mp4 .avi .mov .mkv .webm .m4v .gif``), folders of frames (``.png .jpg ...``, sorted
      by name) or FOMM "strip" images (square frames concatenated horizontally in one image);
    * a plain folder of such videos (no train/test: all of them are used whatever ``split`` is);
    * a single video file.

    Each item samples ``num_refs + 2`` distinct frames of ONE video: the source, ``num_refs``
    references and the driving frame (paper Sec. 3, Fig. 3). Frames come from one shot: dark frames
    are ignored and, with ``split_shots``, shot cuts split a video (Megamind has both).

    Item: ``{'source': (3, S, S), 'refs': (N, 3, S, S), 'driving': (3, S, S)}``, float32 in [0, 1].

    Validation happens at construction (a progress bar appears when scanning is slow): an empty or
    unreadable dataset, or a video shorter than ``num_refs + 2`` frames, raises
    :class:`DatasetError` (with ``skip_short=True`` short videos are dropped instead). Single files
    that cannot be opened are dropped and listed in ``rejected`` as long as some remain. With
    ``validate='full'`` every video is decoded (and cached) at construction.

    At run time a video that fails to decode (corrupt frame, truncated stream) is marked bad, the
    item is replaced by one from another video and ``skipped`` is incremented (per process: with
    DataLoader workers each worker counts its own), training goes on.

    Decoded videos are cached as (T, S, S, 3) uint8 arrays (already resized), least recently used
    first out once ``cache_bytes`` is exceeded.

    Args:
        root: dataset root, folder of videos, or a video file.
        split: ``'train'`` (random frames per call, augmentation on by default) or ``'test'``
            (deterministic frames per index, no augmentation by default).
        image_size: output side S.
        num_refs: number of reference frames N.
        crop: ``'center'`` square crop or ``'resize'`` (squash) of non-square frames.
        augment: ``True``/``False``/:class:`AugmentConfig`; ``None``: on for train, off for test.
        repeats: the dataset length is ``len(videos) * repeats`` (FOMM's ``num_repeats``).
        cache_bytes: memory cap of the decoded-frame cache.
        max_frames: decode at most this many (evenly spaced) frames per video.
        split_shots: split videos at shot cuts; ``cut_threshold`` sets the sensitivity.
        dark_threshold: frames with mean intensity (0-255) below this are never sampled.
        validate: ``'probe'`` (open each video, read its length) or ``'full'`` (decode all).
        skip_short: drop videos shorter than ``num_refs + 2`` frames instead of raising.
        seed: base seed of the deterministic test-split sampling.
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        image_size: int = 256,
        num_refs: int = 3,
        *,
        crop: str = "center",
        augment: bool | AugmentConfig | None = None,
        repeats: int = 1,
        cache_bytes: int = 1 << 30,
        max_frames: int | None = None,
        split_shots: bool = True,
        cut_threshold: float = 20.0,
        dark_threshold: float = 8.0,
        validate: str = "probe",
        skip_short: bool = False,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if num_refs < 0:
            raise ValueError("num_refs must be >= 0")
        if validate not in ("probe", "full"):
            raise ValueError("validate must be 'probe' or 'full'")
        self.root = Path(root)
        self.split = split
        self.image_size = int(image_size)
        self.num_refs = int(num_refs)
        self.crop = crop
        self.augment = _resolve_augment(augment, split)
        self.repeats = max(1, int(repeats))
        self.cache_bytes = int(cache_bytes)
        self.max_frames = max_frames
        self.split_shots = split_shots
        self.cut_threshold = cut_threshold
        self.dark_threshold = dark_threshold
        self.seed = int(seed)
        #: items replaced by another one because their video failed to decode (this process)
        self.skipped: int = 0
        #: videos that failed to decode at run time: path -> reason
        self.bad_videos: dict[str, str] = {}
        #: files dropped at construction: (path, reason)
        self.rejected: list[tuple[str, str]] = []
        self._cache: OrderedDict[str, _Decoded] = OrderedDict()
        self._cache_used = 0

        candidates = self._list_candidates()
        need = self.num_refs + 2
        probes: list[_Probe] = []
        it: Iterable[Path] = candidates
        if progress and tqdm is not None:
            it = tqdm(candidates, desc=f"scanning {self.root.name}", unit="video", delay=2.0, leave=False)
        for p in it:
            pr = _probe(p)
            if pr.error is None and validate == "full":
                try:
                    dec = self._decode(p)
                    pr.num_frames = len(dec.frames)
                    if not dec.segments and len(dec.frames) >= need:
                        pr.error = f"has no shot of {need} usable (non-dark) frames"
                except VideoDecodeError as e:
                    pr.error = f"could not be decoded ({e})"
            probes.append(pr)

        good = [pr for pr in probes if pr.error is None]
        self.rejected = [(str(pr.path), pr.error or "") for pr in probes if pr.error is not None]
        for path, why in self.rejected:
            log.warning("dataset %s: skipping %s: it %s", self.root, path, why)
        if not good:
            if not candidates:
                raise DatasetError(f"The dataset at {self.root} holds no videos (looked for {', '.join(VIDEO_EXTS)}, frame folders and strip images).")
            raise DatasetError(
                f"No video in {self.root} could be read ({len(self.rejected)} tried; "
                f"e.g. {Path(self.rejected[0][0]).name} {self.rejected[0][1]})."
            )
        short = [pr for pr in good if pr.num_frames is not None and pr.num_frames < need]
        if short and not skip_short:
            pr = short[0]
            raise DatasetError(
                f"Video {pr.path} has {pr.num_frames} frames but each item needs at least {need} "
                f"(source + {self.num_refs} references + driving)"
                + (f"; {len(short) - 1} more are too short." if len(short) > 1 else ".")
            )
        for pr in short:
            self.rejected.append((str(pr.path), f"is too short ({pr.num_frames} < {need} frames)"))
        good = [pr for pr in good if pr not in short]
        if not good:
            raise DatasetError(f"Every video in {self.root} is shorter than {need} frames.")
        self.videos: list[Path] = [pr.path for pr in good]
        self.num_frames: list[int | None] = [pr.num_frames for pr in good]

    # -- listing --------------------------------------------------------------------------------
    def _list_candidates(self) -> list[Path]:
        r = self.root
        if not r.exists():
            raise DatasetError(f"The dataset path {r} does not exist.")
        if r.is_file():
            if r.suffix.lower() not in VIDEO_EXTS + IMAGE_EXTS:
                raise DatasetError(f"{r} is not a video file (expected one of {', '.join(VIDEO_EXTS)}).")
            return [r]
        if (r / "train").is_dir() or (r / "test").is_dir():
            d = r / self.split
            if not d.is_dir():
                raise DatasetError(f"The dataset at {r} has no '{self.split}' folder.")
        else:
            d = r
        entries = sorted(d.iterdir())
        videos = [q for q in entries if _is_video(q) or _is_image(q) or (q.is_dir() and _frame_files(q))]
        images = [q for q in entries if _is_image(q)]
        if d == r and images and not any(_is_video(q) or q.is_dir() for q in entries):
            # Only images: FOMM strips (square frames side by side) or the frames of ONE video.
            if not self._looks_like_strip(images[0]):
                return [d]
        return videos

    @staticmethod
    def _looks_like_strip(p: Path) -> bool:
        try:
            from PIL import Image

            with Image.open(p) as im:
                w, h = im.size
            return h > 0 and w > h and w % h == 0
        except Exception:  # noqa: BLE001
            return False

    # -- decoding & cache -----------------------------------------------------------------------
    def _decode(self, p: Path) -> _Decoded:
        key = str(p)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        try:
            frames = read_video(p, self.image_size, self.crop, self.max_frames)
        except VideoDecodeError:
            raise
        except (cv2.error, OSError, ValueError, MemoryError) as e:
            raise VideoDecodeError(f"{p} could not be decoded ({type(e).__name__}: {e})") from e
        segs = _shot_segments(
            frames, self.num_refs + 2, self.dark_threshold, self.cut_threshold if self.split_shots else None
        )
        dec = _Decoded(frames, segs)
        if dec.nbytes <= self.cache_bytes:
            self._cache[key] = dec
            self._cache_used += dec.nbytes
            while self._cache_used > self.cache_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cache_used -= old.nbytes
        return dec

    def get_video(self, index: int) -> np.ndarray:
        """All decoded frames of video ``index`` (not item index): (T, S, S, 3) uint8 RGB."""
        return self._decode(self.videos[index]).frames

    @property
    def cache_nbytes(self) -> int:
        """Bytes held by the decoded-frame cache."""
        return self._cache_used

    # -- items ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.videos) * self.repeats

    def _sample(self, vid: int, rng: np.random.Generator) -> Item:
        dec = self._decode(self.videos[vid])
        need = self.num_refs + 2
        segs = dec.segments
        if not segs:
            raise VideoDecodeError(f"{self.videos[vid]} has no shot of {need} usable frames after decoding")
        lens = np.array([len(s) for s in segs], np.float64)
        seg = segs[rng.choice(len(segs), p=lens / lens.sum())]
        idx = rng.choice(seg, size=need, replace=False)
        frames = dec.frames[idx]
        if self.augment is not None:
            return _make_item(self.augment.apply(frames, rng), self.num_refs)
        return _make_item(frames, self.num_refs)

    def __getitem__(self, index: int) -> Item:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        n = len(self.videos)
        vid = index % n
        if self.split == "train":
            rng = np.random.default_rng(_torch_seed())
        else:
            rng = np.random.default_rng([self.seed, index])
        for attempt in range(n):
            v = (vid + attempt) % n
            key = str(self.videos[v])
            if key in self.bad_videos:
                if attempt == 0:
                    self.skipped += 1
                continue
            try:
                return self._sample(v, rng)
            except VideoDecodeError as e:
                self.bad_videos[key] = str(e)
                if attempt == 0:
                    self.skipped += 1
                log.warning("dataset %s: skipping item %d: %s", self.root, index, e)
        raise DatasetError(f"No video of {self.root} could be decoded ({len(self.bad_videos)} failed).")


# ----------------------------------------------------------------------------------------------
# Procedural talking objects
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Still-image animation
# ----------------------------------------------------------------------------------------------


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


def _tps_solve(ctrl: np.ndarray, target: np.ndarray) -> np.ndarray:
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


def _tps_eval(coef: np.ndarray, ctrl: np.ndarray, pts: np.ndarray) -> np.ndarray:
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
        coef = _tps_solve(self._ctrl, self._ctrl + f_tps(t))
        src = _tps_eval(coef, self._ctrl, self._coarse)
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


# ----------------------------------------------------------------------------------------------
# build_dataset
# ----------------------------------------------------------------------------------------------


def _check_not_eval_only(p: Path, split: str, allow_eval_only: bool) -> None:
    if split == "train" and not allow_eval_only and any(n in p.name for n in EVAL_ONLY_FILES):
        raise DatasetError(f"{p.name} is an evaluation-only clip and must not be used for training.")
    if split == "train" and not allow_eval_only and p.is_dir():
        for q in p.rglob("*"):
            if any(n in q.name for n in EVAL_ONLY_FILES):
                raise DatasetError(f"{q} is an evaluation-only clip and must not be used for training.")


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
    * any existing path -- :class:`VideoFolderDataset` (FOMM layout, folder of videos, or a file).

    Extra keyword arguments go to :class:`VideoFolderDataset` (e.g. ``repeats``, ``cache_bytes``).
    The evaluation-only clip (``carphone_pristine``) is refused for ``split='train'`` unless
    ``allow_eval_only``.

    Returns:
        a ``Dataset`` whose items are ``{'source', 'refs', 'driving'}`` (see module docstring).
    """
    if isinstance(spec, (list, tuple)):
        parts = [build_dataset(s, split=split, image_size=image_size, num_refs=num_refs, seed=seed + 7919 * i,
                               augment=augment, allow_eval_only=allow_eval_only, **kwargs)
                 for i, s in enumerate(spec)]
        return parts[0] if len(parts) == 1 else ConcatDataset(parts)
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
    p = Path(s)
    if not p.exists():
        raise DatasetError(f"Unknown dataset spec {s!r}: not 'procedural', 'stills' or an existing path.")
    _check_not_eval_only(p, split, allow_eval_only)
    return VideoFolderDataset(p, split, image_size, num_refs, augment=augment, seed=seed, **kwargs)


def skipped_count(ds: Dataset) -> int:
    """Total ``skipped`` items of a dataset, summed over ConcatDataset members."""
    if isinstance(ds, ConcatDataset):
        return sum(skipped_count(d) for d in ds.datasets)
    return int(getattr(ds, "skipped", 0))

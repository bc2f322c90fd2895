"""Real videos: decoding (:func:`read_video`, :func:`write_video`) and :class:`VideoFolderDataset`.

Item format: :mod:`odecam.training.datasets.common` (landmarks are NaN: none are known here).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
from torch.utils.data import Dataset

from odecam.training.datasets.common import (
    IMAGE_EXTS, VIDEO_EXTS, AugmentConfig, DatasetError, Item, PathLike, VideoDecodeError, _frame_files,
    _is_image, _is_video, _make_item, _resolve_augment, _square_resize, _torch_seed, tqdm,
)

__all__ = ["read_video", "write_video", "VideoFolderDataset"]

log = logging.getLogger(__name__)


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

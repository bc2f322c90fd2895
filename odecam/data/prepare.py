"""Offline face-crop preparation for training (``odecam prepare-faces``).

For every talking-head video the face is found with dlib's HOG detector and dlib's 68-point shape
predictor (the ``face-recognition-models`` wheel, as in :mod:`odecam.evaluation.metrics`). The
video is split into shots (dark frames dropped, cuts detected, as :class:`VideoFolderDataset` does)
and each shot gets ONE fixed square crop that holds the face through the shot, like the crops of
FOMM's VoxCeleb data -- the face does move inside the crop, which is the motion the model learns.

Margins are those of a still portrait's crop (:func:`odecam.engine.portrait.frame_portrait`) and of
``live``'s webcam framing: the defaults of :class:`odecam.realtime.framing.FramingConfig`, read at
import (1.9 and -0.05 when this was written): the square's side is ``face_scale`` sides of dlib's
(tight, brows-to-chin) face box -- about 1.6-1.7 sides of a looser head box such as FOMM's --
centred ``-face_offset_y`` face sides above the face centre. For a shot the face box is the median
over the frames, and the side grows where needed so every detected face box of the shot stays inside
with a margin of ``hold_margin`` = 0.1 face sides; the square is shifted (never padded) to stay
inside the frame and is at most the frame's short side.

Output layout (``DIR``)::

    DIR/videos/NAME/00000.jpg ...   # (size x size) RGB crops, JPEG quality 95
    DIR/videos/NAME/landmarks.npy   # (T, 68, 2) float32, [-1, 1] crop coordinates, NaN = no face
    DIR/videos/NAME/meta.json       # source, frame indices, crop box, fps, person id (manifest)
    DIR/stills/NAME.jpg             # a portrait's crop
    DIR/stills/NAME.npy             # (68, 2) float32
    DIR/prepared.json               # the sources done so far (a rerun skips them) and the settings

Landmark coordinates follow :mod:`odecam.data.landmarks` (the model's ``align_corners=True``
convention: -1 / +1 are the centres of the border pixels). ``NAME`` is the video's file stem, with ``__shotNN`` appended when a video has several
usable shots. Evaluation-only files (carphone) are refused.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from odecam.data.landmarks import NUM_LANDMARKS, missing_landmarks, pixels_to_normalised
from odecam.realtime.framing import FramingConfig

__all__ = ["PrepareConfig", "PrepareError", "list_sources", "prepare_video", "prepare_still", "prepare_all",
           "landmark_model", "detect_landmarks"]

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".gif")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
#: file stems that are evaluation-only (see /work/shared/data/README.md): never prepared for training
EVAL_ONLY_STEMS = ("carphone_pristine",)


class PrepareError(ValueError):
    """A bad input for preparation (missing path, evaluation-only file, nothing to do)."""


@dataclass
class PrepareConfig:
    """Settings of :func:`prepare_all` (see the module docstring for the crop margins)."""

    size: int = 256
    max_frames_per_clip: int = 300
    face_scale: float = FramingConfig.face_scale
    face_offset_y: float = FramingConfig.face_offset_y
    hold_margin: float = 0.1
    detect_height: int = 320
    min_shot_frames: int = 16
    min_face_rate: float = 0.5
    dark_threshold: float = 8.0
    cut_threshold: float = 20.0
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if self.size < 32:
            raise ValueError(f"size must be at least 32 pixels, got {self.size}")
        if self.max_frames_per_clip < 2:
            raise ValueError("max_frames_per_clip must be at least 2")


# ----------------------------------------------------------------------------------------------
# dlib
# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def landmark_model():
    """``(detector, shape_predictor)`` of dlib, built once per process."""
    import dlib

    from odecam.evaluation.metrics import dlib_model_paths

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(dlib_model_paths()["landmarks68"]))


def _detect_box(grey: np.ndarray, rows: int, upsample_retry: bool) -> tuple[float, float, float, float] | None:
    """Largest face box ``(x0, y0, x1, y1)`` in ``grey`` pixels, detected on a copy ``rows`` high."""
    det, _ = landmark_model()
    h, w = grey.shape[:2]
    scale = rows / float(h)
    small = grey if abs(scale - 1) < 1e-6 else cv2.resize(
        grey, (max(1, round(w * scale)), rows), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    for up in ((0, 1) if upsample_retry else (0,)):
        rects = det(small, up)
        if len(rects):
            r = max(rects, key=lambda r: r.width() * r.height())
            return (r.left() / scale, r.top() / scale, (r.right() + 1) / scale, (r.bottom() + 1) / scale)
    return None


def _shape(grey: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """dlib's 68 landmarks inside ``box``: (68, 2) float64 pixel coordinates of ``grey``."""
    import dlib

    _, sp = landmark_model()
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    s = sp(grey, dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
    return np.array([[s.part(i).x, s.part(i).y] for i in range(NUM_LANDMARKS)], np.float64)


def detect_landmarks(rgb: np.ndarray, rows: int | None = None) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB -> dlib's 68 landmarks of the largest face in pixels (68, 2), or None."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    rows = rows or int(min(max(grey.shape[0], 320), 1024))
    box = _detect_box(grey, rows, upsample_retry=True)
    return None if box is None else _shape(grey, box)


# ----------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------


def _check_not_eval_only(p: Path) -> None:
    if p.stem in EVAL_ONLY_STEMS:
        raise PrepareError(f"{p} is an evaluation-only clip and is never prepared for training; leave it out "
                           f"(list the other files instead of their folder).")


def list_sources(paths: list[str | os.PathLike], exclude: tuple[str, ...] | list[str] = ()) -> tuple[list[Path], list[Path]]:
    """Expand files and folders (searched recursively) into ``(videos, stills)``, sorted; files whose name
    matches one of the ``exclude`` globs (``fnmatch``, e.g. ``"*driving__d6.mp4"``: clips held out for
    evaluation) are left out.

    Raises :class:`PrepareError` for a missing path, an evaluation-only file (also inside a folder),
    a file that is neither video nor image, or when nothing usable is found.
    """
    videos: list[Path] = []
    stills: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise PrepareError(f"{p} does not exist; give video files, portrait images or folders of them.")
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for q in files:
            ext = q.suffix.lower()
            if ext not in VIDEO_EXTS + IMAGE_EXTS:
                if not p.is_dir():
                    raise PrepareError(f"{q} is neither a video ({', '.join(VIDEO_EXTS)}) nor an image "
                                       f"({', '.join(IMAGE_EXTS)}).")
                continue
            _check_not_eval_only(q)
            if any(fnmatch.fnmatch(q.name, pat) for pat in exclude):
                continue
            (videos if ext in VIDEO_EXTS else stills).append(q)
    if not videos and not stills:
        raise PrepareError(f"no video or image found in {', '.join(map(str, paths))}.")
    return sorted(set(videos)), sorted(set(stills))


@functools.lru_cache(maxsize=16)
def _manifest(folder: str) -> dict[str, str]:
    """``{file name: person id}`` from a ``MANIFEST.tsv`` in ``folder`` or its parent (if any)."""
    for d in (Path(folder), Path(folder).parent):
        m = d / "MANIFEST.tsv"
        if m.is_file():
            out = {}
            lines = m.read_text(encoding="utf-8", errors="replace").splitlines()
            head = lines[0].split("\t") if lines else []
            if "file" in head and "person" in head:
                fi, pi = head.index("file"), head.index("person")
                for line in lines[1:]:
                    cols = line.split("\t")
                    if len(cols) > max(fi, pi):
                        out[Path(cols[fi]).name] = cols[pi]
            return out
    return {}


def _person(p: Path) -> str:
    return _manifest(str(p.parent)).get(p.name, p.stem)


# ----------------------------------------------------------------------------------------------
# Videos
# ----------------------------------------------------------------------------------------------


@dataclass
class _Scan:
    indices: list[int] = field(default_factory=list)  # kept frame indices of the video
    thumbs: list[np.ndarray] = field(default_factory=list)  # 64x64 RGB
    boxes: list[tuple[float, float, float, float] | None] = field(default_factory=list)
    points: list[np.ndarray | None] = field(default_factory=list)  # (68, 2) frame pixels
    shape: tuple[int, int] = (0, 0)
    fps: float = 0.0


def _iter_frames(path: Path, keep: set[int] | None):
    """Yield ``(index, BGR frame)`` of the frames in ``keep`` (all when None)."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise PrepareError(f"{path} could not be opened as a video.")
        i = 0
        last = max(keep) if keep else None
        while True:
            if last is not None and i > last:
                break
            if keep is not None and i not in keep:
                if not cap.grab():
                    break
            else:
                ok, f = cap.read()
                if not ok or f is None:
                    break
                yield i, f
            i += 1
    finally:
        cap.release()


def _frame_plan(path: Path, max_frames: int) -> tuple[set[int] | None, float]:
    cap = cv2.VideoCapture(str(path))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    if n <= 0:
        return set(range(max_frames)), fps
    if n <= max_frames:
        return None, fps
    return set(np.linspace(0, n - 1, max_frames).round().astype(int).tolist()), fps


def _scan(path: Path, cfg: PrepareConfig) -> _Scan:
    keep, fps = _frame_plan(path, cfg.max_frames_per_clip)
    sc = _Scan(fps=fps)
    for i, bgr in _iter_frames(path, keep):
        if len(sc.indices) >= cfg.max_frames_per_clip:
            break
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        sc.shape = grey.shape[:2]
        sc.indices.append(i)
        sc.thumbs.append(cv2.cvtColor(cv2.resize(bgr, (64, 64), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
        # the SHORT side gets detect_height pixels (a tall phone video keeps its face large enough)
        rows = max(160, int(round(cfg.detect_height * grey.shape[0] / min(grey.shape[:2]))))
        box = None
        if grey.mean() >= cfg.dark_threshold:
            box = _detect_box(grey, rows, upsample_retry=True)
        sc.boxes.append(box)
        sc.points.append(None if box is None else _shape(grey, box))
    if not sc.indices:
        raise PrepareError(f"no frame of {path} could be decoded.")
    return sc


def _face_jumps(a: tuple[float, float, float, float] | None, b: tuple[float, float, float, float] | None) -> bool:
    """Whether the face box changes like at a shot cut (gone, moved by > 0.25 sides, or resized by > 25%)."""
    if a is None or b is None:
        return True
    sa, sb = (a[2] - a[0] + a[3] - a[1]) / 2.0, (b[2] - b[0] + b[3] - b[1]) / 2.0
    move = np.hypot((a[0] + a[2] - b[0] - b[2]) / 2.0, (a[1] + a[3] - b[1] - b[3]) / 2.0)
    return bool(move > 0.25 * max(sa, sb) or max(sa, sb) > 1.25 * min(sa, sb))


def _shots(thumbs: np.ndarray, cfg: PrepareConfig, boxes: list | None = None) -> list[np.ndarray]:
    """Positions (into the kept frames) of each shot: dark frames dropped, split at cuts.

    A cut is a large change of the whole frame (``cut_threshold``) where, when ``boxes`` are given,
    the face box jumps too: a fast head motion in a close-up changes many pixels but is no cut.
    """
    small = thumbs.astype(np.float32)
    bright = small.mean(axis=(1, 2, 3)) >= cfg.dark_threshold
    cut = np.zeros(len(small), bool)
    if len(small) > 1:
        cut[1:] = np.abs(np.diff(small, axis=0)).mean(axis=(1, 2, 3)) > cfg.cut_threshold
        if boxes is not None:
            cut[1:] &= np.array([_face_jumps(boxes[i - 1], boxes[i]) for i in range(1, len(small))])
    shots, cur = [], []
    for i in range(len(small)):
        if not bright[i] or cut[i]:
            if cur:
                shots.append(np.array(cur))
            cur = [i] if bright[i] else []
        else:
            cur.append(i)
    if cur:
        shots.append(np.array(cur))
    return shots


def shot_crop(boxes: list[tuple[float, float, float, float]], h: int, w: int, cfg: PrepareConfig) -> tuple[int, int, int]:
    """One square ``(x, y, side)`` in frame pixels holding every face box of a shot (see module doc)."""
    b = np.asarray(boxes, np.float64)
    sides = ((b[:, 2] - b[:, 0]) + (b[:, 3] - b[:, 1])) / 2.0
    side = float(np.median(sides))
    cx = float(np.median((b[:, 0] + b[:, 2]) / 2.0))
    cy = float(np.median((b[:, 1] + b[:, 3]) / 2.0)) + cfg.face_offset_y * side
    m = cfg.hold_margin * side
    need = 2.0 * max(np.max(np.abs(b[:, [0, 2]] - cx)) + m, np.max(np.abs(b[:, [1, 3]] - cy)) + m)
    s = int(round(min(max(cfg.face_scale * side, need), min(h, w))))
    x = int(round(min(max(cx - s / 2.0, 0.0), w - s)))
    y = int(round(min(max(cy - s / 2.0, 0.0), h - s)))
    return x, y, s


def _write_jpeg(path: Path, rgb: np.ndarray, quality: int) -> None:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def _crop_resize(img: np.ndarray, x: int, y: int, s: int, size: int) -> np.ndarray:
    c = img[y:y + s, x:x + s]
    return cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_LINEAR)


def prepare_video(path: str | os.PathLike, out: str | os.PathLike, cfg: PrepareConfig | None = None) -> dict:
    """Prepare one video into ``out/videos/NAME[__shotNN]/``; returns a summary dict
    ``{'source', 'clips': [names], 'frames', 'skipped_shots': [(positions, reason)]}``."""
    cfg = cfg or PrepareConfig()
    path, out = Path(path), Path(out)
    _check_not_eval_only(path)
    sc = _scan(path, cfg)
    h, w = sc.shape
    shots = _shots(np.stack(sc.thumbs), cfg, sc.boxes)
    plans, skipped = [], []
    for pos in shots:
        found = [sc.boxes[i] for i in pos if sc.boxes[i] is not None]
        rate = len(found) / max(1, len(pos))
        if len(pos) < cfg.min_shot_frames:
            skipped.append((len(pos), f"shot of {len(pos)} frames < {cfg.min_shot_frames}"))
        elif rate < cfg.min_face_rate:
            skipped.append((len(pos), f"face found in {rate:.0%} of the frames"))
        else:
            plans.append((pos, shot_crop(found, h, w, cfg)))
    names = [path.stem] if len(plans) == 1 else [f"{path.stem}__shot{k:02d}" for k in range(len(plans))]
    vdir = out / "videos"
    vdir.mkdir(parents=True, exist_ok=True)
    for old in [vdir / path.stem, *vdir.glob(f"{path.stem}__shot[0-9][0-9]")]:  # an earlier run's clips
        if old.is_dir():
            shutil.rmtree(old)
    tmps = []
    for name, (pos, (x, y, s)) in zip(names, plans):
        tmp = vdir / f".tmp_{name}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        lm = missing_landmarks(len(pos))
        for k, i in enumerate(pos):
            if sc.points[i] is not None:
                lm[k] = pixels_to_normalised(sc.points[i], x, y, s, cfg.size)
        tmps.append((name, tmp, pos, (x, y, s), lm))
    # second pass: decode again and write the crops (keeps memory flat for long 1080p clips)
    where = {sc.indices[i]: (t, k) for t, (_, _, pos, _, _) in enumerate(tmps) for k, i in enumerate(pos)}
    written = 0
    if where:
        for idx, bgr in _iter_frames(path, set(where)):
            t, k = where[idx]
            x, y, s = tmps[t][3]
            rgb = cv2.cvtColor(_crop_resize(bgr, x, y, s, cfg.size), cv2.COLOR_BGR2RGB)
            _write_jpeg(tmps[t][1] / f"{k:05d}.jpg", rgb, cfg.jpeg_quality)
            written += 1
    frames = 0
    for name, tmp, pos, (x, y, s), lm in tmps:
        n = len(list(tmp.glob("*.jpg")))
        if n != len(pos):  # the second decode ended early: keep the frames that exist
            lm = lm[:n]
        np.save(tmp / "landmarks.npy", lm.astype(np.float32))
        meta = {"source": str(path), "person": _person(path), "fps": sc.fps, "frame_shape": [h, w],
                "crop": {"x": x, "y": y, "side": s}, "size": cfg.size, "landmarks": "align_corners=True",
                "frame_indices": [int(sc.indices[i]) for i in pos[:n]],
                "face_rate": float(np.isfinite(lm[:, 0, 0]).mean()) if n else 0.0}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        final = vdir / name
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        frames += n
    return {"source": str(path), "clips": names, "frames": frames, "skipped_shots": skipped}


# ----------------------------------------------------------------------------------------------
# Stills
# ----------------------------------------------------------------------------------------------


def prepare_still(path: str | os.PathLike, out: str | os.PathLike, cfg: PrepareConfig | None = None) -> dict:
    """Prepare one portrait into ``out/stills/NAME.jpg`` + ``NAME.npy``; summary ``{'source', 'stills', ...}``."""
    from odecam.realtime.framing import face_crop_box

    cfg = cfg or PrepareConfig()
    path, out = Path(path), Path(out)
    _check_not_eval_only(path)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        return {"source": str(path), "stills": [], "frames": 0, "skipped_shots": [(1, "unreadable image")]}
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    h, w = grey.shape
    box = _detect_box(grey, int(min(max(h, 320), 1024)), upsample_retry=True)
    if box is None:
        return {"source": str(path), "stills": [], "frames": 0, "skipped_shots": [(1, "no face found")]}
    pts = _shape(grey, box)
    cb = face_crop_box(box, h, w, cfg.face_scale, cfg.face_offset_y)
    sdir = out / "stills"
    sdir.mkdir(parents=True, exist_ok=True)
    rgb = cv2.cvtColor(_crop_resize(bgr, cb.x, cb.y, cb.size, cfg.size), cv2.COLOR_BGR2RGB)
    _write_jpeg(sdir / f"{path.stem}.jpg", rgb, cfg.jpeg_quality)
    np.save(sdir / f"{path.stem}.npy", pixels_to_normalised(pts, cb.x, cb.y, cb.size, cfg.size))
    return {"source": str(path), "stills": [path.stem], "frames": 0, "skipped_shots": [],
            "person": _person(path)}


# ----------------------------------------------------------------------------------------------
# Everything
# ----------------------------------------------------------------------------------------------


def _job(args: tuple[str, str, str, dict]) -> dict:
    kind, src, out, cfgd = args
    cv2.setNumThreads(1)
    cfg = PrepareConfig(**cfgd)
    try:
        return (prepare_video if kind == "video" else prepare_still)(src, out, cfg)
    except (PrepareError, cv2.error, OSError) as e:
        return {"source": src, "clips": [], "stills": [], "frames": 0, "error": str(e), "skipped_shots": []}


def prepare_all(videos: list[Path], stills: list[Path], out: str | os.PathLike, cfg: PrepareConfig | None = None,
                workers: int = 1, progress: bool = True, redo: bool = False,
                report: Callable[[dict], None] | None = None) -> dict:
    """Prepare every source (``workers`` processes), skipping those already in ``out/prepared.json``
    (made with the same settings) unless ``redo``. Returns the index ``{'settings', 'sources': {path: summary}}``, written to
    ``out/prepared.json`` after each source."""
    cfg = cfg or PrepareConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index_path = out / "prepared.json"
    index = {"settings": asdict(cfg), "sources": {}}
    if index_path.is_file():
        old = json.loads(index_path.read_text())
        if old.get("settings") == asdict(cfg):
            index["sources"] = old.get("sources", {})
    jobs = [("video", str(p), str(out), asdict(cfg)) for p in videos]
    jobs += [("still", str(p), str(out), asdict(cfg)) for p in stills]
    if not redo:
        jobs = [j for j in jobs if j[1] not in index["sources"]]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), unit="file", desc="prepare-faces")

    def done(res: dict) -> None:
        index["sources"][res["source"]] = res
        tmp = index_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(index, indent=1))
        tmp.replace(index_path)
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(Path(res["source"]).name[-30:])
        if report is not None:
            report(res)

    if workers <= 1:
        for j in jobs:
            done(_job(j))
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            for res in pool.imap_unordered(_job, jobs):
                done(res)
    if bar is not None:
        bar.close()
    return index

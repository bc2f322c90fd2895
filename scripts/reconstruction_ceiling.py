"""How far can any warp of the source go on a reconstruction video? Three baselines for N=0 L1.

    python scripts/reconstruction_ceiling.py [--data carphone] [--size 256] [--max-frames 200] [--every 5] \
        [--refs 3] [--json ceiling.json]

``odecam eval --protocol reconstruction --refs 0`` scores the model's frame t against the real frame t with
only frame 0 (the source) to draw from. This measures, on the same centre crops, the L1 of three methods that
also only move frame 0:

* ``no_motion``: the source as it is (the eval's baseline);
* ``camera_affine``: the source moved by one global affine per frame, fitted with RANSAC to the dense optical
  flow (OpenCV's DIS) from frame t back to frame 0: what a background / camera motion model (one affine
  for the whole frame, TPSMM's BG motion) could buy on its own;
* ``dense_flow``: the source warped by that dense flow itself: the ceiling of any method that only warps the
  source (no inpainting, no lighting), because the flow was measured against the answer.

With ``--refs N`` the reference views ``odecam eval --refs N`` uses are warped too: ``dense_flow_views`` is the
per-pixel best of all warped views (the ceiling of any fusion of them), ``best_view`` the best single view as
it is.

Reading: where ``camera_affine`` is no better than ``no_motion`` the camera's motion is not a global affine
(parallax, or the person dominates the frame) and a background motion model is not the lever.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np


def video_path(spec: str) -> Path:
    """``carphone`` (the embedded evaluation clip) or a video file."""
    from odecam.assets import video_path

    path = video_path(spec)
    if not path.is_file():
        sys.exit(f"error: the video {spec!r} does not exist; pass a video file or 'carphone'.")
    return path


def load_frames(path: Path, size: int, max_frames: int | None) -> list[np.ndarray]:
    """Centre square crops at ``size`` px as ``odecam eval`` reads them: (S, S, 3) uint8 RGB each."""
    from odecam.engine.images import to_image
    from odecam.evaluation.protocols import load_videos

    video = load_videos(path, size, max_frames)[0]
    return [to_image(f) for f in video.frames]


def flow_back(target: np.ndarray, source: np.ndarray, dis) -> np.ndarray:
    """(S, S, 2) float32: for each pixel of ``target``, where it lies in ``source`` (absolute x, y)."""
    gray = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (target, source)]
    flow = dis.calc(gray[0], gray[1], None)
    h, w = flow.shape[:2]
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), -1)
    return grid + flow


def fit_affine(where: np.ndarray, stride: int = 7) -> np.ndarray:
    """(2, 3) affine A with A @ (x, y, 1) ~ where[y, x], fitted by RANSAC (3 px) on every ``stride``-th pixel."""
    h, w = where.shape[:2]
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), -1)
    dst = np.ascontiguousarray(grid.reshape(-1, 2)[::stride])
    src = np.ascontiguousarray(where.reshape(-1, 2)[::stride])
    affine, _ = cv2.estimateAffine2D(dst, src, ransacReprojThreshold=3.0)
    return np.eye(2, 3, dtype=np.float64) if affine is None else affine


def l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 images, in [0, 1] (the eval's L1)."""
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() / 255.0)


def measure(frames: list[np.ndarray], every: int = 1, refs: int = 0) -> dict:
    """L1 of each baseline over frames 1, 1 + every, ... against frame 0 as the source.

    ``refs`` > 0 adds that many reference views at the frames ``odecam eval --refs`` takes; then
    ``dense_flow_views`` is the per-pixel best of all views warped by their dense flows (the ceiling of any
    fusion of warped views) and ``best_view`` the single best unwarped view per frame."""
    from odecam.evaluation.protocols import reference_indices

    source = frames[0]
    views = [source] + [frames[i] for i in reference_indices(len(frames), refs)]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    size = source.shape[1], source.shape[0]
    scores: dict[str, list[float]] = {"no_motion": [], "camera_affine": [], "dense_flow": []}
    if refs:
        scores.update(best_view=[], dense_flow_views=[])
    for target in frames[1::every]:
        errors = []
        for k, view in enumerate(views):
            where = flow_back(target, view, dis)
            warped = cv2.remap(view, where[..., 0], where[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            errors.append(np.abs(warped.astype(np.float32) - target.astype(np.float32)).mean(2) / 255.0)
            if k == 0:
                moved = cv2.warpAffine(source, fit_affine(where), size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                       borderMode=cv2.BORDER_REFLECT)
        scores["no_motion"].append(l1(source, target))
        scores["camera_affine"].append(l1(moved, target))
        scores["dense_flow"].append(float(errors[0].mean()))
        if refs:
            scores["best_view"].append(min(l1(v, target) for v in views))
            scores["dense_flow_views"].append(float(np.min(errors, 0).mean()))
    return {"frames": len(scores["no_motion"]), "refs": refs, **{k: float(np.mean(v)) for k, v in scores.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="carphone", help="a video file, or carphone (default)")
    ap.add_argument("--size", type=int, default=256, help="crop size in px, as the model's (default 256)")
    ap.add_argument("--max-frames", type=int, default=None, help="read at most this many frames")
    ap.add_argument("--every", type=int, default=1, help="score every n-th frame (default 1)")
    ap.add_argument("--refs", type=int, default=0, help="reference views N, as odecam eval --refs (default 0)")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = ap.parse_args(argv)
    if args.every < 1 or args.size < 32 or args.refs < 0:
        sys.exit("error: --every must be at least 1, --size at least 32 and --refs at least 0.")
    frames = load_frames(video_path(args.data), args.size, args.max_frames)
    result = {"data": str(args.data), "size": args.size, **measure(frames, args.every, args.refs)}
    print(f"{result['frames']} frames of {args.data} at {args.size} px, source = frame 0, L1:")
    for key in ("no_motion", "camera_affine", "dense_flow", "best_view", "dense_flow_views"):
        if key in result:
            print(f"  {key:16} {result[key]:.4f}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

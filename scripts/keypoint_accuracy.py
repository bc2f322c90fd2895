"""F_K's landmark-tied keypoints against dlib's landmarks on a driving video, upright and tilted.

    python scripts/keypoint_accuracy.py --checkpoint CKPT [--checkpoint CKPT2 ...] --data carphone \
        --rotate 0 20 -20 --json kp_accuracy.json [--overlay kp_overlay.png]

A model trained with ``loss.landmarks`` ties its first M keypoints to groups of dlib's 68 landmarks
(:data:`odecam.training.landmark_loss.LANDMARK_GROUPS`: upper eyelids, nose tip, mouth corners, inner lips,
chin). Relative motion moves the avatar by these keypoints' displacements, so where F_K misses the face part
on the driver, the avatar follows noise. For each checkpoint and in-plane rotation of the driving frames
(degrees, counter-clockwise; a tilted head) this prints and writes the mean distance in pixels at the
model's size between each tied keypoint and its landmark target, over the frames where dlib finds a face.
The driving video is framed as ``live`` frames the webcam (``odecam eval --protocol animation`` does the
same). ``--level`` also measures with live's roll levelling: the turned crop goes through a
:class:`~odecam.realtime.framing.FaceFramer` that keeps the whole crop (so only its levelling acts: dead
zone, smoothing and all), F_K runs on ``level_image`` and the keypoints are turned back by ``roll``
(:func:`odecam.engine.animator.unroll_keypoints`). ``--overlay`` draws keypoints (red) and targets (green) on a
few frames of the first checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch


def rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    """(S, S, 3) uint8 turned counter-clockwise about its centre, borders reflected: the framing's
    :func:`~odecam.realtime.framing.level_image` turned the other way (a face rolled by -degrees levelled)."""
    from odecam.realtime.framing import level_image

    return img if degrees == 0 else level_image(img, -degrees)


def measure(model, frames: list[np.ndarray], degrees: float, level: bool = False) -> dict:
    """Per-keypoint mean error (px) of the tied keypoints over ``frames`` (S, S, 3) uint8 RGB turned by
    ``degrees`` (``level``: F_K on the levelled crop, keypoints turned back); also returns the keypoints and
    targets of every measured frame for drawing, and the mean levelling angle."""
    from odecam.engine.animator import unroll_keypoints
    from odecam.evaluation.expression import landmarks68
    from odecam.realtime.framing import FaceFramer, FramingConfig
    from odecam.training.landmark_loss import LandmarkTargets

    targets = LandmarkTargets()
    mat = targets.matrix().numpy().astype(np.float64)
    errs, drawn, rolls = [], [], []
    # face_scale 100: the crop is the whole (S, S) frame, image == input; only the levelling acts
    framer = FaceFramer(FramingConfig(output_size=frames[0].shape[0], face_scale=100.0)) if level else None
    for img in frames:
        img = rotate(img, degrees)
        s = img.shape[0]
        inp, roll = (img, 0.0) if framer is None else framer.process(img).model_input()
        rolls.append(roll)
        lm = landmarks68(img)
        if lm is None:
            continue
        tgt = mat @ lm
        x = torch.from_numpy(np.ascontiguousarray(inp)).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            value = model.kp_detector(x)["value"]
            kp = unroll_keypoints(value, None, roll)[0][0].double().numpy()
        kp = (kp + 1) / 2 * (s - 1)
        errs.append(np.linalg.norm(kp[: len(tgt)] - tgt, axis=1))
        drawn.append((img, kp, tgt))
    names = [n for n, _ in targets.groups][: mat.shape[0]]
    if not errs:
        return {"frames": 0, "mean_px": None, "per_keypoint_px": {}, "level": level, "_drawn": drawn}
    e = np.array(errs)
    return {"frames": len(e), "mean_px": float(e.mean()), "per_keypoint_px": dict(zip(names, e.mean(0).round(2).tolist())),
            "level": level, "mean_roll": float(np.mean(rolls)), "_drawn": drawn}


def overlay(drawn: list, path: Path, count: int = 4) -> None:
    """Keypoints (red, numbered; free ones magenta) and their targets (green) on ``count`` frames."""
    if not drawn:
        return
    picks = np.linspace(0, len(drawn) - 1, min(count, len(drawn))).round().astype(int)
    tiles = []
    for i in picks:
        img, kp, tgt = drawn[i]
        vis = cv2.cvtColor(img, cv2.COLOR_RGB2BGR).copy()
        for j, (p, q) in enumerate(zip(kp, tgt)):
            pt, qt = tuple(int(v) for v in p), tuple(int(v) for v in q)
            cv2.line(vis, pt, qt, (255, 255, 0), 1)
            cv2.circle(vis, qt, 3, (0, 255, 0), -1)
            cv2.circle(vis, pt, 3, (0, 0, 255), -1)
            cv2.putText(vis, str(j), (pt[0] + 3, pt[1] + 3), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 255), 1)
        for p in kp[len(tgt):]:
            cv2.circle(vis, tuple(int(v) for v in p), 2, (255, 0, 255), -1)
        tiles.append(vis)
    cv2.imwrite(str(path), np.concatenate(tiles, 1))


@torch.no_grad()  # scoped: the tests run this in-process, so no global switch may leak out
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", action="append", required=True, help="a .safetensors checkpoint (repeatable)")
    p.add_argument("--data", default="carphone", help="driving video, or 'carphone' (default)")
    p.add_argument("--rotate", type=float, nargs="+", default=[0.0, 20.0, -20.0], help="rotations, degrees")
    p.add_argument("--max-frames", type=int, default=120)
    p.add_argument("--level", action="store_true", help="also measure with the face levelled (live's framing)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--overlay", type=Path, help="PNG of keypoints and targets (first checkpoint, first rotation)")
    args = p.parse_args(argv)
    from odecam.assets import video_path
    from odecam.checkpoint import load_checkpoint
    from odecam.errors import OdecamError
    from odecam.evaluation.animation import load_framed_videos

    results = []
    try:
        for ck in args.checkpoint:
            model = load_checkpoint(ck)
            video = load_framed_videos(str(video_path(args.data)), model.cfg.image_size, args.max_frames)[0]
            frames = [(f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for f in video.frames]
            for deg in args.rotate:
                for level in (False, True) if args.level else (False,):
                    r = measure(model, frames, deg, level)
                    drawn = r.pop("_drawn")
                    if args.overlay and not results:
                        overlay(drawn, args.overlay)
                    results.append({"checkpoint": str(ck), "rotate": deg, **r})
    except OdecamError as exc:
        print(f"keypoint_accuracy: {exc}", file=sys.stderr)
        return 2
    print(f"{'checkpoint':<40} {'rotate':>6} {'level':>5} {'frames':>6} {'mean px':>8}  per keypoint (px)")
    for r in results:
        mean = "-" if r["mean_px"] is None else f"{r['mean_px']:.1f}"
        per = " ".join(f"{v:.1f}" for v in r["per_keypoint_px"].values())
        lv = f"{r.get('mean_roll', 0.0):+.0f}" if r["level"] else "off"
        print(f"{Path(r['checkpoint']).name[-40:]:<40} {r['rotate']:>6.0f} {lv:>5} {r['frames']:>6} {mean:>8}  {per}")
    if args.json:
        args.json.write_text(json.dumps({"data": args.data, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

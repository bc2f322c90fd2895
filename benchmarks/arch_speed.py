"""What would a smaller model buy? Per-frame time of ``lite`` variants in onnxruntime, random weights.

    python benchmarks/arch_speed.py                          # every variant below, N=0 and N=1, 1 thread
    python benchmarks/arch_speed.py --variants lite gen_be8 --threads 2 --json out.json

For each variant of the ``lite`` preset (config overrides, e.g. the decoder's channel base
``generator.block_expansion`` 16 -> 8) this exports the keypoints graph (F_K) and the frame graph the
onnxruntime backend runs (``frame_tail``: F_C, F_E, F_A, fusion, F_G without the image skip's 256 px warp,
which runs in torch beside it, about 1 ms) and times ``session.run`` of both, back to back. The sum is the
model's part of ``odecam bench``'s per-frame latency; weights are random (speed does not depend on them).
These are architectures no weights exist for yet: the numbers say how far a model change would go
towards issue 12's 150 / 100 fps before anyone spends the training.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

#: name -> ModelConfig.replace overrides of the lite preset
VARIANTS: dict[str, dict] = {
    "lite": {},
    "gen_be12": {"generator.block_expansion": 12},
    "gen_be8": {"generator.block_expansion": 8},
    "gen_mf32": {"generator.max_features": 32},
    "no_appearance": {"appearance.enabled": False},
    "ode2": {"evolution.steps": 2},
    "be8_app8": {"generator.block_expansion": 8, "appearance.hidden": 8},
    "shuffle2": {"generator.pixel_shuffle": 2},
    "shuffle4": {"generator.pixel_shuffle": 4},
    "shuffle2_k1": {"generator.pixel_shuffle": 2, "generator.final_kernel": 1},
    "shuffle4_k1": {"generator.pixel_shuffle": 4, "generator.final_kernel": 1},
    "be8_app8_kp8": {"generator.block_expansion": 8, "appearance.hidden": 8, "keypoints.block_expansion": 8},
    "shuffle2_be8": {"generator.pixel_shuffle": 2, "generator.block_expansion": 8},
    "shuffle2_be8_app8": {"generator.pixel_shuffle": 2, "generator.block_expansion": 8, "appearance.hidden": 8},
    "shuffle2_mf32": {"generator.pixel_shuffle": 2, "generator.max_features": 32},
    "shuffle2_app8": {"generator.pixel_shuffle": 2, "appearance.hidden": 8},
    "shuffle2_fused_app": {"generator.pixel_shuffle": 2, "appearance.fused": True},
    "shuffle2_fused_app_k1": {"generator.pixel_shuffle": 2, "appearance.fused": True, "generator.final_kernel": 1},
}


def make_session(onnx_bytes: bytes, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the backend runs it (no spinning)
    return ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])


def build(name: str, overrides: dict, n: int, threads: int) -> tuple[float, list]:
    """(parameters in millions, [(keypoints session, feed), (frame_tail session, feed)]) of one variant at N = n."""
    import torch

    from odecam.config import preset
    from odecam.model import MotionTransferModel
    from profile_ort import graph_feeds

    torch.manual_seed(0)
    model = MotionTransferModel(preset("lite").replace(num_refs=n, **overrides)).eval()
    graphs = graph_feeds(model, n + 1)
    runs = [(make_session(graphs[g][0], threads), graphs[g][1]) for g in ("keypoints", "frame_tail")]
    return sum(p.numel() for p in model.parameters()) / 1e6, runs


def measure_interleaved(variants: list[str], refs: list[int], threads: int, frames: int) -> list[dict]:
    """p50 ms of keypoints + frame_tail per variant and N, the variants run in turn frame by frame (a noisy
    machine's drift falls on all of them alike)."""
    import numpy as np

    rows = [{"variant": v, "overrides": VARIANTS[v]} for v in variants]
    for n in refs:
        built = [build(v, VARIANTS[v], n, threads) for v in variants]
        times: list[dict[str, list[float]]] = [{"keypoints": [], "frame": []} for _ in variants]
        for i in range(frames + 8):
            for (params, runs), t in zip(built, times):
                for (sess, feed), key in zip(runs, ("keypoints", "frame")):
                    t0 = time.perf_counter()
                    sess.run(None, feed)
                    if i >= 8:  # warm-up
                        t[key].append((time.perf_counter() - t0) * 1000.0)
        for row, (params, _), t in zip(rows, built, times):
            kp, fr = (float(np.percentile(t[k], 50)) for k in ("keypoints", "frame"))
            total = kp + fr
            row["params_m"] = params
            row[f"N{n}"] = {"keypoints_ms": kp, "frame_ms": fr, "total_ms": total}
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--refs", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--frames", type=int, default=80)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = measure_interleaved(args.variants, args.refs, args.threads, args.frames)
    print(f"{'variant':16} {'params':>8} " + " ".join(f"{'N=' + str(n) + ' ms':>9}" for n in args.refs))
    for name, row in zip(args.variants, rows):
        print(f"{name:16} {row['params_m']:7.3f}M " + " ".join(f"{row[f'N{n}']['total_ms']:9.2f}" for n in args.refs),
              flush=True)
    if args.json is not None:
        from odecam.commands.bench import machine_info

        args.json.write_text(json.dumps({"machine": machine_info(args.threads), "threads": args.threads, "frames": args.frames,
                                         "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

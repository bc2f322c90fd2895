"""onnxruntime with and without spin-waiting threads, per frame, interleaved in one process.

    python benchmarks/spin_ab.py --refs 0 1 --frames 500 [--busy 1] --json benchmarks/results/spin_ab.json

Builds three onnxruntime backends of the default model (``spin='off'``: threads sleep between nodes; ``'on'``:
threads spin-wait while a graph runs and stop when it returns; ``'auto'``, the rendering commands' setting: one
session of each per graph, the faster one runs, ``odecam.engine.spin``) and renders the same frames with them in
turn (keypoints + frame graph + image-skip tail + uint8, as ``odecam bench`` times them). ``--busy N``
starts N CPU-bound processes first (a busy computer: a video call, a browser). Prints and writes p50 / p95 per
setting, the ratios to 'off' and how often 'auto' spun.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _burn() -> None:
    while True:
        pass


def measure(refs: int, frames: int, threads: int) -> dict[str, dict[str, float]]:
    import numpy as np
    import torch

    from odecam.assets import DEFAULT_WEIGHTS
    from odecam.checkpoint import load_checkpoint
    from odecam.engine import Animator, Avatar
    from odecam.engine.backends import get_backend, torch_threads_for

    torch.set_num_threads(torch_threads_for("onnxruntime", threads))
    model = load_checkpoint(DEFAULT_WEIGHTS).eval()
    rng = np.random.default_rng(0)
    s = model.cfg.image_size
    source = rng.integers(0, 256, (s, s, 3), dtype=np.uint8)
    views = [rng.integers(0, 256, (s, s, 3), dtype=np.uint8) for _ in range(refs)]
    driving = [rng.integers(0, 256, (s, s, 3), dtype=np.uint8) for _ in range(8)]
    animators = {}
    for spin in ("off", "on", "auto"):
        backend = get_backend("onnxruntime", model, threads=threads, spin=spin, cache=False)
        animators[spin] = Animator(model, Avatar(model, source, views), backend=backend)
        for i in range(20):
            animators[spin](driving[i % 8])
        animators[spin].timings.reset()
    for i in range(frames):
        for animator in animators.values():
            animator(driving[i % 8])
    out = {}
    for spin, animator in animators.items():
        pct = animator.timings.percentiles((50, 95))["total"]
        out[{"off": "no_spin", "on": "spin", "auto": "auto"}[spin]] = {"p50_ms": pct["p50"], "p95_ms": pct["p95"]}
    out["speedup_p50"] = out["no_spin"]["p50_ms"] / out["spin"]["p50_ms"]
    out["auto_speedup_p50"] = out["no_spin"]["p50_ms"] / out["auto"]["p50_ms"]
    out["auto"]["spin_share"] = animators["auto"].backend.spin_share()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refs", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--busy", type=int, default=0, help="CPU-bound processes started beside it")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    burners = [mp.Process(target=_burn, daemon=True) for _ in range(args.busy)]
    for p in burners:
        p.start()
    try:
        rows = {f"N{n}": measure(n, args.frames, args.threads) for n in args.refs}
    finally:
        for p in burners:
            p.terminate()
    print(f"{'case':6} {'no spin p50 / p95 ms':>22} {'spin p50 / p95 ms':>20} {'speed-up':>9} "
          f"{'auto p50 / p95 ms':>20} {'speed-up':>9} {'spun':>5}   ({args.busy} busy processes)")
    for case, r in rows.items():
        print(f"{case:6} {r['no_spin']['p50_ms']:10.2f} / {r['no_spin']['p95_ms']:6.2f}      "
              f"{r['spin']['p50_ms']:8.2f} / {r['spin']['p95_ms']:6.2f}  {r['speedup_p50']:8.2f}x "
              f"{r['auto']['p50_ms']:8.2f} / {r['auto']['p95_ms']:6.2f}  {r['auto_speedup_p50']:8.2f}x "
              f"{r['auto']['spin_share']:5.0%}")
    if args.json is not None:
        from odecam.commands.bench import machine_info

        args.json.write_text(json.dumps({"machine": machine_info(args.threads), "busy": args.busy,
                                         "frames": args.frames, "loadavg_end": list(os.getloadavg()),
                                         "cases": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Op-by-op profile of the exported per-frame graphs in onnxruntime (its own profiler).

For each N (reference views) it exports the keypoints and frame graphs of a model (default: ``lite`` at
256 px with the shipped default weights, which load into that shape), runs them ``--frames`` times with
``SessionOptions.enable_profiling`` and sums the kernel times per op type (and per node). Prints the top
ops and writes ``profile_ort.json``.

Usage (from the repository root)::

    python benchmarks/profile_ort.py                      # lite @256, default weights, N=0 and N=1
    python benchmarks/profile_ort.py --refs 1 --top 25 --out /tmp/prof
    python benchmarks/profile_ort.py --random             # random weights instead

Numbers are kernel times inside onnxruntime (``Node`` events), so they add up to a little less than the
wall time of ``session.run``; ``wall_ms_p50`` is that wall time, measured outside the profiled runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def lite_model(num_refs: int, size: int = 256, random: bool = False, **overrides):
    """``lite`` at ``size`` px with N = num_refs; the shipped default weights (and its architecture, e.g. its
    ``generator.pixel_shuffle``) unless ``random``."""
    import torch

    from odecam.assets import DEFAULT_WEIGHTS
    from odecam.checkpoint import load_checkpoint, read_checkpoint
    from odecam.config import preset
    from odecam.model import MotionTransferModel

    if random or not DEFAULT_WEIGHTS.exists():
        torch.manual_seed(0)
        return MotionTransferModel(preset("lite").replace(image_size=size, num_refs=num_refs, **overrides)).eval()
    cfg = read_checkpoint(DEFAULT_WEIGHTS)[0].replace(image_size=size, num_refs=num_refs, **overrides)
    return load_checkpoint(DEFAULT_WEIGHTS, cfg=cfg)


def summarize_trace(trace_file: str | Path, runs: int) -> dict:
    """onnxruntime's Chrome-trace JSON -> {'by_op': {op: ms per run}, 'by_node': {...}, 'total_ms'}."""
    events = json.loads(Path(trace_file).read_text())
    by_op: dict[str, float] = defaultdict(float)
    by_node: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    shapes: dict[str, object] = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        args = e.get("args", {})
        op = args.get("op_name", "?")
        node = e["name"][: -len("_kernel_time")]
        by_op[op] += e["dur"] / 1000.0
        by_node[f"{op}:{node}"] += e["dur"] / 1000.0
        count[op] += 1
        shapes.setdefault(f"{op}:{node}", args.get("output_type_shape"))
    total = sum(by_op.values()) / runs
    return {
        "total_ms": total,
        "by_op": {k: {"ms": v / runs, "share": v / runs / max(total, 1e-12), "nodes": count[k] // runs}
                  for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])},
        "by_node": {k: {"ms": v / runs, "out": shapes.get(k)} for k, v in
                    sorted(by_node.items(), key=lambda kv: -kv[1])[:60]},
    }


def wall_times(session, feed: dict, frames: int, warmup: int = 5) -> list[float]:
    """Wall ms of ``frames`` runs of an onnxruntime ``session`` on ``feed``, after ``warmup`` untimed runs."""
    for _ in range(warmup):
        session.run(None, feed)
    walls = []
    for _ in range(frames):
        t0 = time.perf_counter()
        session.run(None, feed)
        walls.append((time.perf_counter() - t0) * 1000.0)
    return walls


def profile_session(onnx_bytes: bytes, feed: dict, frames: int, threads: int, options=None) -> dict:
    """Run one graph ``frames`` times with the profiler on; wall p50 from a second, unprofiled session."""
    import numpy as np
    import onnxruntime as ort

    def make(profile: bool):
        so = options() if options is not None else ort.SessionOptions()
        so.intra_op_num_threads = threads
        if profile:
            so.enable_profiling = True
            so.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="odecam-prof-")) / "ort")
        return ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])

    walls = wall_times(make(False), feed, frames, warmup=5)
    prof = make(True)
    for _ in range(3):
        prof.run(None, feed)
    trace = prof.end_profiling()  # warm-up runs are in it too: restart
    prof = make(True)
    for _ in range(frames):
        prof.run(None, feed)
    trace = prof.end_profiling()
    out = summarize_trace(trace, frames)
    out["wall_ms_p50"] = float(np.percentile(walls, 50))
    out["wall_ms_p95"] = float(np.percentile(walls, 95))
    return out


def graph_feeds(model, num_views: int, ode_steps: int | None = None) -> dict:
    """{graph: (onnx bytes, numpy feed)} for the keypoints and frame graphs, and ``frame_tail`` (the frame graph
    the onnxruntime backend runs for a model with the image skip: without the view-image warp and blend)."""
    from odecam.export.exporter import graph_modules
    from odecam.export.onnx import to_onnx_bytes

    out = {}
    steps = ode_steps or model.cfg.evolution.steps
    for graph, (module, args, inputs, outputs) in graph_modules(model, num_views, steps).items():
        if graph == "avatar" or (graph == "frame_tail" and not model.cfg.generator.image_skip):
            continue
        data = to_onnx_bytes(module, args, inputs, outputs)
        import onnx

        used = {i.name for i in onnx.load_from_string(data).graph.input}
        out[graph] = (data, {n: a.detach().float().contiguous().numpy() for n, a in zip(inputs, args) if n in used})
    return out


def print_profile(label: str, prof: dict, top: int) -> None:
    print(f"\n== {label}: kernels {prof['total_ms']:.2f} ms/run, wall p50 {prof['wall_ms_p50']:.2f} ms")
    print(f"   {'op':28} {'ms/run':>8} {'share':>6} {'nodes':>5}")
    for op, r in list(prof["by_op"].items())[:top]:
        print(f"   {op:28} {r['ms']:8.3f} {100 * r['share']:5.1f}% {r['nodes']:5d}")
    print("   top nodes:")
    for node, r in list(prof["by_node"].items())[: min(top, 12)]:
        print(f"     {r['ms']:7.3f} ms  {node[:70]}  -> {r['out']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--refs", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--random", action="store_true", help="random weights instead of the shipped default")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    import torch

    from odecam.engine.backends import cpu_cores

    threads = args.threads or cpu_cores()
    torch.set_num_threads(threads)
    result = {"size": args.size, "threads": threads, "weights": "random" if args.random else "default",
              "loadavg_start": list(os.getloadavg()), "cases": {}}
    for n in args.refs:
        model = lite_model(n, args.size, args.random)
        for graph, (data, feed) in graph_feeds(model, n + 1).items():
            prof = profile_session(data, feed, args.frames, threads)
            label = f"lite@{args.size} N={n} {graph}"
            result["cases"][label] = prof
            print_profile(label, prof, args.top)
    result["loadavg_end"] = list(os.getloadavg())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile_ort.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {out / 'profile_ort.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

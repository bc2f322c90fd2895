"""CPU benchmark of the per-frame path, in one run: params, GFLOPs, floor and p50 / p95 / p99 ms per frame
for ``lite`` and ``vox256`` (vox256 is sized like First Order Motion Model) on every CPU backend, plus
sweeps of ODE steps and reference views N for ``lite`` on onnxruntime. Writes JSON and plots and
regenerates ``benchmarks/RESULTS.md``.

Usage (from the repository root)::

    python benchmarks/bench_cpu.py                    # about 10 minutes on 2 cores
    python benchmarks/bench_cpu.py --quick            # lite and vox256 on onnxruntime only, fewer frames

Random weights: latency does not depend on the values. Other processes on the machine add noise: the
load average before and after each case is recorded with it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from odecam.commands.bench import Case, bench, format_table  # noqa: E402


def cases(quick: bool) -> list[Case]:
    if quick:
        return [Case("lite", "onnxruntime", None, 1), Case("vox256", "onnxruntime", None, 1)]
    main = [Case(p, b, None, 1) for p in ("lite", "vox256") for b in ("torch", "torchscript", "onnxruntime")]
    fomm_like = [Case("vox256", "onnxruntime", None, 0)]
    steps = [Case("lite", "onnxruntime", s, 1) for s in (1, 2, 8)]
    refs = [Case("lite", "onnxruntime", None, n) for n in (0, 2, 4)]
    return main + fomm_like + steps + refs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--max-seconds", type=float, default=40.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for cpu.json and plots")
    ap.add_argument("--name", default="cpu", help="results name: OUT/NAME.json and OUT/NAME/*.png")
    args = ap.parse_args()
    out = Path(args.out)
    result = bench(cases(args.quick), out / args.name, frames=args.frames, warmup=5, max_seconds=args.max_seconds)
    (out / args.name / "results.json").replace(out / f"{args.name}.json")
    print()
    print(f"CPU: {result['machine']['cpu']}, {result['machine']['threads']} threads, "
          f"load {result['machine']['loadavg_start']} -> {result['machine']['loadavg_end']}")
    print(f"3x3 conv: torch {result['conv_throughput']['torch']:.1f} GFLOP/s, onnxruntime "
          f"{result['conv_throughput'].get('onnxruntime', float('nan')):.1f} GFLOP/s")
    print(format_table(result["runs"]))
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {out / (args.name + '.json')} and plots in {out / args.name}")
    if out.resolve() == (ROOT / "benchmarks" / "results").resolve():
        from results_table import write_results_md  # benchmarks/results_table.py

        print(f"wrote {write_results_md()}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())

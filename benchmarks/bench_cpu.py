"""CPU benchmark of the per-frame path, in one run: params, GFLOPs, floor and p50 / p95 / p99 ms per frame
for ``lite`` and ``vox256`` (vox256 is sized like First Order Motion Model) on every CPU backend, plus
sweeps of ODE steps and reference views N for ``lite`` on onnxruntime. Writes JSON and plots and
regenerates ``benchmarks/RESULTS.md``.

Usage (from the repository root)::

    python benchmarks/bench_cpu.py                    # about 10 minutes on 2 cores
    python benchmarks/bench_cpu.py --quick            # lite and vox256 on onnxruntime only, fewer frames
    python benchmarks/bench_cpu.py --inductor-trial   # issue 12: torch.compile (inductor) fp32 / bf16 against
                                                      # onnxruntime, shipped default at 256 px, carphone PSNR

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


def _carphone_inputs(model, num_views: int, frames: int):
    """The shipped avatar (astronaut crop; N references: the same crop mirrored) and ``frames`` carphone face crops,
    as tensors: views (1, V, 3, S, S) and driving images [(1, 3, S, S)]."""
    import numpy as np
    import torch

    from odecam.assets import AVATAR_CROP, DRIVING_CROP, default_avatar_path, default_driving_path
    from odecam.engine.images import load_image, to_tensor
    from odecam.engine.video import read_frames

    s = model.cfg.image_size
    face = AVATAR_CROP.apply(load_image(default_avatar_path()))
    views = [face] + [np.ascontiguousarray(face[:, ::-1]) for _ in range(num_views - 1)]
    views_t = torch.stack([to_tensor(v, s)[0] for v in views])[None]
    driving = [to_tensor(DRIVING_CROP.apply(f), s) for f in read_frames(default_driving_path(), max_frames=frames)]
    return views_t, driving


def _psnr_uint8(a, b) -> float:
    import numpy as np

    from odecam.engine.images import to_image

    mse = float(np.mean((to_image(a).astype(np.float64) - to_image(b).astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


INDUCTOR_MODES = ("inductor fp32", "inductor bf16", "inductor fp32 channels-last", "inductor bf16 channels-last")


def inductor_trial(refs: list[int], frames: int, psnr_frames: int, threads: int, out: Path,
                   modes: tuple[str, ...] = INDUCTOR_MODES[:2]) -> dict:
    """torch.compile (inductor, CPU, ``freezing=True``) of F_K and the frame function, fp32 and bf16 (a
    :func:`~odecam.export.precision.half_copy` in bfloat16: BatchNorm folded, F_K / F_C / F_E fp32), against the
    onnxruntime backend, interleaved frame by frame in one process (keypoints + frame each). PSNR of the rendered
    uint8 frames against fp32 eager on ``psnr_frames`` carphone frames (carphone -> astronaut)."""
    import os
    import time

    import numpy as np
    import torch
    import torch._inductor.config as inductor_config

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from profile_ort import lite_model

    from odecam.commands.bench import cpu_model
    from odecam.engine.backends import OnnxRuntimeBackend
    from odecam.export.precision import half_copy
    from odecam.model.fastpath import export_fastpath

    torch.set_num_threads(threads)
    inductor_config.freezing = True
    result = {"threads": threads, "machine": cpu_model(), "torch": torch.__version__,
              "loadavg_start": list(os.getloadavg()), "cases": []}
    for n in refs:
        v = n + 1
        model = lite_model(n)
        views, driving = _carphone_inputs(model, v, max(psnr_frames, 8))
        with torch.no_grad():
            state = model.prepare_views(views)
            kps = [model.kp_detector(d)["value"] for d in driving]
            ref = [model.animate(state, k, num_views=v)["prediction"] for k in kps]
        ort_be = OnnxRuntimeBackend(model, "cpu", threads=threads)
        ort_be.prepare(state)

        def run_ort(img):
            kp, _ = ort_be.run_keypoints(img)
            return ort_be.run_frame(kp)[0]

        runners = {"onnxruntime": run_ort}
        compile_s = {}
        for name in modes:
            dtype = torch.bfloat16 if "bf16" in name else torch.float32
            m = model if dtype == torch.float32 else half_copy(model, dtype)
            st = {k: (t.to(dtype) if k == "features" else t) for k, t in state.items()}
            if "channels-last" in name:  # oneDNN's preferred layout (bf16 convolutions especially)
                m = m.to(memory_format=torch.channels_last)
                st = {k: (t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t)
                      for k, t in st.items()}

            def frame(kp, m=m, st=st):
                with export_fastpath():  # the same rewrites as the export (half-resolution head, separable F_C)
                    return m.animate(st, kp, num_views=v)["prediction"].float()

            kp_fn = torch.compile(lambda img, m=m: m.kp_detector(img)["value"], dynamic=False)
            fr_fn = torch.compile(frame, dynamic=False)
            t0 = time.perf_counter()
            with torch.no_grad():
                for _ in range(2):
                    fr_fn(kp_fn(driving[0]))
            compile_s[name] = time.perf_counter() - t0
            print(f"N={n} {name}: compiled in {compile_s[name]:.0f} s", flush=True)

            def run(img, kp_fn=kp_fn, fr_fn=fr_fn):
                with torch.no_grad():
                    return fr_fn(kp_fn(img))

            runners[name] = run
        quality = {}
        for name, fn in runners.items():
            with torch.no_grad():
                outs = [fn(d) for d in driving[:psnr_frames]]
            psnr = [_psnr_uint8(o, r) for o, r in zip(outs, ref)]
            finite = [p for p in psnr if p != float("inf")] or [float("inf")]
            quality[name] = {"psnr_min_db": min(psnr), "psnr_mean_db": float(np.mean(finite)),
                             "max_abs": max(float((o - r).abs().max()) for o, r in zip(outs, ref))}
        times = {k: [] for k in runners}
        names = list(runners)
        for i in range(frames):
            img = driving[i % len(driving)]
            for name in names[i % len(names):] + names[:i % len(names)]:  # rotate the order: load hits all alike
                t0 = time.perf_counter()
                runners[name](img)
                times[name].append((time.perf_counter() - t0) * 1000.0)
        case = {"refs": n, "size": model.cfg.image_size, "frames": frames, "psnr_frames": psnr_frames,
                "compile_s": compile_s, "modes": {}}
        for name in names:
            case["modes"][name] = {"p50_ms": float(np.percentile(times[name], 50)),
                                   "p95_ms": float(np.percentile(times[name], 95)), **quality[name]}
            r = case["modes"][name]
            print(f"N={n} {name:14} p50 {r['p50_ms']:6.2f} ms p95 {r['p95_ms']:6.2f}  vs fp32 eager: max abs "
                  f"{r['max_abs']:.1e}, PSNR min {r['psnr_min_db']:.1f} dB mean {r['psnr_mean_db']:.1f}", flush=True)
        result["cases"].append(case)
    result["loadavg_end"] = list(os.getloadavg())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--inductor-trial", action="store_true", help="issue 12: inductor fp32 / bf16 against onnxruntime")
    ap.add_argument("--refs", nargs="+", type=int, default=[0, 1], help="--inductor-trial: reference views N")
    ap.add_argument("--threads", type=int, default=None, help="--inductor-trial: threads (default: all cores)")
    ap.add_argument("--modes", nargs="+", default=["fp32", "bf16"],
                    help="--inductor-trial: fp32, bf16, 'fp32 channels-last', 'bf16 channels-last'")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--max-seconds", type=float, default=40.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for cpu.json and plots")
    ap.add_argument("--name", default="cpu", help="results name: OUT/NAME.json and OUT/NAME/*.png")
    args = ap.parse_args()
    out = Path(args.out)
    if args.inductor_trial:
        from odecam.engine.backends import cpu_cores

        modes = tuple(f"inductor {m}" for m in args.modes)
        unknown = [m for m in modes if m not in INDUCTOR_MODES]
        if unknown:
            ap.error(f"unknown --modes {unknown}; choose from {[m[len('inductor '):] for m in INDUCTOR_MODES]}")
        inductor_trial(args.refs, args.frames, 30, args.threads or cpu_cores(), out / "speed_inductor.json", modes)
        return 0
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

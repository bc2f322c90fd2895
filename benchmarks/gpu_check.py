"""GPU check in one call: export, parity and timing of the per-frame graph (and F_K) on one CUDA card.

Run through ``bash benchmarks/gpu_check.sh`` (it finds python, installs torch-tensorrt only from a carried
``.whl/`` folder, and bounds the wall time). Needs only torch (+ torch-tensorrt for TensorRT): the odecam
code is imported from this checkout, and nothing here imports OpenCV, onnx or safetensors.

Steps, in priority order, each skipped once the time budget cannot fit it (results are written after
every step, so a run cut short still reports what it measured):

1. the ``cuda-graph`` backend (:mod:`odecam.engine.cuda_graph`, no TensorRT) through the Animator, fp16
   and fp32: lite (N=1, N=0) and vox256 (N=0) at 256 px, FULL per-frame cost (uint8 frame in: resize,
   F_K, relative motion, frame graph, uint8 out), with its parity against fp32 eager on real images
   (carphone -> astronaut where the packages are there, else smooth synthetic pictures). lite runs the
   shipped default weights when ``safetensors`` is importable (else random weights, noted);
2. glass to glass: ``odecam live --video CLIP --stats --backend cuda-graph`` when OpenCV and a clip are
   there, else the same capture -> Animator -> sink loop in-process (capture thread, queue, sink), p50/p95
   of capture-to-sink against the model's own p50/p95;
3. eager fp32 / fp16 and eager fp16 replayed as a CUDA graph, frame graph only (the earlier numbers);
4. ``torch.compile(mode="reduce-overhead")`` under the cuda-graph backend (lite N=1; ~30 s to compile);
5. TensorRT (only if ``torch_tensorrt`` imports): fp32 parity at tiny size, fp16 lite through
   ``odecam.export``, vox256, keypoint graphs, fp32 parity of lite and vox256, vox256 N=1.

Targets (per frame, keypoints included, fp16, batch 1): lite >= 1500 fps, vox256 >= 400 fps (best of the
cuda-graph and TensorRT runs). Output: JSON (``gpu-<card>.json``) in ``--out``;
``python benchmarks/results_table.py`` turns it into RESULTS.md rows.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from odecam.config import preset  # noqa: E402
from odecam.export.graphs import FrameGraph, KeypointGraph, example_inputs  # noqa: E402
from odecam.model import MotionTransferModel  # noqa: E402

TARGETS = {"vox256": 400.0, "lite": 1500.0}
#: rough TensorRT build seconds (H100), to skip a step that cannot finish inside the budget
TRT_BUILD_S = {"tiny": 40, "lite": 90, "vox256": 180}


class Run:
    def __init__(self, out: Path, budget_s: float) -> None:
        self.start = time.monotonic()
        self.budget_s = budget_s
        self.out = out
        self.data: dict = {"kind": "gpu", "machine": machine(), "runs": [], "notes": [], "targets": {},
                           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        card = re.sub(r"[^a-z0-9]+", "-", (self.data["machine"].get("gpu") or "cpu").lower()).strip("-")
        self.path = out / f"gpu-{card}.json"

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.start)

    def note(self, text: str) -> None:
        print(f"NOTE: {text}", flush=True)
        self.data["notes"].append(text)
        self.save()

    def add(self, rec: dict) -> None:
        self.data["runs"].append(rec)
        if "error" in rec:
            print(f"  {rec['preset']:7} {rec['graph']:9} {rec['engine']:18} {rec['precision']}: skipped: {rec['error'][:200]}",
                  flush=True)
        else:
            err = rec.get("max_abs_err")
            print(f"  {rec['preset']:7} {rec['graph']:9} {rec['engine']:18} {rec['precision']}: p50 {rec['p50_ms']:.3f} ms "
                  f"({rec['fps_p50']:.0f} fps), p99 {rec['p99_ms']:.3f} ms"
                  + (f", max abs err {err:.1e}" if err is not None else "") + (f", built in {rec['build_s']:.0f} s"
                                                                                if rec.get("build_s") else ""),
                  flush=True)
        self.save()

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.data["elapsed_s"] = time.monotonic() - self.start
        self.path.write_text(json.dumps(self.data, indent=2) + "\n")


def machine() -> dict:
    info = {"host": platform.node(), "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2 ** 30, 1)
    try:
        info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                             "--format=csv,noheader"], capture_output=True, text=True,
                                            timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        text = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import torch_tensorrt

        info["torch_tensorrt"] = torch_tensorrt.__version__
    except Exception as exc:  # noqa: BLE001  (a plain Exception without CUDA)
        info["torch_tensorrt"] = None
        info["torch_tensorrt_error"] = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return info


def make_model(name: str, num_refs: int | None = None) -> MotionTransferModel:
    """Random weights, with the identity-initialised parts (F_E, F_A, fusion) made non-trivial."""
    torch.manual_seed(0)
    cfg = preset(name)
    if num_refs is not None:
        cfg = cfg.replace(num_refs=num_refs)
    m = MotionTransferModel(cfg).eval()
    g = m.generator
    with torch.no_grad():
        for mod in (g.evolution.field.out, g.appearance.flow, g.dense_motion_network.confidence):
            mod.weight.normal_(0, 0.05)
            mod.bias.normal_(0, 0.05)
    return m


def latency(fn, iters: int, warmup: int, max_s: float = 20.0) -> dict:
    """Wall-clock latency per call (launch + GPU + sync), and CUDA-event time, in ms."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    walls, t_end = [], time.monotonic() + max_s
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        walls.append((time.perf_counter() - t0) * 1000.0)
        if time.monotonic() > t_end and len(walls) >= 20:
            break
    walls.sort()

    def pct(p: float) -> float:
        return walls[min(len(walls) - 1, int(round(p / 100 * (len(walls) - 1))))]

    return {"p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99), "fps_p50": 1000.0 / pct(50), "iters": len(walls)}


def max_err(out, ref) -> float:
    return float((out.float() - ref.float()).abs().max())


def cuda_graph(fn, args):
    """Capture fn(*args) once; return a replay function writing the same output tensors."""
    static = [a.clone() for a in args]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn(*static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = fn(*static)

    def replay():
        graph.replay()
        return outs
    return replay


def trt_parts(module) -> dict:
    """How torch-tensorrt partitioned the graph: TensorRT engines vs PyTorch fallbacks."""
    names = [n for n, _ in module.named_children()]
    return {"trt_blocks": sum("_run_on_acc" in n for n in names), "torch_blocks": sum("_run_on_gpu" in n for n in names)}


def main() -> int:
    ap = argparse.ArgumentParser(description="odecam GPU check: export, parity, timing")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--budget-s", type=float, default=480.0, help="stop starting new steps after this long")
    ap.add_argument("--iters", type=int, default=300)
    args = ap.parse_args()
    run = Run(Path(args.out), args.budget_s)
    m = run.data["machine"]
    print(f"machine: {m.get('gpu') or 'no CUDA GPU'}; torch {m['torch']} (CUDA {m['cuda']}); torch-tensorrt "
          f"{m.get('torch_tensorrt') or 'not available: ' + m.get('torch_tensorrt_error', '')}", flush=True)
    if not torch.cuda.is_available():
        run.note("no CUDA device: ran the CPU smoke check of the script only (tiny, eager; cuda-graph refusal)")
        try:
            import gpu_frame  # noqa: F401  (makes odecam.engine.backends importable without OpenCV)
            from odecam.engine.backends import get_backend

            get_backend("cuda-graph", make_model("tiny"), precision="fp16")
        except Exception as exc:  # noqa: BLE001  (BackendError: one sentence)
            run.note(f"cuda-graph without CUDA: {type(exc).__name__}: {exc}")
        model = make_model("tiny")
        ex = example_inputs(model)["frame"]
        with torch.no_grad():
            fg = FrameGraph(model)
            run.add({"preset": "tiny", "graph": "frame", "engine": "eager", "precision": "fp32",
                     "num_refs": model.cfg.num_refs, **latency(lambda: fg(*ex), 20, 2)})
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 parity at 1e-4 needs true fp32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    have_trt = m.get("torch_tensorrt") is not None
    if not have_trt:
        run.note("torch-tensorrt is not available (not installed, and no .whl/ folder carried, or its import failed): "
                 "TensorRT steps skipped; eager and CUDA-graph numbers only")
    import gpu_frame  # benchmarks/gpu_frame.py: the cuda-graph backend per frame and glass to glass

    models: dict[tuple, Any] = {}

    def model_for(name: str, num_refs: int):
        if (name, num_refs) not in models:
            if name == "lite":
                mdl, how = gpu_frame.lite_default(num_refs)
            else:
                mdl, how = make_model(name, num_refs), "random weights"
            models[(name, num_refs)] = (mdl.cuda().eval(), how)
        return models[(name, num_refs)]

    def step_frame(name: str, num_refs: int, precision: str, compile: bool = False) -> None:
        mdl, how = model_for(name, num_refs)
        rec = {"preset": name, "ode_steps": mdl.cfg.evolution.steps, "weights": how}
        if compile and run.left() < 90:
            run.add({**rec, "graph": "per-frame", "engine": "cuda-graph+compile", "precision": precision,
                     "num_refs": num_refs, "error": f"skipped: {run.left():.0f} s of budget left"})
            return
        try:
            run.add({**rec, **gpu_frame.per_frame(mdl, num_refs, precision, frames=args.iters, compile=compile)})
        except Exception as exc:  # noqa: BLE001
            run.add({**rec, "graph": "per-frame", "engine": "cuda-graph" + ("+compile" if compile else ""),
                     "precision": precision, "num_refs": num_refs, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            traceback.print_exc(limit=5)
        finally:
            torch.cuda.empty_cache()

    def step_g2g(name: str, num_refs: int) -> None:
        mdl, how = model_for(name, num_refs)
        rec = gpu_frame.glass_to_glass(mdl, num_refs, "fp16", frames=args.iters)
        run.add({"preset": name, "weights": how, "ode_steps": mdl.cfg.evolution.steps, **rec})

    refs: dict[tuple, dict] = {}

    def setup(name: str, num_refs: int | None = None) -> dict:
        key = (name, num_refs)
        if key not in refs:
            model = make_model(name, num_refs).cuda()
            v = model.cfg.num_refs + 1
            ex = example_inputs(model, v)
            with torch.no_grad():
                ref = FrameGraph(model, v)(*ex["frame"])[0]
                kp_ref = KeypointGraph(model)(*ex["keypoints"])[0]
            refs[key] = {"model": model, "ex": ex, "ref": ref, "kp_ref": kp_ref, "v": v}
        return refs[key]

    def base(name, graph, engine, precision, s) -> dict:
        return {"preset": name, "graph": graph, "engine": engine, "precision": precision,
                "num_refs": s["v"] - 1, "ode_steps": s["model"].cfg.evolution.steps}

    def step_eager(name: str, num_refs: int | None = None) -> None:
        s = setup(name, num_refs)
        model, ex, ref = s["model"], s["ex"]["frame"], s["ref"]
        fg = FrameGraph(model, s["v"]).eval()
        with torch.no_grad():
            run.add({**base(name, "frame", "eager", "fp32", s), **latency(lambda: fg(*ex), args.iters, 10),
                     "max_abs_err": 0.0})
            half = FrameGraph(copy.deepcopy(model).half(), s["v"]).eval()
            ex16 = [a.half() for a in ex]
            out16 = half(*ex16)[0]
            run.add({**base(name, "frame", "eager", "fp16", s), **latency(lambda: half(*ex16), args.iters, 10),
                     "max_abs_err": max_err(out16, ref)})
            try:
                replay = cuda_graph(half, ex16)
                out = replay()[0]
                run.add({**base(name, "frame", "eager+cudagraph", "fp16", s),
                         **latency(replay, args.iters, 10), "max_abs_err": max_err(out, ref)})
            except Exception as exc:  # noqa: BLE001
                run.add({**base(name, "frame", "eager+cudagraph", "fp16", s), "error": f"{type(exc).__name__}: {exc}"})

    def step_trt(name: str, precision: str, graph: str = "frame", num_refs: int | None = None,
                 via_export: bool = False) -> None:
        from odecam.export.tensorrt import compile_trt

        s = setup(name, num_refs)
        rec = base(name, graph, "tensorrt", precision, s)
        if not have_trt:
            run.add({**rec, "error": "torch-tensorrt not available"})
            return
        if run.left() < TRT_BUILD_S.get(name, 120):
            run.add({**rec, "error": f"skipped: {run.left():.0f} s of budget left"})
            return
        model = s["model"]
        module = FrameGraph(model, s["v"]) if graph == "frame" else KeypointGraph(model)
        ex = s["ex"][graph]
        want = s["ref"] if graph == "frame" else s["kp_ref"]
        t0 = time.monotonic()
        try:
            if via_export:
                from odecam.export import export_model, read_metadata
                from odecam.export.tensorrt import cast_inputs, load_trt

                tmp = Path(tempfile.mkdtemp(prefix="odecam-trt-"))
                paths = export_model(model, tmp, "tensorrt", num_views=s["v"], precision=precision, device="cuda",
                                     graphs=(graph,))
                meta = read_metadata(paths[graph])
                compiled = load_trt(paths[graph])
                inputs = cast_inputs(ex, precision, "cuda")
                rec["export"] = {"file_mb": round(paths[graph].stat().st_size / 1e6, 1), "format_version":
                                 meta["format_version"], "config_name": meta["config"].name}
            else:
                compiled, inputs = compile_trt(module, ex, precision, "cuda")
            rec["build_s"] = time.monotonic() - t0
            rec.update(trt_parts(compiled))
            with torch.no_grad():
                out = compiled(*inputs)[0]
                rec["max_abs_err"] = max_err(out, want)
                if precision == "fp32":
                    rec["parity_ok"] = rec["max_abs_err"] <= 1e-4
                run.add({**rec, **latency(lambda: compiled(*inputs), args.iters, 10)})
                try:
                    import torch_tensorrt

                    with torch_tensorrt.runtime.enable_cudagraphs(compiled) as cg:
                        cg(*inputs)
                        run.add({**rec, "engine": "tensorrt+cudagraph", **latency(lambda: cg(*inputs), args.iters, 10)})
                except Exception as exc:  # noqa: BLE001  (older torch-tensorrt: no CUDA-graph runtime)
                    run.add({**rec, "engine": "tensorrt+cudagraph", "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
        except Exception as exc:  # noqa: BLE001
            rec["build_s"] = time.monotonic() - t0
            run.add({**rec, "error": f"{type(exc).__name__}: {str(exc).strip()[:400]}"})
            traceback.print_exc(limit=3)
        finally:
            torch.cuda.empty_cache()

    plan = [
        lambda: step_frame("lite", 1, "fp16"),
        lambda: step_frame("vox256", 0, "fp16"),
        lambda: step_frame("lite", 0, "fp16"),
        lambda: step_g2g("lite", 1),
        lambda: step_frame("lite", 1, "fp32"),
        lambda: step_frame("vox256", 0, "fp32"),
        lambda: step_eager("lite"),
        lambda: step_eager("vox256"),
        lambda: step_frame("lite", 1, "fp16", compile=True),
        lambda: step_trt("tiny", "fp32"),
        lambda: step_trt("lite", "fp16", via_export=True),
        lambda: step_trt("vox256", "fp16"),
        lambda: step_trt("lite", "fp32"),
        lambda: step_trt("lite", "fp16", graph="keypoints"),
        lambda: step_trt("vox256", "fp16", graph="keypoints"),
        lambda: step_trt("vox256", "fp32"),
        lambda: step_eager("vox256", num_refs=1),
        lambda: step_trt("vox256", "fp16", num_refs=1),
    ]
    for i, step in enumerate(plan):
        if run.left() <= 0:
            run.note(f"time budget spent: steps {i + 1}..{len(plan)} not run")
            break
        try:
            step()
        except Exception as exc:  # noqa: BLE001  (a failed step must not lose the others)
            run.note(f"step {i + 1} failed: {type(exc).__name__}: {str(exc)[:300]}")
            traceback.print_exc(limit=5)
    # targets: best fp16 per-frame fps (keypoints included) per preset at its default N: cuda-graph's per-frame
    # runs, or TensorRT's frame + keypoint graphs added up
    for name, target in TARGETS.items():
        n_default = preset(name).num_refs
        ok = [r for r in run.data["runs"] if r["preset"] == name and r["precision"] == "fp16" and "error" not in r
              and r.get("num_refs") == n_default]
        cands = [(r["fps_p50"], r["engine"]) for r in ok if r["graph"] == "per-frame"]
        for eng in ("tensorrt", "tensorrt+cudagraph"):
            fr = [r for r in ok if r["engine"] == eng and r["graph"] == "frame"]
            kp = [r for r in ok if r["engine"] == eng and r["graph"] == "keypoints"]
            if fr and kp:
                cands.append((1000.0 / (fr[0]["p50_ms"] + kp[0]["p50_ms"]), f"{eng} (frame + keypoints)"))
        best = max(cands, default=None)
        run.data["targets"][f"{name}_per_frame_fp16_fps"] = {
            "target": target, "value": best[0] if best else None, "engine": best[1] if best else None,
            "met": bool(best and best[0] >= target)}
    run.save()
    print(f"wrote {run.path} ({run.data['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A/B of the CPU per-frame path against another checkout, interleaved in one process (fair on a loaded machine).

The other checkout (``--old``, e.g. ``git archive HEAD~3 | tar -x -C /tmp/old``) exports its keypoints and
frame graphs to ONNX in a subprocess; this checkout builds its onnxruntime backend in-process. Then both run
frame by frame, alternating (old, new, old, new, ...), each frame being a uint8 frame in (``to_tensor``, pooled
for F_K where this checkout's backend pools beside the graph), keypoints + frame graph + uint8 conversion, on the
same inputs. Reports p50/p95 per side, the ratio, and the max abs difference of the
rendered images (new against old, float in [0, 1]).

Usage (from the repository root)::

    git archive HEAD | tar -x -C /tmp/odecam-old
    python benchmarks/ab_cpu.py --old /tmp/odecam-old --refs 0 1 --out benchmarks/results/ab_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_EXPORT_OLD = r"""
import sys, torch
from odecam.assets import DEFAULT_WEIGHTS
from odecam.checkpoint import load_checkpoint
from odecam.config import preset
from odecam.export.exporter import graph_modules
from odecam.export.onnx import to_onnx_bytes
size, refs, out, random = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
cfg = preset("lite").replace(image_size=size, num_refs=refs)
if not random:  # the default's own architecture (its config travels in the checkpoint)
    from odecam.checkpoint import read_checkpoint
    cfg = read_checkpoint(DEFAULT_WEIGHTS)[0].replace(image_size=size, num_refs=refs)
if random:
    from odecam.model import MotionTransferModel
    torch.manual_seed(0)
    model = MotionTransferModel(cfg).eval()
else:
    model = load_checkpoint(DEFAULT_WEIGHTS, cfg=cfg)
mods = graph_modules(model, refs + 1, cfg.evolution.steps)
# the frame graph that checkout's onnxruntime backend runs: frame_tail (image-skip warp and blend beside it)
# if it has one
tail = "frame_tail" in mods and cfg.generator.image_skip
for g in ("keypoints", "frame_tail" if tail else "frame"):
    module, args, inputs, outputs = mods[g]
    open(f"{out}/{g.split('_')[0]}.onnx", "wb").write(to_onnx_bytes(module, args, inputs, outputs))
if tail:
    open(f"{out}/tail", "w").write("frame_tail: decoded, skip_mask, displacement, weights, ode_ok; features NHWC")
    if getattr(mods["frame_tail"][0], "nhwc_tail", False):
        open(f"{out}/nhwc_tail", "w").write("frame_tail's decoded and skip_mask are channels-last")
    if getattr(mods["frame_tail"][0], "phase_tail", False):
        open(f"{out}/phase_tail", "w").write("frame_tail: phases, displacement, weights, ode_ok")
    import odecam.export.graphs as graphs
    if hasattr(graphs, "finish_tail"):
        open(f"{out}/finish_tail", "w").write("the backend finishes the frame with graphs.finish_tail")
"""


def export_old(old: Path, size: int, refs: int, random: bool) -> Path:
    out = Path(tempfile.mkdtemp(prefix=f"odecam-ab-old-n{refs}-"))
    env = dict(os.environ, PYTHONPATH=str(old), OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-c", _EXPORT_OLD, str(size), str(refs), str(out), "1" if random else "0"],
                   check=True, env=env, cwd=str(old))
    return out


def _old_module(root: Path, rel: str):
    """A module file of the other checkout, loaded under a private name (its image-skip tail: OpenCV and torch
    only, no imports from its package), so the old side runs the old code."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"odecam_ab_old_{Path(rel).stem}", root / rel)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ab_case(old_dir: Path, refs: int, size: int, random: bool, frames: int, threads: int,
            old_root: Path) -> dict:
    """``old_dir``: the other checkout's exported graphs; ``old_root``: that checkout."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from odecam.engine.backends import OnnxRuntimeBackend
    from odecam.engine.images import to_image, to_tensor
    from odecam.export.graphs import state_to_inputs
    from odecam.export.graphs import finish_tail
    from odecam.model.generator import blend_skip, warp_images

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from profile_ort import lite_model

    model = lite_model(refs, size, random)
    # both sides with sleeping threads: the A/B compares the code, not the spin-waiting policy (spin_ab.py does)
    new = OnnxRuntimeBackend(model, "cpu", threads=threads, spin="off")
    so = new.session_options()
    old_kp = ort.InferenceSession(str(old_dir / "keypoints.onnx"), so, providers=["CPUExecutionProvider"])
    old_fr = ort.InferenceSession(str(old_dir / "frame.onnx"), new.session_options(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    with torch.no_grad():
        views = torch.rand(1, refs + 1, 3, size, size, generator=torch.Generator().manual_seed(0))
        state = model.prepare_views(views)
    new.prepare(state)
    # the old side's state: the image skip's view images without this checkout's margin (generator.skip_margin),
    # as a checkout before it prepared them
    old_state, margin = dict(state), getattr(model.generator, "skip_margin", 0)
    if margin and "image" in state:
        old_state["image"] = state["image"][:, :, margin:-margin, margin:-margin].contiguous()
    old_inputs = {i.name for i in old_fr.get_inputs()}
    old_feed = {k: v.detach().float().contiguous().numpy() for k, v in state_to_inputs(model, old_state).items()
                if k in old_inputs}
    old_tail = (old_dir / "tail").exists()  # the old backend's frame_tail graph: features NHWC, view images in torch
    # the old backend's torch tail: graphs.finish_tail where that checkout has it (this checkout's copy of it:
    # parameter-free code), else generator.warp_images + blend_skip
    old_finish = old_tail and (old_dir / "finish_tail").exists()
    old_nhwc = old_tail and (old_dir / "nhwc_tail").exists()
    old_phases = old_nhwc and (old_dir / "phase_tail").exists()
    if old_tail:
        old_feed["features"] = np.ascontiguousarray(old_feed["features"].transpose(0, 2, 3, 1))
        view_images = old_state["image"].detach().float().contiguous()
    if old_nhwc:  # that checkout finishes the frame with its own odecam.engine.image_skip.ImageSkipTail (OpenCV)
        old_skip = _old_module(old_root, "odecam/engine/image_skip.py").ImageSkipTail(
            old_state["image"], tuple(state["image_small"].shape[2:]))
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(4)]  # uint8 frames, as live's
    old_input = torch.empty(1, 3, size, size)
    new_input = torch.empty(1, 3, size // new.keypoint_pool, size // new.keypoint_pool)

    def run_old(img):
        kp = old_kp.run(None, {"image": to_tensor(img, size, out=old_input).numpy()})[0]
        outs = old_fr.run(None, {**old_feed, "kp_driving": kp})
        if old_phases:  # F_G's head unshuffled: that checkout's ImageSkipTail.from_phases
            out = old_skip.from_phases(outs[0], torch.from_numpy(outs[1]), torch.from_numpy(outs[2]))
            return to_image(out), out
        if old_tail:  # as that checkout's OnnxRuntimeBackend.run_frame finishes the frame (same torch code)
            decoded, mask, disp, weights = (torch.from_numpy(o) for o in outs[:4])
            if old_nhwc:
                out = old_skip(decoded, mask, disp, weights)
                return to_image(out), out
            with torch.no_grad():
                out = (finish_tail(view_images, decoded, mask, disp, weights) if old_finish
                       else blend_skip(decoded, mask, warp_images(view_images, disp, weights)))
        else:
            out = torch.from_numpy(outs[0])
        return to_image(out), out

    def run_new(img):
        kp, _ = new.run_keypoints(to_tensor(img, size, out=new_input, pool=new.keypoint_pool))
        out, _ = new.run_frame(kp)
        return to_image(out), out

    for i in range(5):
        run_old(images[i % 4])
        run_new(images[i % 4])
    t_old, t_new, diff = [], [], 0.0
    for i in range(frames):
        img = images[i % 4]
        pair = [("old", run_old), ("new", run_new)] if i % 2 == 0 else [("new", run_new), ("old", run_old)]
        outs = {}
        for name, fn in pair:
            t0 = time.perf_counter()
            outs[name] = fn(img)
            (t_old if name == "old" else t_new).append((time.perf_counter() - t0) * 1000.0)
        diff = max(diff, float((outs["new"][1] - outs["old"][1]).abs().max()))
    pct = lambda a, q: float(np.percentile(a, q))  # noqa: E731
    rec = {"refs": refs, "size": size, "frames": frames, "weights": "random" if random else "default",
           "old_graph": ("frame_tail + graphs.finish_tail" if old_finish else
                         "frame_tail + warp_images / blend_skip" if old_tail else "frame"),
           "old_p50_ms": pct(t_old, 50), "old_p95_ms": pct(t_old, 95), "new_p50_ms": pct(t_new, 50),
           "new_p95_ms": pct(t_new, 95), "max_abs_diff": diff}
    rec["speedup_p50"] = rec["old_p50_ms"] / rec["new_p50_ms"]
    return rec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="root of the other checkout (holds odecam/)")
    ap.add_argument("--refs", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--random", action="store_true")
    ap.add_argument("--out", default=None, help="write the records as JSON here")
    args = ap.parse_args()
    import torch

    from odecam.engine.backends import cpu_cores

    threads = args.threads or cpu_cores()
    torch.set_num_threads(1)
    from odecam.commands.bench import cpu_model

    result = {"old": str(args.old), "threads": threads, "machine": f"{cpu_model()}, {cpu_cores()} cores",
              "loadavg_start": list(os.getloadavg()), "cases": []}
    for n in args.refs:
        old_dir = export_old(Path(args.old), args.size, n, args.random)
        rec = ab_case(old_dir, n, args.size, args.random, args.frames, threads, Path(args.old))
        result["cases"].append(rec)
        print(f"lite@{args.size} N={n}: old p50 {rec['old_p50_ms']:.2f} ms (p95 {rec['old_p95_ms']:.2f}), "
              f"new p50 {rec['new_p50_ms']:.2f} ms (p95 {rec['new_p95_ms']:.2f}): {rec['speedup_p50']:.2f}x; "
              f"max abs diff {rec['max_abs_diff']:.1e}", flush=True)
    result["loadavg_end"] = list(os.getloadavg())
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``odecam export``: write the avatar, keypoints and per-frame graphs as ONNX, TorchScript or TensorRT."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "export"
HELP = "export the per-frame graph (and the once-per-avatar and keypoint graphs) to onnx, torchscript or tensorrt"

from odecam.commands._common import num_refs, ode_steps
from odecam.export.options import FORMATS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="model weights (.safetensors); default: the trained default if installed, "
                                        "else an untrained --preset")
    p.add_argument("--preset", choices=["lite", "vox256", "tiny"], help="architecture when no checkpoint is given")
    p.add_argument("--format", default="onnx", type=str.lower,
                   help=f"{', '.join(FORMATS)} (default: onnx)")
    p.add_argument("-o", "--output", required=True, help="output folder (created): avatar, keypoints and frame graphs "
                                                         "plus manifest.json")
    p.add_argument("--num-refs", type=num_refs, default=None,
                   help="reference views N the frame graph takes (default: the model's); V = N + 1 is fixed per export")
    p.add_argument("--ode-steps", type=ode_steps, default=None, help="fixed ODE steps unrolled into the graph (default: the model's)")
    p.add_argument("--precision", default="fp16", choices=["fp16", "fp32"], help="tensorrt only (default: fp16)")
    p.add_argument("--graphs", nargs="+", default=["avatar", "keypoints", "frame"],
                   choices=["avatar", "keypoints", "frame"], help="which graphs to write (default: all three)")
    p.add_argument("--check", action="store_true", help="run the exported frame graph and report its max abs error "
                                                        "against eager")


def run(args: argparse.Namespace) -> int:
    from odecam.errors import OdecamError
    from odecam.export import FORMATS as KNOWN
    from odecam.export import export_model

    if args.format not in KNOWN:
        raise OdecamError(f"unknown export format {args.format!r}; choose one of {', '.join(KNOWN)}.")
    if args.checkpoint and not Path(args.checkpoint).exists():
        raise OdecamError(f"checkpoint {args.checkpoint!r} does not exist; check the path.")
    if args.num_refs is not None and not 0 <= args.num_refs <= 6:
        raise OdecamError(f"--num-refs must be between 0 and 6, got {args.num_refs}.")
    if args.ode_steps is not None and args.ode_steps < 1:
        raise OdecamError(f"--ode-steps must be at least 1, got {args.ode_steps}.")
    if args.format == "tensorrt":
        from odecam.export.tensorrt import import_torch_tensorrt

        import_torch_tensorrt()  # one sentence when there is no CUDA or no torch-tensorrt, before loading weights
    from odecam.engine.weights import load_model

    loaded = load_model(args.checkpoint, args.preset)
    model = loaded.model
    num_views = (model.cfg.num_refs if args.num_refs is None else args.num_refs) + 1
    device = "cuda" if args.format == "tensorrt" else "cpu"
    print(f"odecam export: {loaded.description}; {args.format}, N={num_views - 1} reference views, "
          f"{args.ode_steps or model.cfg.evolution.steps} ODE steps")
    paths = export_model(model, args.output, args.format, num_views=num_views, ode_steps=args.ode_steps,
                         precision=args.precision, device=device, graphs=tuple(args.graphs))
    for name, path in paths.items():
        size = path.stat().st_size / 1e6
        print(f"  {name:9} {path} ({size:.1f} MB)")
    if args.check and "frame" in paths:
        err = check_export(model, args.output, num_views)
        print(f"frame graph vs eager: max abs error {err:.2e}")
    return 0


def check_export(model, out_dir: str | Path, num_views: int) -> float:
    """Max abs error of the exported frame graph against eager on example inputs."""
    import torch

    from odecam.engine.backends import load_backend
    from odecam.export.graphs import STATE_KEYS, FrameGraph, avatar_names, example_inputs, frame_input_names

    backend = load_backend(out_dir)
    ex = example_inputs(model, num_views)["frame"]
    with torch.no_grad():
        ref = FrameGraph(model, num_views, backend.ode_steps)(*ex)[0]
    named = dict(zip(frame_input_names(model), ex))
    state = {STATE_KEYS[n]: named[n] for n in avatar_names(model)}
    backend.prepare(state)
    out, _ = backend.run_frame(named["kp_driving"], named.get("jac_driving"))
    return float((out.cpu() - ref.cpu()).abs().max())

"""``export_model``: write the avatar, keypoints and frame graphs of a model in one format.

Layout of an export folder (``odecam export -o OUT``)::

    OUT/manifest.json          format version, format, config, V, ODE steps, precision, graph files
    OUT/avatar.{onnx,pt,ep}    once per avatar
    OUT/keypoints.{...}        per frame: F_K
    OUT/frame.{...}            per frame: keypoints + avatar state -> image, ode_ok
    OUT/*.json                 (TensorRT only) metadata sidecars

Every graph file carries the config and format version itself (:mod:`odecam.export.metadata`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from odecam.export.graphs import (FRAME_OUTPUTS, AvatarGraph, FrameGraph, KeypointGraph, avatar_names,
                                  example_inputs, frame_input_names, frame_output_names, keypoint_names)
from odecam.export.metadata import SUFFIX, ExportError, graph_metadata, write_manifest
from odecam.export.options import FORMATS
from odecam.model import MotionTransferModel


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    return fmt


def graph_modules(model: MotionTransferModel, num_views: int, ode_steps: int) -> dict[str, tuple]:
    """{graph: (module, example args, input names, output names)} for the three graphs."""
    ex = example_inputs(model, num_views)
    return {
        "avatar": (AvatarGraph(model), ex["avatar"], ["views"], avatar_names(model)),
        "keypoints": (KeypointGraph(model), ex["keypoints"], ["image"], keypoint_names(model)),
        "frame": (FrameGraph(model, num_views, ode_steps), ex["frame"], frame_input_names(model), list(FRAME_OUTPUTS)),
        # in-process onnxruntime only (never written by export_model): F_K on a frame pooled beside the graph, and
        # the frame graph without the image-skip tail
        "keypoints_pooled": (KeypointGraph(model, pooled=True), _pooled(model, ex["keypoints"]), ["image"],
                             keypoint_names(model)),
        "frame_tail": (FrameGraph(model, num_views, ode_steps, skip_tail=True, nhwc_features=True, nhwc_tail=True,
                                  phase_tail=True),
                       _nhwc_features(model, ex["frame"]), frame_input_names(model),
                       list(frame_output_names(model, skip_tail=True, phase_tail=True))),
    }


def _pooled(model: MotionTransferModel, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The keypoints graph's example image area-pooled as F_K pools it (``area_factor``)."""
    n = model.kp_detector.area_factor
    return tuple(torch.nn.functional.avg_pool2d(a, n) if n > 1 else a for a in args)


def _nhwc_features(model: MotionTransferModel, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The frame graph's example inputs with 'features' channels-last."""
    names = frame_input_names(model)
    return tuple(a.permute(0, 2, 3, 1).contiguous() if n == "features" else a for n, a in zip(names, args))


def export_model(model: MotionTransferModel, out_dir: str | Path, fmt: str = "onnx", num_views: int | None = None,
                 ode_steps: int | None = None, precision: str = "fp32", device: str = "cpu",
                 graphs: tuple[str, ...] = ("avatar", "keypoints", "frame")) -> dict[str, Path]:
    """Export ``graphs`` of ``model`` to ``out_dir`` in ``fmt`` ('onnx', 'torchscript', 'tensorrt').

    ``num_views`` defaults to the config's N + 1, ``ode_steps`` to its ODE steps. ``precision`` ('fp32'
    or 'fp16') and ``device`` apply to TensorRT (ONNX and TorchScript are written in fp32 on the CPU).
    Returns {graph: path}, plus 'manifest'.
    """
    check_format(fmt)
    model = model.eval()
    cfg = model.cfg
    num_views = int(num_views if num_views is not None else cfg.num_refs + 1)
    ode_steps = int(ode_steps if ode_steps is not None else cfg.evolution.steps)
    if num_views < 1:
        raise ExportError(f"num_views must be at least 1 (the source), got {num_views}.")
    if ode_steps < 1:
        raise ExportError(f"ode_steps must be at least 1, got {ode_steps}.")
    unknown = set(graphs) - {"avatar", "keypoints", "frame"}
    if unknown:
        raise ExportError(f"unknown graphs {sorted(unknown)}; choose from avatar, keypoints, frame.")
    if fmt != "tensorrt":
        precision, device = "fp32", "cpu"
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"output {str(out_dir)!r} is a file; pass a folder for the exported graphs.")
    out_dir.mkdir(parents=True, exist_ok=True)
    mods = graph_modules(model, num_views, ode_steps)
    paths: dict[str, Path] = {}
    for name in graphs:
        module, args, inputs, outputs = mods[name]
        meta = graph_metadata(cfg, name, fmt, inputs, outputs, num_views, ode_steps, precision, device)
        path = out_dir / f"{name}{SUFFIX[fmt]}"
        if fmt == "onnx":
            from odecam.export.onnx import save_onnx

            save_onnx(module, args, path, inputs, outputs, meta)
        elif fmt == "torchscript":
            from odecam.export.torchscript import save_torchscript

            save_torchscript(module, args, path, meta)
        else:
            from odecam.export.tensorrt import compile_trt, save_trt

            compiled, trt_inputs = compile_trt(module, args, precision, device)
            save_trt(compiled, trt_inputs, path, meta)
        paths[name] = path
    paths["manifest"] = write_manifest(out_dir, cfg, fmt, {n: p.name for n, p in paths.items()}, num_views,
                                       ode_steps, precision, {"torch_version": torch.__version__})
    return paths

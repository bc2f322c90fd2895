"""ONNX export through ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript).

The dynamo exporter handles every op of the three graphs (GridSample, Einsum, the unrolled ODE);
the TorchScript-based exporter mistypes one grid as double, which onnxruntime refuses, so it is not used.
Wide feature warps are exported as row gathers (:func:`odecam.model.geometry.gather_warp`): onnxruntime's
CPU GridSample is about 3x slower on them; a few layers take their export forms
(:func:`odecam.model.fastpath.export_fastpath`: fused output convolutions, tap-decomposed skinny heads).
The config and format version go into the model's ``metadata_props``.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from odecam.export.metadata import ExportError
from odecam.model.fastpath import export_fastpath
from odecam.model.geometry import gather_warp

OPSET = 18


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Silence the exporters' progress lines and warnings (torchvision missing, deprecations)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript",
                                              "torch.fx.experimental.symbolic_shapes")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(None):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


def to_onnx_proto(module: nn.Module, args: tuple[torch.Tensor, ...], input_names: list[str],
                  output_names: list[str], metadata: dict[str, str] | None = None):
    """Export ``module(*args)`` to an ``onnx.ModelProto`` with static shapes and the given names."""
    module = module.eval()
    try:
        with quiet_export(), torch.no_grad(), gather_warp(), export_fastpath():
            program = torch.onnx.export(module, args, dynamo=True, input_names=input_names,
                                        output_names=output_names, opset_version=OPSET, optimize=True,
                                        verbose=False)
    except Exception as exc:  # the exporter raises many types; name the graph and the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"ONNX export of {type(module).__name__} failed: {first[:300]}") from exc
    proto = program.model_proto
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto


def to_onnx_bytes(module: nn.Module, args: tuple[torch.Tensor, ...], input_names: list[str],
                  output_names: list[str], metadata: dict[str, str] | None = None) -> bytes:
    """Like :func:`to_onnx_proto`, serialised (what ``onnxruntime.InferenceSession`` accepts)."""
    return to_onnx_proto(module, args, input_names, output_names, metadata).SerializeToString()


def save_onnx(module: nn.Module, args: tuple[torch.Tensor, ...], path: str | Path, input_names: list[str],
              output_names: list[str], metadata: dict[str, str] | None = None) -> Path:
    """Export and write one ``.onnx`` file (weights inside the file: every graph here is under 2 GB)."""
    import onnx

    path = Path(path)
    proto = to_onnx_proto(module, args, input_names, output_names, metadata)
    tmp = path.with_suffix(".onnx.tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(path)
    return path

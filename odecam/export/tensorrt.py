"""TensorRT through torch-tensorrt (the optional ``tensorrt`` extra), imported lazily.

``torch.export`` -> ``torch_tensorrt.dynamo.compile`` (static shapes, batch 1) -> an ExportedProgram
holding TensorRT engines, saved as ``NAME.ep`` with its metadata in a sidecar ``NAME.json``. fp16
casts a copy of the graph and its inputs to half (explicit typing); fp32 disables TF32 so the output
stays within 1e-4 of eager. Engines are tied to the GPU model and TensorRT version that built them.

Without CUDA, ``import torch_tensorrt`` raises a plain ``Exception`` (not ``ImportError``): CUDA is
checked first, and any import failure becomes one :class:`ExportError` sentence.
"""

from __future__ import annotations

import copy
import inspect
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from odecam.export.metadata import ExportError

PRECISIONS = ("fp32", "fp16")


def cuda_available() -> bool:
    return torch.cuda.is_available()


def import_torch_tensorrt() -> Any:
    """``torch_tensorrt``, or :class:`ExportError` naming why it cannot be used here."""
    if not cuda_available():
        raise ExportError("TensorRT needs a CUDA GPU and this machine has none (torch.cuda.is_available() is False); "
                          "on a CPU use onnxruntime (--format onnx, --backend onnxruntime).")
    try:
        import torch_tensorrt  # noqa: F401  (heavy; registers the TensorRT runtime ops)
    except Exception as exc:  # not installed, or a plain Exception from a broken CUDA/TensorRT install
        raise ExportError(f"TensorRT needs the optional torch-tensorrt package built for torch "
                          f"{'.'.join(torch.__version__.split('.')[:2])} (pip install 'odecam[tensorrt]'); "
                          f"importing it failed: {str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__}.") from None
    return torch_tensorrt


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    return precision


def cast_inputs(args: tuple[torch.Tensor, ...], precision: str, device: str | torch.device) -> tuple[torch.Tensor, ...]:
    dtype = torch.float16 if precision == "fp16" else torch.float32
    return tuple(a.to(device=device, dtype=dtype) if a.is_floating_point() else a.to(device) for a in args)


def compile_trt(module: nn.Module, args: tuple[torch.Tensor, ...], precision: str = "fp16",
                device: str = "cuda", **options: Any) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Compile ``module(*args)`` with TensorRT. Returns (compiled module, the device/dtype inputs it expects).

    The module is deep-copied first: the caller's model is neither moved nor cast.
    """
    trt = import_torch_tensorrt()
    check_precision(precision)
    mod = copy.deepcopy(module).eval().to(device)
    if precision == "fp16":
        mod = mod.half()
    inputs = cast_inputs(args, precision, device)
    params = inspect.signature(trt.dynamo.compile).parameters
    kwargs: dict[str, Any] = {"min_block_size": 1}
    if "arg_inputs" in params:
        kwargs["arg_inputs"] = list(inputs)
    else:
        kwargs["inputs"] = list(inputs)
    if precision == "fp16":
        if "use_explicit_typing" in params:
            kwargs["use_explicit_typing"] = True  # the graph is half: TensorRT keeps its types
        else:
            kwargs["enabled_precisions"] = {torch.float16}
    elif "disable_tf32" in params:
        kwargs["disable_tf32"] = True
    kwargs.update({k: v for k, v in options.items() if k in params})
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            exported = torch.export.export(mod, inputs)
            compiled = trt.dynamo.compile(exported, **kwargs)
    except ExportError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"TensorRT compilation of {type(module).__name__} failed: {first[:300]}") from exc
    return compiled, inputs


def save_trt(compiled: nn.Module, inputs: tuple[torch.Tensor, ...], path: str | Path,
             metadata: dict[str, str] | None = None) -> Path:
    """Write the compiled program (``.ep``) and its metadata sidecar (``.json``)."""
    trt = import_torch_tensorrt()
    path = Path(path)
    params = inspect.signature(trt.save).parameters
    kwargs: dict[str, Any] = {"output_format": "exported_program"}
    kwargs["arg_inputs" if "arg_inputs" in params else "inputs"] = list(inputs)
    trt.save(compiled, str(path), **kwargs)
    path.with_suffix(".json").write_text(json.dumps(metadata or {}, indent=2) + "\n")
    return path


def load_trt(path: str | Path) -> nn.Module:
    """Load a saved TensorRT program as a callable module (needs torch-tensorrt and CUDA)."""
    import_torch_tensorrt()
    return torch.export.load(str(path)).module()

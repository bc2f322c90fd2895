"""TorchScript export: ``torch.jit.trace`` then ``torch.jit.freeze`` (weights folded in as constants).

The graphs have no data-dependent control flow (the ODE is unrolled), so tracing is exact. The config
and format version travel in the archive's ``_extra_files`` (``odecam.json``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from odecam.export.metadata import TORCHSCRIPT_EXTRA, ExportError


def to_torchscript(module: nn.Module, args: tuple[torch.Tensor, ...], freeze: bool = True) -> torch.jit.ScriptModule:
    """Trace ``module(*args)`` into a (frozen) ScriptModule."""
    module = module.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, args, check_trace=False)
            return torch.jit.freeze(traced) if freeze else traced
    except Exception as exc:  # tracing raises RuntimeError and friends
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"TorchScript export of {type(module).__name__} failed: {first[:300]}") from exc


def save_torchscript(module: nn.Module, args: tuple[torch.Tensor, ...], path: str | Path,
                     metadata: dict[str, str] | None = None) -> Path:
    """Trace, freeze and write one ``.pt`` archive with the metadata in ``_extra_files``."""
    path = Path(path)
    script = to_torchscript(module, args)
    tmp = path.with_suffix(".pt.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(script, str(tmp), _extra_files={TORCHSCRIPT_EXTRA: json.dumps(metadata or {})})
    tmp.replace(path)
    return path


def load_torchscript(path: str | Path, device: str = "cpu") -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path), map_location=device).eval()

"""Export the model for deployment: ONNX, TorchScript or TensorRT (torch-tensorrt, optional, lazy).

Three graphs (:mod:`odecam.export.graphs`): ``avatar`` (once per avatar), ``keypoints`` (F_K per frame)
and ``frame`` (normalised driving keypoints + avatar state -> image, the ODE unrolled). Each file carries
the config and :data:`FORMAT_VERSION` (:mod:`odecam.export.metadata`). Attributes load lazily, so that
``odecam.export.options`` can be imported without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "export_model": "odecam.export.exporter",
    "FORMATS": "odecam.export.options",
    "FORMAT_VERSION": "odecam.export.metadata",
    "ExportError": "odecam.export.metadata",
    "read_manifest": "odecam.export.metadata",
    "read_metadata": "odecam.export.metadata",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'odecam.export' has no attribute {name!r}")

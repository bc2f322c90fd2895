"""Names shared by the CLI, the exporter and the backends; light (no torch import), so every command's
parser can offer ``--backend`` without slowing ``odecam --help``."""

from __future__ import annotations

import argparse

#: inference backends (see :mod:`odecam.engine.backends`)
BACKENDS = ("torch", "torchscript", "onnxruntime", "tensorrt", "cuda-graph")
#: ``--backend auto`` (the default): onnxruntime on a CPU, torch on CUDA (see ``odecam.engine.threads.choose_backend``)
AUTO = "auto"
BACKEND_CHOICES = (AUTO,) + BACKENDS
ALIASES = {"eager": "torch", "pytorch": "torch", "ts": "torchscript", "ort": "onnxruntime", "onnx": "onnxruntime",
           "trt": "tensorrt", "torch-tensorrt": "tensorrt", "cudagraph": "cuda-graph", "cuda_graph": "cuda-graph",
           "cuda-graphs": "cuda-graph"}
PRECISIONS = ("fp32", "fp16")
#: export formats (see :mod:`odecam.export`)
FORMATS = ("onnx", "torchscript", "tensorrt")


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--precision``, for every command that renders."""
    p.add_argument("--backend", default=AUTO, type=str.lower,
                   help=f"inference backend: {', '.join(BACKEND_CHOICES)} (default: auto = onnxruntime on a CPU, "
                        "torch on CUDA; tensorrt needs CUDA and torch-tensorrt)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="numeric precision: fp16 for tensorrt (and torch on CUDA) (default: fp32)")

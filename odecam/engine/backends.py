"""Inference backends for the per-frame path, behind one switch.

=============  =====================================================================  ==================
name           what runs                                                              stages timed
=============  =====================================================================  ==================
torch          the eager model (``MotionTransferModel.animate``)                       every stage
torchscript    traced + frozen keypoints and frame graphs                             keypoints, frame
onnxruntime    ONNX graphs in onnxruntime (CPU; CUDA where its provider is present)   keypoints, frame
tensorrt       TensorRT engines through torch-tensorrt (CUDA only; fp16 or fp32)      keypoints, frame
cuda-graph     the model replayed as CUDA graphs, fp16 generator (CUDA only;          keypoints, frame
               :mod:`odecam.engine.cuda_graph`; no export, no TensorRT)
=============  =====================================================================  ==================

:func:`get_backend` builds one from a model (the graphs are exported in-process; ONNX exports are
cached on disk, keyed by weights and shape); :func:`load_backend` builds one from an ``odecam export``
folder. Every backend offers:

* ``prepare(state)`` — take an avatar state (``MotionTransferModel.prepare_views``'s dict) as inputs;
* ``run_keypoints(image)`` — (1, 3, S, S) float in [0, 1] -> raw keypoints (1, K, 2), jacobians or None; a
  backend whose ``keypoint_pool`` n > 1 (in-process onnxruntime with an F_K that area-pools its input) also takes
  the frame already pooled, (1, 3, S / n, S / n): ``odecam.engine.images.to_tensor(..., pool=n)``;
* ``run_frame(kp, jac, timer)`` — normalised driving keypoints -> (image (1, 3, S, S) float32, ode_ok);
* ``run_avatar(views)`` — (1, V, 3, S, S) -> an avatar state, through the avatar graph where exported.

Outputs are float32 torch tensors on the CPU (or on the backend's CUDA device for torch / tensorrt).

This module holds the eager, TorchScript and TensorRT backends and the factories; the interface and the graph
backends' base are in :mod:`odecam.engine.backend_base`, onnxruntime's backend in :mod:`odecam.engine.ort_backend`
and the CUDA-graph one in :mod:`odecam.engine.cuda_graph` (all importable from here).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from odecam.engine.backend_base import (  # noqa: F401  (the backends' public names live here)
    Backend, BackendError, StageTimer, _GraphBackend, _no_timer, _state_from_outputs, _views_of, backend_name,
    cpu_cores, torch_threads_for, _check_precision)
from odecam.engine.ort_backend import OnnxRuntimeBackend, onnx_cache_dir  # noqa: F401
from odecam.export.options import ALIASES, BACKENDS, PRECISIONS, add_backend_arguments  # noqa: F401
from odecam.model import MotionTransferModel


# -- torch (eager) -----------------------------------------------------------------------------------
class TorchBackend(Backend):
    """The eager model; times every stage of ``animate``."""

    name = "torch"
    stages = ("keypoints", "coarse_motion", "ode", "warp", "appearance", "decoder")

    def __init__(self, model: MotionTransferModel, device: str | torch.device = "cpu", precision: str = "fp32",
                 ode_steps: int | None = None) -> None:
        super().__init__(model, device, precision, ode_steps)
        param = next(model.parameters())
        if precision == "fp16" or param.device != self.device:
            self.model = copy.deepcopy(model).to(self.device)
            if precision == "fp16":
                self.model = self.model.half()
        self.dtype = next(self.model.parameters()).dtype
        self.state: dict[str, torch.Tensor] | None = None

    def prepare(self, state: dict[str, torch.Tensor]) -> None:
        self.state = {k: v.to(self.device, self.dtype if v.is_floating_point() else v.dtype) for k, v in state.items()}
        self.num_views = _views_of(state)

    @torch.no_grad()
    def run_keypoints(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        kp = self.model.kp_detector(image.to(self.device, self.dtype))
        jac = kp.get("jacobian")
        return kp["value"].float(), (jac.float() if jac is not None else None)

    @torch.no_grad()
    def run_frame(self, kp: torch.Tensor, jac: torch.Tensor | None = None,
                  timer: StageTimer = _no_timer) -> tuple[torch.Tensor, bool]:
        if self.state is None:
            raise BackendError("call prepare(avatar_state) before run_frame.")
        kp = kp.to(self.device, self.dtype)
        jac = jac.to(self.device, self.dtype) if jac is not None else None
        out = self.model.animate(self.state, kp, jac, num_views=self.num_views, ode_steps=self.ode_steps, timer=timer)
        return out["prediction"].float(), bool(out["ode_ok"])


# -- TorchScript / TensorRT (torch modules run on torch tensors) ---------------------------------------
class _TorchGraphBackend(_GraphBackend):
    """Shared by TorchScript and TensorRT: graphs are torch callables taking tensors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self._state_args: tuple[torch.Tensor, ...] = ()

    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(self.device, self.dtype if t.is_floating_point() else t.dtype).contiguous()

    def prepare(self, state: dict[str, torch.Tensor]) -> None:
        from odecam.export.graphs import STATE_KEYS

        v = _views_of(state)
        self._frame_graph(v)
        self._state_args = tuple(self._cast(state[STATE_KEYS[n]]) for n in self.avatar_inputs)
        self.num_views = v

    @torch.no_grad()
    def run_keypoints(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self._keypoint_graph()(self._cast(image))
        return out[0].float(), (out[1].float() if self.jacobian else None)

    @torch.no_grad()
    def run_frame(self, kp: torch.Tensor, jac: torch.Tensor | None = None,
                  timer: StageTimer = _no_timer) -> tuple[torch.Tensor, bool]:
        if self.num_views is None:
            raise BackendError("call prepare(avatar_state) before run_frame.")
        args = (self._cast(kp),) + ((self._cast(jac),) if self.jacobian else ()) + self._state_args
        with timer("frame"):
            image, ok = self._frame_graph(self.num_views)(*args)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        return image.float(), bool(ok)

    @torch.no_grad()
    def run_avatar(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.export_dir is None:
            return super().run_avatar(views)
        if self._avatar_graph is None:
            self._avatar_graph = self._build("avatar", self.fixed_views)
        outs = self._avatar_graph(self._cast(views))
        return _state_from_outputs(self.avatar_inputs, [o.float() for o in outs])


class TorchScriptBackend(_TorchGraphBackend):
    """Traced and frozen TorchScript graphs (CPU or CUDA)."""

    name = "torchscript"

    def _build(self, graph: str, num_views: int) -> Any:
        from odecam.export.torchscript import load_torchscript, to_torchscript

        if self.export_dir is not None:
            return load_torchscript(self._graph_file(graph), str(self.device))
        module, args, _, _ = self._modules(num_views)[graph]
        if self.device.type != "cpu" or self.precision == "fp16":
            module = copy.deepcopy(module).to(self.device)
            module = module.half() if self.precision == "fp16" else module
            args = tuple(self._cast(a) for a in args)
        return to_torchscript(module, args)


class TensorRTBackend(_TorchGraphBackend):
    """TensorRT engines (torch-tensorrt, CUDA only), fp16 or fp32."""

    name = "tensorrt"

    def __init__(self, model: MotionTransferModel | None, device: str | torch.device | None = None,
                 precision: str = "fp16", ode_steps: int | None = None, export_dir: str | Path | None = None) -> None:
        from odecam.export.metadata import ExportError
        from odecam.export.tensorrt import import_torch_tensorrt

        try:
            import_torch_tensorrt()
        except ExportError as exc:
            raise BackendError(str(exc)) from None
        super().__init__(model, device or "cuda", precision, ode_steps, export_dir)
        if self.device.type != "cuda":
            raise BackendError("the tensorrt backend runs on a CUDA device; pass device 'cuda'.")
        if export_dir is not None and self.manifest["precision"] != precision:
            self.precision = self.manifest["precision"]
            self.dtype = torch.float16 if self.precision == "fp16" else torch.float32

    def _build(self, graph: str, num_views: int) -> Any:
        from odecam.export.tensorrt import compile_trt, load_trt

        if self.export_dir is not None:
            return load_trt(self._graph_file(graph))
        module, args, _, _ = self._modules(num_views)[graph]
        compiled, _ = compile_trt(module, args, self.precision, str(self.device))
        return compiled


# -- factory ---------------------------------------------------------------------------------------------
def get_backend(name: str | Backend, model: MotionTransferModel, device: str | torch.device | None = None,
                precision: str = "fp32", ode_steps: int | None = None, **options: Any) -> Backend:
    """A backend by name for ``model`` ('torch', 'torchscript', 'onnxruntime', 'tensorrt', 'cuda-graph'; a Backend
    passes through).

    ``device`` defaults to the model's device (torch, torchscript), CUDA where available (onnxruntime),
    'cuda' (tensorrt, cuda-graph). ``options`` go to the backend (onnxruntime: ``threads``, ``cache``, ``spin``,
    ``skip_tail``; cuda-graph: ``compile``).
    """
    if isinstance(name, Backend):
        return name
    key = backend_name(name)
    _check_precision(precision)
    if key == "torch":
        return TorchBackend(model, device or next(model.parameters()).device, precision, ode_steps)
    if key == "torchscript":
        return TorchScriptBackend(model, device or next(model.parameters()).device, precision, ode_steps)
    if key == "onnxruntime":
        return OnnxRuntimeBackend(model, device, precision, ode_steps, **options)
    if key == "cuda-graph":
        from odecam.engine.cuda_graph import CudaGraphBackend

        return CudaGraphBackend(model, device, precision, ode_steps, **options)
    return TensorRTBackend(model, device, precision, ode_steps)


def load_backend(export_dir: str | Path, device: str | torch.device | None = None, **options: Any) -> Backend:
    """A backend running an ``odecam export`` folder (its format picks the backend). ``backend.cfg`` is the
    exported config; ``run_avatar`` runs the exported avatar graph."""
    from odecam.export.metadata import read_manifest

    manifest = read_manifest(export_dir)
    fmt = manifest["format"]
    if fmt == "onnx":
        return OnnxRuntimeBackend(None, device, "fp32", export_dir=export_dir, **options)
    if fmt == "torchscript":
        return TorchScriptBackend(None, device or "cpu", "fp32", export_dir=export_dir)
    return TensorRTBackend(None, device, manifest["precision"], export_dir=export_dir)

"""The ``cuda-graph`` backend: F_K and the per-frame graph replayed as CUDA graphs, fp16 where it is safe.

No TensorRT and no export step: the model itself is captured (``torch.cuda.CUDAGraph``) once per avatar
shape, so a frame is one copy of the driving input, one graph replay and one synchronisation; Python and
kernel-launch overhead (most of an eager frame at batch 1) are gone. ``compile=True`` (or the environment
variable ``ODECAM_CUDA_GRAPH_COMPILE=1``) runs ``torch.compile(mode="reduce-overhead")`` instead, which
also fuses elementwise kernels (about 30 s to compile per shape; measured on an H200 in
``benchmarks/RESULTS.md``).

Precision ``fp16`` runs an inference copy (:func:`odecam.export.precision.half_copy`): BatchNorms folded
into their convolutions in fp32, the generator (encoder features, F_A, decoder) in fp16, and the motion
path (F_K, F_C, F_E, every sampling grid) in fp32, because lite's image skip samples the 256 px views
with the motion field (see that module). ``fp32`` captures the model as it is (TF32 follows torch's flags).

Inputs and outputs follow :class:`~odecam.engine.backends.Backend`; the returned image is the graph's own
output buffer on the GPU (float32, (1, 3, S, S)), overwritten by the next frame: copy it to keep it.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Callable

import torch

from odecam.engine.backends import Backend, BackendError, StageTimer, _no_timer, _views_of
from odecam.model import MotionTransferModel

#: state tensors that stay fp32 in an fp16 run (coordinates, heatmaps, the views sampled at full resolution)
FP32_STATE = ("kp", "jacobian", "heat_view", "image_small", "image", "grid")


def cuda_graph_unavailable() -> str | None:
    """Why the cuda-graph backend cannot run here (one sentence), or None."""
    if not torch.cuda.is_available():
        return ("the cuda-graph backend needs a CUDA GPU and a CUDA build of torch, and none is available here; "
                "on a CPU use --backend onnxruntime.")
    return None


class _Captured:
    """fn(*static inputs) captured once; ``__call__(*inputs)`` copies the inputs in and replays."""

    def __init__(self, fn: Callable[..., Any], example: tuple[torch.Tensor, ...], compile_mode: str | None) -> None:
        self.static = tuple(t.clone() for t in example)
        if compile_mode:
            self.fn = torch.compile(fn, mode=compile_mode, fullgraph=False, dynamic=False)
            for _ in range(3):  # compile and record (reduce-overhead records CUDA graphs itself)
                self.fn(*self.static)
            self.graph = None
            self.out = None
            return
        self.fn = fn
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):  # warm-up off the capture: cuDNN picks its kernels, identity grids get cached
                fn(*self.static)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = fn(*self.static)

    def __call__(self, *inputs: torch.Tensor) -> Any:
        for dst, src in zip(self.static, inputs):
            dst.copy_(src, non_blocking=True)
        if self.graph is None:
            return self.fn(*self.static)
        self.graph.replay()
        return self.out


class CudaGraphBackend(Backend):
    """See the module docstring. ``compile``: torch.compile "reduce-overhead" instead of manual capture."""

    name = "cuda-graph"
    stages = ("keypoints", "frame")

    def __init__(self, model: MotionTransferModel, device: str | torch.device | None = None,
                 precision: str = "fp16", ode_steps: int | None = None, compile: bool | None = None) -> None:
        why = cuda_graph_unavailable()
        if why is not None:
            raise BackendError(why)
        super().__init__(model, device or "cuda", precision, ode_steps)
        if self.device.type != "cuda":
            raise BackendError(f"the cuda-graph backend runs on a CUDA device, not {str(self.device)!r}; pass 'cuda'.")
        if compile is None:
            compile = os.environ.get("ODECAM_CUDA_GRAPH_COMPILE", "") not in ("", "0")
        self.compile_mode = "reduce-overhead" if compile else None
        self.ode_steps = ode_steps if ode_steps is not None else model.cfg.evolution.steps
        with torch.no_grad():
            if precision == "fp16":
                from odecam.export.precision import half_copy

                self.infer = half_copy(model, torch.float16, self.device)
            else:
                self.infer = copy.deepcopy(model).eval().to(self.device)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.jacobian = bool(model.cfg.keypoints.estimate_jacobian)
        self.state: dict[str, torch.Tensor] | None = None
        self._frame: _Captured | None = None
        self._frame_key: tuple | None = None
        self._kp_graph: _Captured | None = None

    # -- avatar ----------------------------------------------------------------------------------
    def prepare(self, state: dict[str, torch.Tensor]) -> None:
        new = {k: v.detach().to(self.device, (torch.float32 if k in FP32_STATE else self.dtype)
                                if v.is_floating_point() else v.dtype).contiguous() for k, v in state.items()}
        key = tuple((k, tuple(v.shape)) for k, v in sorted(new.items()))
        self.num_views = _views_of(state)
        if self.state is not None and key == self._frame_key:
            for k, v in new.items():  # same shapes: refill the captured graph's inputs in place
                self.state[k].copy_(v)
            return
        self.state, self._frame_key, self._frame = new, key, None

    def _frame_fn(self, kp: torch.Tensor, jac: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.infer.animate(self.state, kp, jac, num_views=self.num_views, solver="unrolled",
                                 ode_steps=self.ode_steps)
        return out["prediction"].float(), out["ode_ok"]

    # -- per frame -------------------------------------------------------------------------------
    @torch.no_grad()
    def run_keypoints(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        image = image.to(self.device, torch.float32, non_blocking=True)
        if self._kp_graph is None:
            det = self.infer.kp_detector  # fp32 in both precisions (half_copy keeps F_K in fp32)

            def fn(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
                kp = det(x)
                return (kp["value"], kp["jacobian"]) if self.jacobian else (kp["value"],)
            self._kp_graph = _Captured(fn, (image,), self.compile_mode)
        out = self._kp_graph(image)  # copies: the caller may keep them (a neutral pose) past the next replay
        return out[0].float().clone(), (out[1].float().clone() if self.jacobian else None)

    @torch.no_grad()
    def run_frame(self, kp: torch.Tensor, jac: torch.Tensor | None = None,
                  timer: StageTimer = _no_timer) -> tuple[torch.Tensor, bool]:
        if self.state is None:
            raise BackendError("call prepare(avatar_state) before run_frame.")
        inputs = (kp.to(self.device, torch.float32),)
        if self.jacobian:
            if jac is None:
                raise BackendError("this model's frame graph needs driving jacobians.")
            inputs += (jac.to(self.device, torch.float32),)
        with timer("frame"):
            if self._frame is None:
                self._frame = _Captured(self._frame_fn, inputs, self.compile_mode)
            image, ok = self._frame(*inputs)
            ok = bool(ok)  # synchronises
        return image, ok

    def describe(self) -> str:
        how = "torch.compile reduce-overhead" if self.compile_mode else "CUDA graph"
        return f"cuda-graph ({torch.cuda.get_device_name(self.device)}, {self.precision}, {how})"

"""The backends' common ground: :class:`Backend` (the interface every backend offers, see
:mod:`odecam.engine.backends`), the graph backends' base, thread and precision helpers, :class:`BackendError`."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch

from odecam.errors import OdecamError
from odecam.export.options import ALIASES, BACKENDS, PRECISIONS
from odecam.model import MotionTransferModel

log = logging.getLogger(__name__)

StageTimer = Callable[[str], ContextManager[Any]]


class BackendError(OdecamError):
    """A backend that cannot run here or cannot run this avatar."""


def _no_timer(name: str) -> ContextManager[Any]:
    return contextlib.nullcontext()


def cpu_cores() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def torch_threads_for(backend: str, cores: int | None = None) -> int:
    """Torch intra-op threads to use beside a backend: all cores where torch computes (torch, torchscript),
    one where it only converts frames (onnxruntime, tensorrt): idle torch threads otherwise compete with
    onnxruntime's for the same cores."""
    return 1 if backend_name(backend) in ("onnxruntime", "tensorrt", "cuda-graph") else (cores or cpu_cores())


def backend_name(name: str) -> str:
    """Canonical backend name, or :class:`BackendError` listing the choices."""
    key = ALIASES.get(name.lower(), name.lower()) if isinstance(name, str) else name
    if key == "auto":  # onnxruntime on a CPU, torch on CUDA (odecam.engine.threads.choose_backend)
        from odecam.engine.threads import choose_backend

        return choose_backend("auto")
    if key not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of auto, {', '.join(BACKENDS)}.")
    return key


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    return precision


def _views_of(state: dict[str, torch.Tensor]) -> int:
    return int(state["kp"].shape[0])


class Backend:
    """Common interface; see the module docstring."""

    name = "base"
    #: the stages this backend reports through the timer of :meth:`run_frame`
    stages: tuple[str, ...] = ("keypoints", "frame")

    #: n > 1: ``run_keypoints`` also takes the frame area-pooled by n (F_K's first step done beside the graph)
    keypoint_pool: int = 1

    def __init__(self, model: MotionTransferModel, device: str | torch.device = "cpu", precision: str = "fp32",
                 ode_steps: int | None = None) -> None:
        self.model = model.eval() if model is not None else None
        self.device = torch.device(device)
        self.precision = _check_precision(precision)
        self.ode_steps = ode_steps
        self.num_views: int | None = None

    # -- to implement ----------------------------------------------------------------------------
    def prepare(self, state: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def run_keypoints(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def run_frame(self, kp: torch.Tensor, jac: torch.Tensor | None = None,
                  timer: StageTimer = _no_timer) -> tuple[torch.Tensor, bool]:
        raise NotImplementedError

    def run_avatar(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.model is None:
            raise BackendError(f"the {self.name} backend was loaded without an avatar graph.")
        with torch.no_grad():
            return self.model.prepare_views(views.to(next(self.model.parameters())))

    def describe(self) -> str:
        return f"{self.name} ({self.device.type}, {self.precision})"

    # -- expression retargeting: the avatar rendered from a blend of states (odecam.engine.blink, .mouth) ---------
    def set_blend_targets(self, base_state: dict[str, torch.Tensor],
                          targets: dict[str, dict[str, torch.Tensor]]) -> None:
        """After :meth:`prepare` (``base_state``): the states :meth:`blend_views` blends towards, by name (the
        closed-eye avatar ``"eyes"``, the open-mouth one ``"mouth"``: the same keypoints, other features and view
        images, each differing from the base in its own region); an empty dict switches blending off."""
        self._blend = (base_state, dict(targets)) if targets else None
        self._blend_amounts: dict[str, float] = {k: 0.0 for k in targets}

    def blend_views(self, amounts: dict[str, float]) -> None:
        """Render from base + sum_k a_k (target_k - base) over the ``BLENDED_KEYS`` of the states given to
        :meth:`set_blend_targets` (a target not named keeps its amount). This generic version re-prepares the
        blended state when an amount changes; the onnxruntime backend blends its inputs in place."""
        blend = getattr(self, "_blend", None)
        if blend is None or not self._new_amounts(amounts):
            return
        from odecam.engine.blink import BLENDED_KEYS

        base, targets = blend
        state = dict(base)
        for key in BLENDED_KEYS:
            if key in base:
                for name, target in targets.items():
                    if self._blend_amounts[name]:
                        state[key] = state[key] + self._blend_amounts[name] * (target[key] - base[key])
        self.prepare(state)

    def _new_amounts(self, amounts: dict[str, float]) -> bool:
        """Take the amounts of the known targets; True when one changed."""
        changed = False
        for name, a in amounts.items():
            if name in self._blend_amounts and self._blend_amounts[name] != a:
                self._blend_amounts[name] = float(a)
                changed = True
        return changed


# -- compiled graphs (shared logic) ---------------------------------------------------------------------
class _GraphBackend(Backend):
    """A backend running a keypoints graph and one frame graph per number of views."""

    def __init__(self, model: MotionTransferModel | None, device: str | torch.device = "cpu",
                 precision: str = "fp32", ode_steps: int | None = None, export_dir: str | Path | None = None) -> None:
        super().__init__(model, device, precision, ode_steps)
        self.export_dir = Path(export_dir) if export_dir is not None else None
        self.cfg = model.cfg if model is not None else None
        self._frame_graphs: dict[int, Any] = {}
        self._kp_graph: Any = None
        self._avatar_graph: Any = None
        self._inputs: list[Any] | None = None
        if self.export_dir is not None:
            from odecam.export.metadata import read_manifest

            manifest = read_manifest(self.export_dir)
            self.cfg = manifest["config"]
            self.ode_steps = manifest["ode_steps"]
            self.fixed_views: int | None = manifest["num_views"]
            self.manifest = manifest
        else:
            self.fixed_views = None
            self.ode_steps = ode_steps if ode_steps is not None else self.cfg.evolution.steps
        self.jacobian = bool(self.cfg.keypoints.estimate_jacobian)
        from odecam.export.graphs import AVATAR_OUTPUTS

        image_skip = bool(getattr(self.cfg.generator, "image_skip", False))
        self.avatar_inputs = [n for n in AVATAR_OUTPUTS
                              if (n != "jac_view" or self.jacobian) and (n != "view_image" or image_skip)]

    def _graph_file(self, graph: str) -> Path:
        f = self.manifest["graphs"].get(graph, {}).get("file")
        if f is None:
            raise BackendError(f"export folder {str(self.export_dir)!r} has no {graph} graph; re-export it.")
        return self.export_dir / f

    def _frame_graph(self, num_views: int) -> Any:
        if num_views not in self._frame_graphs:
            if self.fixed_views is not None and num_views != self.fixed_views:
                raise BackendError(f"this export was made for {self.fixed_views - 1} reference views and the avatar "
                                   f"has {num_views - 1}; re-export with --num-refs {num_views - 1}.")
            log.info("%s: building the frame graph for %d views, %d ODE steps", self.name, num_views, self.ode_steps)
            self._frame_graphs[num_views] = self._build("frame", num_views)
        return self._frame_graphs[num_views]

    def _keypoint_graph(self) -> Any:
        if self._kp_graph is None:
            self._kp_graph = self._build("keypoints", self.fixed_views or (self.cfg.num_refs + 1))
        return self._kp_graph

    def _build(self, graph: str, num_views: int) -> Any:
        raise NotImplementedError

    def _modules(self, num_views: int) -> dict[str, tuple]:
        from odecam.export.exporter import graph_modules

        if self.model is None:
            raise BackendError(f"the {self.name} backend needs a model or an export folder.")
        return graph_modules(self.model, num_views, self.ode_steps)

    def warmup(self, num_views: int | None = None) -> None:
        """Build the graphs now rather than on the first frame."""
        self._keypoint_graph()
        self._frame_graph(num_views or self.fixed_views or (self.cfg.num_refs + 1))


def _state_from_outputs(names: list[str], outs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    from odecam.export.graphs import STATE_KEYS

    return {STATE_KEYS[n]: t for n, t in zip(names, outs)}

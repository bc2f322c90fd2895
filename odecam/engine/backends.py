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
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np
import torch

from odecam.errors import OdecamError
from odecam.export import exporter as _exporter, graphs as _graphs, onnx as _onnx  # noqa: F401  (code digest)
from odecam.export.options import ALIASES, BACKENDS, PRECISIONS, add_backend_arguments  # noqa: F401
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


# -- onnxruntime ----------------------------------------------------------------------------------------
def onnx_cache_dir() -> Path:
    """Where in-process ONNX exports are cached: $ODECAM_CACHE_DIR, else ~/.cache/odecam/onnx."""
    env = os.environ.get("ODECAM_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "odecam" / "onnx"


def _code_digest() -> str:
    """Digest of the code that shapes an exported graph (odecam.model, odecam.export), so that a cached
    export is never reused after that code changed. Taken once, when this module is imported (with the
    modules it exports), so a process keeps the digest of the code it runs."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for sub in ("model", "export"):
        for f in sorted((root / sub).glob("*.py")):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


_CODE_DIGEST = _code_digest()


def _model_digest(model: MotionTransferModel) -> str:
    h = hashlib.sha256(model.cfg.to_json().encode())
    h.update(_CODE_DIGEST.encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


class OnnxRuntimeBackend(_GraphBackend):
    """ONNX graphs in onnxruntime: all graph optimisations, one intra-op thread per core, CUDA where present.

    ``spin``: whether the intra-op threads spin-wait while a graph runs. 'on' / ``True``: they do, and stop when
    it returns (``session.force_spinning_stop``), so the keypoint and frame sessions never spin against each
    other: 1.15x faster per frame on an idle 2-core machine, 1.3x to 1.7x slower beside one CPU-bound program
    (benchmarks/RESULTS.md, ``benchmarks/spin_ab.py``). 'off' / ``False``: they sleep. 'auto' (the default):
    two sessions per graph, one of each, and whichever is faster now runs (:mod:`odecam.engine.spin`)."""

    name = "onnxruntime"

    def __init__(self, model: MotionTransferModel | None, device: str | torch.device | None = None,
                 precision: str = "fp32", ode_steps: int | None = None, export_dir: str | Path | None = None,
                 threads: int | None = None, cache: bool = True, spin: bool | str = "auto",
                 skip_tail: bool = True) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError("the onnxruntime backend needs the onnxruntime package (pip install onnxruntime).") from None
        if precision != "fp32":
            raise BackendError("the onnxruntime backend runs fp32 only; use --backend tensorrt for fp16.")
        self.ort = ort
        available = ort.get_available_providers()
        if device is None:
            device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
        super().__init__(model, device, precision, ode_steps, export_dir)
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise BackendError("onnxruntime has no CUDA provider here; install onnxruntime-gpu or use device 'cpu'.")
            self.providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            self.providers = ["CPUExecutionProvider"]
        from odecam.engine.threads import current_plan  # the process's thread policy, when a command applied it

        plan = current_plan()
        self.threads = threads or (plan.threads if plan is not None else cpu_cores())
        from odecam.engine.spin import spin_mode

        try:
            self.spin = spin_mode(spin)
        except ValueError as exc:
            raise BackendError(str(exc)) from None
        if self.device.type != "cpu":  # spin-waiting is a CPU thread-pool setting
            self.spin = "off"
        self.cache = cache and model is not None
        self._digest: str | None = None
        # image skip (lite): warp and blend the view images beside the graph, channels-last in OpenCV
        # (odecam.engine.image_skip; odecam.export.graphs FRAME_TAIL_OUTPUTS): onnxruntime's CPU GridSample is its
        # slowest op at 256 px. In-process exports only.
        self.skip_tail = bool(skip_tail and model is not None and self.device.type == "cpu"
                              and getattr(self.cfg.generator, "image_skip", False))
        self._tail: Any = None  # odecam.engine.image_skip.ImageSkipTail of the avatar (skip_tail)
        # F_K's area pooling beside the graph (OpenCV on the float frame, odecam.engine.images.to_tensor's pool): the
        # keypoints graph reads S / n pixels. In-process exports only
        if model is not None and self.device.type == "cpu" and export_dir is None:
            n = model.kp_detector.area_factor
            self.keypoint_pool = n if self.cfg.image_size % n == 0 else 1  # OpenCV's area resize = avg_pool2d there
        self._frame_inputs: set[str] = set()
        self._feed: dict[str, np.ndarray] = {}

    def session_options(self, spin: bool | None = None) -> Any:
        """Session options; ``spin`` (default: this backend's setting, off under 'auto') sets spin-waiting."""
        spin = self.spin == "on" if spin is None else spin
        so = self.ort.SessionOptions()
        so.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = self.ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        # idle intra-op threads spin by default; beside a capture thread, torch's own threads or any other
        # load, that spinning steals the cores the next run needs (measured here: 4x slower under load)
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        if spin:  # spin only while a graph runs: the keypoint and frame sessions' pools would fight otherwise
            so.add_session_config_entry("session.force_spinning_stop", "1")
        return so

    def _onnx_bytes(self, graph: str, num_views: int) -> bytes:
        from odecam.export import metadata
        from odecam.export.onnx import to_onnx_bytes

        cache_file = None
        if self.cache:
            if self._digest is None:
                self._digest = _model_digest(self.model)
            key = f"{self._digest}-{graph}-v{num_views}-s{self.ode_steps}-f{metadata.FORMAT_VERSION}-t{torch.__version__}"
            cache_file = onnx_cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.onnx"
            if cache_file.exists():
                return cache_file.read_bytes()
        module, args, inputs, outputs = self._modules(num_views)[graph]
        meta = metadata.graph_metadata(self.cfg, graph.split("_")[0], "onnx", inputs, outputs, num_views,
                                       self.ode_steps)
        data = to_onnx_bytes(module, args, inputs, outputs, meta)
        if cache_file is not None:
            try:
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(data)
                tmp.replace(cache_file)
            except OSError as exc:  # a read-only home: run without the cache
                log.warning("could not cache the ONNX export in %s (%s)", cache_file.parent, exc)
        return data

    def _build(self, graph: str, num_views: int) -> Any:
        if self.export_dir is not None:
            source: Any = str(self._graph_file(graph))
        else:
            variant = {"frame": "frame_tail" if self.skip_tail else "frame",
                       "keypoints": "keypoints_pooled" if self.keypoint_pool > 1 else "keypoints"}.get(graph, graph)
            source = self._onnx_bytes(variant, num_views)
        if self.spin == "auto":  # one session of each setting; the faster one runs (odecam.engine.spin)
            from odecam.engine.spin import AdaptiveSpinSession

            session: Any = AdaptiveSpinSession({
                spin: self.ort.InferenceSession(source, self.session_options(spin), providers=self.providers)
                for spin in (False, True)})
        else:
            session = self.ort.InferenceSession(source, self.session_options(), providers=self.providers)
        if graph == "frame":  # an input the graph does not read (the tail's view images) is dropped by the exporter
            self._frame_inputs = {i.name for i in session.get_inputs()}
        return session

    def prepare(self, state: dict[str, torch.Tensor]) -> None:
        from odecam.export.graphs import state_to_inputs

        v = _views_of(state)
        self._frame_graph(v)
        names = self.avatar_inputs
        if self.model is not None:
            tensors = state_to_inputs(self.model, state)
        else:
            from odecam.export.graphs import STATE_KEYS

            tensors = {n: state[STATE_KEYS[n]] for n in names}
        self._feed = {n: tensors[n].detach().float().cpu().contiguous().numpy() for n in names
                      if n in self._frame_inputs}
        if self.skip_tail:  # the in-process frame_tail graph reads the features channels-last (exporter.graph_modules)
            from odecam.engine.image_skip import ImageSkipTail

            self._feed["features"] = np.ascontiguousarray(self._feed["features"].transpose(0, 2, 3, 1))

            self._tail = ImageSkipTail(state["image"], tuple(state["image_small"].shape[2:]))
        self.num_views = v

    def set_blend_targets(self, base_state: dict[str, torch.Tensor],
                          targets: dict[str, dict[str, torch.Tensor]]) -> None:
        """As :meth:`Backend.set_blend_targets`; the differences of the graph inputs (and of the tail's view
        images) from the base are kept, so :meth:`blend_views` is a multiply-add per target into a reused buffer,
        for the inputs that differ."""
        super().set_blend_targets(base_state, targets)
        base_feed, base_tail = self._feed, self._tail
        slots: dict[tuple[int, Any], list] = {}  # (container, key) -> [container, key, base, {target: diff}, buf]
        for name, state in targets.items():
            self.prepare(state)
            other_feed, other_tail = self._feed, self._tail
            pairs = [(base_feed, n, base_feed[n], other_feed[n]) for n in base_feed]
            if base_tail is not None:
                pairs += [(base_tail.images, j, base_tail.images[j], other_tail.images[j])
                          for j in range(len(base_tail.images))]
            for where, key, base, other in pairs:
                if not np.array_equal(base, other):
                    slot = slots.setdefault((id(where), key), [where, key, base, {}, np.empty_like(base)])
                    slot[3][name] = other - base
        self._feed, self._tail = base_feed, base_tail
        self._blend_slots = list(slots.values())
        self._blend_tmp = {id(s[4]): np.empty_like(s[4]) for s in self._blend_slots if len(s[3]) > 1}

    def blend_views(self, amounts: dict[str, float]) -> None:
        if getattr(self, "_blend", None) is None or not self._new_amounts(amounts):
            return
        for where, key, base, diffs, buf in self._blend_slots:
            active = [(diff, np.float32(self._blend_amounts[name])) for name, diff in diffs.items()
                      if self._blend_amounts[name]]
            if not active:
                where[key] = base
                continue
            np.multiply(active[0][0], active[0][1], out=buf)
            for diff, a in active[1:]:
                tmp = self._blend_tmp[id(buf)]
                np.multiply(diff, a, out=tmp)
                buf += tmp
            buf += base
            where[key] = buf

    def run_keypoints(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.keypoint_pool > 1 and image.shape[-1] == self.cfg.image_size:  # a full-size frame: pool it here
            image = torch.nn.functional.avg_pool2d(image.float(), self.keypoint_pool)
        out = self._keypoint_graph().run(None, {"image": image.detach().float().cpu().contiguous().numpy()})
        return torch.from_numpy(out[0]), (torch.from_numpy(out[1]) if self.jacobian else None)

    def run_frame(self, kp: torch.Tensor, jac: torch.Tensor | None = None,
                  timer: StageTimer = _no_timer) -> tuple[torch.Tensor, bool]:
        if self.num_views is None:
            raise BackendError("call prepare(avatar_state) before run_frame.")
        feed = dict(self._feed)
        feed["kp_driving"] = kp.detach().float().cpu().contiguous().numpy()
        if self.jacobian:
            if jac is None:
                raise BackendError("this model's frame graph needs driving jacobians.")
            feed["jac_driving"] = jac.detach().float().cpu().contiguous().numpy()
        with timer("frame"):
            outs = self._frame_graph(self.num_views).run(None, feed)
            if self.skip_tail and len(outs) == 4:  # FRAME_PHASE_OUTPUTS (a pixel-shuffle head)
                phases, disp, weights, ok = outs
                return self._tail.from_phases(phases, torch.from_numpy(disp), torch.from_numpy(weights)), bool(ok)
            if self.skip_tail:
                decoded, mask, disp, weights, ok = (torch.from_numpy(o) for o in outs)
                return self._tail(decoded, mask, disp, weights), bool(ok)
            image, ok = outs
        return torch.from_numpy(image), bool(ok)

    def run_avatar(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.export_dir is None:
            return super().run_avatar(views)
        if self._avatar_graph is None:
            self._avatar_graph = self._build("avatar", self.fixed_views)
        outs = self._avatar_graph.run(None, {"views": views.detach().float().cpu().contiguous().numpy()})
        return _state_from_outputs(self.avatar_inputs, [torch.from_numpy(o) for o in outs])

    def spin_share(self) -> float | None:
        """Under spin 'auto': the share of frame-graph runs so far that spun (None otherwise)."""
        graphs = [g for g in self._frame_graphs.values() if hasattr(g, "chooser")]
        runs = sum(g.chooser.runs for g in graphs)
        return sum(g.chooser.spun for g in graphs) / runs if runs else None

    def describe(self) -> str:
        spin = {"on": ", spin-waiting", "auto": ", spin-waiting when faster", "off": ""}[self.spin]
        return f"onnxruntime {self.ort.__version__} ({self.providers[0]}, {self.threads} threads{spin})"


def _state_from_outputs(names: list[str], outs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    from odecam.export.graphs import STATE_KEYS

    return {STATE_KEYS[n]: t for n, t in zip(names, outs)}


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

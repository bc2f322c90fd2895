"""The onnxruntime backend: ONNX graphs exported in-process (cached on disk, keyed by weights, shape and code)
or read from an ``odecam export`` folder, run by onnxruntime (CPU; CUDA where its provider is present)."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from odecam.engine.backend_base import (BackendError, StageTimer, _GraphBackend, _no_timer, _state_from_outputs,
                                        _views_of, cpu_cores)
from odecam.export import exporter as _exporter, graphs as _graphs, onnx as _onnx  # noqa: F401  (code digest)
from odecam.model import MotionTransferModel

log = logging.getLogger(__name__)


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

            self._tail = ImageSkipTail(state["image"], tuple(state["image_small"].shape[2:]),
                                       self.model.cfg.generator.mask_blur, size=self.model.cfg.image_size)
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

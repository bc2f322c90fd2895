"""The full network: F_K + F_G (holding F_C, F_E, F_A), split into avatar-only and per-frame halves.

* :meth:`MotionTransferModel.prepare_views` — once per avatar: keypoints, features and F_C's view inputs
  for the source and its N references (V = N + 1 views per item).
* :meth:`MotionTransferModel.animate` — per frame: driving keypoints -> image, in the stages the engine
  times: ``coarse_motion`` (F_C), ``ode`` (F_E), ``warp``, ``appearance`` (F_A + fusion), ``decoder``.
* :meth:`MotionTransferModel.forward` — training: source, references and driving frame -> prediction.

Parameter names are those of First Order Motion Model's checkpoint (``kp_detector.*``, ``generator.*``).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager

import torch
from torch import nn

from odecam.config import ModelConfig
from odecam.model import fastpath
from odecam.model.generator import Generator, edge_window
from odecam.model.geometry import _tracing
from odecam.model.keypoint_detector import KeypointDetector

StageTimer = Callable[[str], ContextManager[Any]]


def _no_timer(name: str) -> ContextManager[Any]:
    return contextlib.nullcontext()


def check_images(x: torch.Tensor, name: str, ndim: int = 4) -> None:
    """Refuse tensors that are not (..., 3, H, W) images, naming the dimensions."""
    if x.dim() != ndim or x.shape[-3] != 3:
        dims = "(B, 3, H, W)" if ndim == 4 else "(B, N, 3, H, W)"
        raise ValueError(f"{name} must have shape {dims}, got {tuple(x.shape)}")


class MotionTransferModel(nn.Module):
    """Self-appearance-aided differential evolution for motion transfer (the paper's Fig. 3)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        #: what keypoint m was trained to sit on (landmark-guided F_K, e.g. "inner_upper_lip"); () when F_K is
        #: unsupervised. Saved in the checkpoint's metadata; the engine's lip retargeting reads it.
        self.keypoint_roles: tuple[str, ...] = ()
        self.kp_detector = KeypointDetector(cfg.keypoints, cfg.num_channels)
        self.generator = Generator(cfg)

    # -- once per avatar -------------------------------------------------------------------------
    def prepare_views(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        """views (B, V, 3, H, W) in [0, 1] (view 0 = source) -> the avatar state, flattened to B*V:

        'features' (B*V, C, h, w), 'kp' (B*V, K, 2), 'jacobian' (B*V, K, 2, 2) if estimated,
        'image_small' (B*V, 3, h_m, w_m), 'heat_view' (B*V, K, h_m, w_m), 'grid' (h_m, w_m, 2),
        'image' (B*V, 3, H + 2P, W + 2P) when the generator's image skip is on (the views reflected by the skip's
        margin P, ``generator.skip_margin``: :meth:`~odecam.model.generator.Generator.skip_images`).
        """
        check_images(views, "views", ndim=5)
        b, v = views.shape[:2]
        flat = views.reshape(b * v, *views.shape[2:])
        kp = self.kp_detector(flat)
        state = {"features": self.generator.encode(flat), "kp": kp["value"]}
        if "jacobian" in kp:
            state["jacobian"] = kp["jacobian"]
        state.update(self.generator.dense_motion_network.prepare_view(flat, kp["value"]))
        if self.cfg.generator.image_skip:
            state["image"] = self.generator.skip_images(flat)
        return state

    def _edge_window(self, displacement: torch.Tensor) -> torch.Tensor:
        """``generator.edge_anchor``'s window for fields like ``displacement`` (V, 2, h, w): (1, 1, h, w), made
        once per field size (a constant in an exported graph)."""
        h, w = displacement.shape[2:]
        share = self.cfg.generator.edge_anchor
        if _tracing(displacement):  # inside an exporter: a graph constant, never cached
            return edge_window(share, h, w).to(displacement)
        cache = self.__dict__.setdefault("_edge_windows", {})
        key = (share, h, w, displacement.dtype, displacement.device)
        if key not in cache:
            with torch.inference_mode(False):
                cache[key] = edge_window(share, h, w).to(displacement)
        return cache[key]

    # -- per frame -------------------------------------------------------------------------------
    def animate(self, state: dict[str, torch.Tensor], kp_driving: torch.Tensor, jac_driving: torch.Tensor | None = None,
                num_views: int = 1, solver: str = "unrolled", ode_steps: int | None = None,
                timer: StageTimer = _no_timer, skip_tail: bool = False, phases: bool = False,
                ) -> dict[str, torch.Tensor]:
        """Driving keypoints (B, K, 2) [+ jacobians (B, K, 2, 2)] and an avatar state -> output.

        Returns {'prediction': (B, 3, H, W), 'ode_ok': () bool, 'coarse': (B*V, 2, h_m, w_m),
        'displacement': (B*V, 2, h_m, w_m), 'occlusion', 'weights'}. With ``skip_tail`` and the image skip,
        the view images are neither warped nor blended: 'prediction' is the decoded image before the blend
        and 'skip_mask' (B, 1, H, W) is M; the caller finishes with
        ``blend_skip(prediction, skip_mask, warp_images(state['image'], displacement, weights, S))``
        (:mod:`odecam.model.generator`), as a backend does beside an exported graph. ``phases`` (with
        ``skip_tail`` and a pixel-shuffle head): 'prediction' is the head's phases channels-last,
        (B, H/r, W/r, r * r * 4) (:meth:`~odecam.model.generator.Generator.decode_phases`), and there is no
        'skip_mask' (M is in them).
        """
        g = self.generator
        if num_views > 1:
            kp_driving = kp_driving.repeat_interleave(num_views, dim=0)
            if jac_driving is not None:
                jac_driving = jac_driving.repeat_interleave(num_views, dim=0)
        with timer("coarse_motion"):
            cm = g.dense_motion_network(state, state["kp"], kp_driving, state.get("jacobian"), jac_driving)
        with timer("ode"):
            if self.cfg.evolution.enabled:
                evolved = g.evolution(cm.displacement, cm.features, solver=solver, steps=ode_steps)
                finite = torch.isfinite(evolved)
                ode_ok = finite.all()
                displacement = torch.where(finite, evolved, cm.displacement)  # NaN/Inf: fall back to T~
            else:
                displacement, ode_ok = cm.displacement, torch.ones((), dtype=torch.bool)
            if self.cfg.generator.edge_anchor > 0:  # paste-back: the square's border stays put
                displacement = displacement * self._edge_window(displacement)
        if fastpath.enabled():  # export: each view warped with its fusion weight folded in (Generator.warp_and_fuse)
            with timer("appearance"):
                out, aux, occlusion = g.warp_and_fuse(state["features"], displacement, cm.occlusion, cm.confidence,
                                                      num_views)
        else:
            with timer("warp"):
                warped, ident, occlusion = g.warp_views(state["features"], displacement, cm.occlusion)
            with timer("appearance"):
                out, aux = g.fuse(warped, ident, occlusion, cm.confidence, num_views)
        with timer("decoder"):
            if skip_tail and phases and "image" in state and g.skip_mask is not None and g.shuffle > 1:
                prediction = g.decode_phases(out)
            elif skip_tail and "image" in state and g.skip_mask is not None:
                prediction, aux["skip_mask"] = g.decode_parts(out)
            else:
                skip = g.warp_images(state["image"], displacement, aux["weights"]) if "image" in state else None
                prediction = g.decode(out, skip)
        return {"prediction": prediction, "ode_ok": ode_ok, "coarse": cm.displacement,
                "displacement": displacement, "occlusion": occlusion, **aux}

    def forward(self, source: torch.Tensor, driving: torch.Tensor, refs: torch.Tensor | None = None,
                solver: str = "torchdiffeq") -> dict[str, torch.Tensor]:
        """Training pass. source, driving (B, 3, H, W); refs (B, N, 3, H, W) or None.

        Returns :meth:`animate`'s dict plus 'kp_source' (B, K, 2), 'kp_views' (B*V, K, 2) and 'kp_driving' (B, K, 2)
        (and their jacobians when estimated).
        """
        check_images(source, "source")
        check_images(driving, "driving")
        views = source.unsqueeze(1) if refs is None or refs.shape[1] == 0 else torch.cat([source.unsqueeze(1), refs], 1)
        v = views.shape[1]
        state = self.prepare_views(views)
        kp_d = self.kp_detector(driving)
        out = self.animate(state, kp_d["value"], kp_d.get("jacobian"), num_views=v, solver=solver)
        out["kp_source"] = state["kp"].view(source.shape[0], v, -1, 2)[:, 0]
        out["kp_views"] = state["kp"]
        out["kp_driving"] = kp_d["value"]
        if "jacobian" in kp_d:
            out["jacobian_driving"] = kp_d["jacobian"]
        return out

"""The exportable graphs: plain ``nn.Module`` wrappers with tensor-only inputs and outputs.

The product's per-frame path is split into three graphs so that one engine serves any avatar and
relative motion (a few keypoint operations and a convex hull) stays in Python between them:

* :class:`AvatarGraph` (once per avatar): views (1, V, 3, S, S) -> the avatar state as flat tensors
  (:data:`AVATAR_OUTPUTS`). The identity grid of F_C is a constant of the frame graph, not an output.
* :class:`KeypointGraph` (F_K, per driving frame): image (1, 3, S, S) -> raw keypoints (1, K, 2)
  [+ jacobians (1, K, 2, 2)].
* :class:`FrameGraph` (per frame): driving keypoints (1, K, 2) [+ jacobians], ALREADY NORMALISED
  (relative motion applied, as :class:`~odecam.engine.relative_motion.RelativeMotion` returns them),
  plus the avatar state tensors as inputs -> image (1, 3, S, S) and ``ode_ok`` (a bool scalar). The
  ODE's fixed steps are unrolled into the graph; V (views) and the step count are fixed per export.

Input and output names are part of the exported format (:data:`FORMAT_VERSION` in
:mod:`odecam.export.metadata`).
"""

from __future__ import annotations

import torch
from torch import nn

from odecam.model import MotionTransferModel
from odecam.model.generator import blend_skip, warp_images
from odecam.model.geometry import make_coordinate_grid

#: avatar state tensors, in the order the avatar graph returns them and the frame graph takes them
AVATAR_OUTPUTS = ("features", "kp_view", "jac_view", "image_small", "heat_view", "view_image")
#: state keys of :meth:`MotionTransferModel.prepare_views` for each avatar output
STATE_KEYS = {"features": "features", "kp_view": "kp", "jac_view": "jacobian", "image_small": "image_small",
              "heat_view": "heat_view", "view_image": "image"}


def has_jacobian(model: MotionTransferModel) -> bool:
    return bool(model.cfg.keypoints.estimate_jacobian)


def avatar_names(model: MotionTransferModel) -> list[str]:
    """The avatar state tensors of this model (no ``jac_view`` without jacobians)."""
    skip = bool(model.cfg.generator.image_skip)
    return [n for n in AVATAR_OUTPUTS
            if (n != "jac_view" or has_jacobian(model)) and (n != "view_image" or skip)]


def keypoint_names(model: MotionTransferModel) -> list[str]:
    return ["kp", "jacobian"] if has_jacobian(model) else ["kp"]


def frame_input_names(model: MotionTransferModel) -> list[str]:
    driving = ["kp_driving", "jac_driving"] if has_jacobian(model) else ["kp_driving"]
    return driving + avatar_names(model)


FRAME_OUTPUTS = ("image", "ode_ok")
#: outputs of the frame graph without its image-skip tail (``FrameGraph(..., skip_tail=True)``): the backend
#: warps the view images and blends them itself (onnxruntime's CPU GridSample is the slowest op at 256 px)
FRAME_TAIL_OUTPUTS = ("decoded", "skip_mask", "displacement", "weights", "ode_ok")
#: the same with F_G's pixel-shuffle head left unshuffled (``FrameGraph(..., phase_tail=True)``): 'phases'
#: (1, S/r, S/r, r * r * 4) channels-last, the decoded image and M in phase order
#: (:meth:`odecam.model.generator.Generator.decode_phases`)
FRAME_PHASE_OUTPUTS = ("phases", "displacement", "weights", "ode_ok")


def frame_output_names(model: MotionTransferModel, skip_tail: bool = False, phase_tail: bool = False,
                       ) -> tuple[str, ...]:
    """The output names of ``FrameGraph(model, skip_tail=..., phase_tail=...)``."""
    g = model.cfg.generator
    if not (skip_tail and g.image_skip):
        return FRAME_OUTPUTS
    return FRAME_PHASE_OUTPUTS if phase_tail and g.pixel_shuffle > 1 else FRAME_TAIL_OUTPUTS


def finish_tail(view_images: torch.Tensor, decoded: torch.Tensor, mask: torch.Tensor, displacement: torch.Tensor,
                weights: torch.Tensor) -> torch.Tensor:
    """The image skip beside a ``FrameGraph(skip_tail=True)`` graph: view images (V, 3, S + 2P, S + 2P), and the graph's
    decoded image (1, 3, S, S), mask M (1, 1, S, S), fields (V, 2, h_m, w_m) and view weights (1, V, 1, h, w)
    -> M * warped + (1 - M) * decoded, (1, 3, S, S): :func:`odecam.model.generator.warp_images` and
    :func:`~odecam.model.generator.blend_skip`, the very functions the eager model runs (batches of B items
    too: (B*V, ...) views and fields, (B, ...) images)."""
    return blend_skip(decoded, mask, warp_images(view_images, displacement, weights, decoded.shape[-1]))


def state_to_inputs(model: MotionTransferModel, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``prepare_views``'s dict -> the avatar tensors by export name."""
    return {n: state[STATE_KEYS[n]] for n in avatar_names(model)}


class AvatarGraph(nn.Module):
    """Once per avatar: views (1, V, 3, S, S) in [0, 1] -> (features, kp_view[, jac_view], image_small, heat_view)."""

    def __init__(self, model: MotionTransferModel) -> None:
        super().__init__()
        self.model = model
        self.names = avatar_names(model)

    def forward(self, views: torch.Tensor) -> tuple[torch.Tensor, ...]:
        state = self.model.prepare_views(views)
        return tuple(state[STATE_KEYS[n]] for n in self.names)


class KeypointGraph(nn.Module):
    """F_K: driving image (1, 3, S, S) in [0, 1] -> raw keypoints (1, K, 2) [+ jacobians (1, K, 2, 2)].

    ``pooled`` (in-process onnxruntime only, for an F_K that area-pools its input by n = ``area_factor``): the
    image comes already pooled, (1, 3, S / n, S / n) (:func:`odecam.engine.images.to_tensor` ``pool``)."""

    def __init__(self, model: MotionTransferModel, pooled: bool = False) -> None:
        super().__init__()
        self.kp_detector = model.kp_detector
        self.jacobian = has_jacobian(model)
        self.pooled = pooled

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        kp = self.kp_detector.from_downscaled(image) if self.pooled else self.kp_detector(image)
        return (kp["value"], kp["jacobian"]) if self.jacobian else (kp["value"],)


class FrameGraph(nn.Module):
    """Per frame: normalised driving keypoints [+ jacobians] and the avatar tensors -> (image, ode_ok).

    ``num_views`` (V = N + 1) and ``ode_steps`` are baked in; everything else about the avatar is an input.
    ``skip_tail`` (models with the image skip): return :data:`FRAME_TAIL_OUTPUTS` instead, for a caller that
    warps and blends the view images itself (``MotionTransferModel.animate(skip_tail=True)``).
    ``nhwc_features``: the avatar's ``features`` input is channels-last (V, h, w, C), the layout the ONNX
    gather warp reads, so no per-frame transpose of a constant (in-process onnxruntime only).
    ``nhwc_tail`` (with ``skip_tail``): 'decoded' and 'skip_mask' come out channels-last, (1, S, S, 3) and
    (1, S, S, 1), the layout :class:`odecam.engine.image_skip.ImageSkipTail` blends in (in-process onnxruntime only).
    ``phase_tail`` (with ``skip_tail``, a pixel-shuffle head): :data:`FRAME_PHASE_OUTPUTS`, the head unshuffled
    (``ImageSkipTail.from_phases`` puts it at full resolution with one copy; in-process onnxruntime only).
    """

    def __init__(self, model: MotionTransferModel, num_views: int | None = None, ode_steps: int | None = None,
                 skip_tail: bool = False, nhwc_features: bool = False, nhwc_tail: bool = False,
                 phase_tail: bool = False) -> None:
        super().__init__()
        self.model = model
        self.skip_tail = bool(skip_tail and model.cfg.generator.image_skip)
        self.nhwc_features = bool(nhwc_features)  # 'features' given as (V, h, w, C): the gather warp's own layout
        self.nhwc_tail = bool(nhwc_tail and self.skip_tail)
        self.phase_tail = bool(phase_tail and self.skip_tail and model.cfg.generator.pixel_shuffle > 1)
        self.num_views = int(num_views if num_views is not None else model.cfg.num_refs + 1)
        self.ode_steps = int(ode_steps if ode_steps is not None else model.cfg.evolution.steps)
        self.jacobian = has_jacobian(model)
        self.names = avatar_names(model)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.jacobian:
            kp_driving, jac_driving, rest = inputs[0], inputs[1], inputs[2:]
        else:
            kp_driving, jac_driving, rest = inputs[0], None, inputs[1:]
        state = {STATE_KEYS[n]: t for n, t in zip(self.names, rest)}
        if self.nhwc_features:
            state["features"] = state["features"].permute(0, 3, 1, 2)
        h, w = state["image_small"].shape[2:]
        state["grid"] = make_coordinate_grid(h, w, kp_driving.dtype, kp_driving.device)
        out = self.model.animate(state, kp_driving, jac_driving, num_views=self.num_views,
                                 solver="unrolled", ode_steps=self.ode_steps, skip_tail=self.skip_tail,
                                 phases=self.phase_tail)
        if self.phase_tail:
            return out["prediction"], out["displacement"], out["weights"], out["ode_ok"]
        if self.skip_tail:
            decoded, mask = out["prediction"], out["skip_mask"]
            if self.nhwc_tail:
                decoded, mask = decoded.permute(0, 2, 3, 1), mask.permute(0, 2, 3, 1)
            return decoded, mask, out["displacement"], out["weights"], out["ode_ok"]
        return out["prediction"], out["ode_ok"]


def example_inputs(model: MotionTransferModel, num_views: int | None = None, seed: int = 0,
                   ) -> dict[str, tuple[torch.Tensor, ...]]:
    """Realistic example inputs for the three graphs (random views through the model itself)."""
    cfg = model.cfg
    v = int(num_views if num_views is not None else cfg.num_refs + 1)
    s = cfg.image_size
    param = next(model.parameters())
    gen = torch.Generator().manual_seed(seed)
    views = torch.rand(1, v, 3, s, s, generator=gen).to(param)
    image = torch.rand(1, 3, s, s, generator=gen).to(param)
    with torch.no_grad():
        state = model.prepare_views(views)
        kp = model.kp_detector(image)
    avatar = tuple(state_to_inputs(model, state).values())
    driving = (kp["value"], kp["jacobian"]) if has_jacobian(model) else (kp["value"],)
    return {"avatar": (views,), "keypoints": (image,), "frame": driving + avatar}

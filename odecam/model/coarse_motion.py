"""F_C: coarse motion from K+1 keypoint displacements (paper Eq. 2-3; FOMM ``DenseMotionNetwork``).

For each view (source or reference) and the driving frame, the K local motions are

* zero-order (the paper):     T_i(z) = z + Delta_i,  Delta_i = x_S^i - x_D^i,  Delta_0 = 0;
* first-order (FOMM):         T_i(z) = x_S^i + J_S^i (J_D^i)^-1 (z - x_D^i),  T_0(z) = z.

An hourglass sees the keypoint heatmap differences and the view deformed by each T_i, and predicts
coefficient maps alpha (softmax over K+1). The coarse field is T~ = sum_i alpha_i T_i, returned as a
displacement from identity (B, 2, h, w) (for zero-order exactly sum_i alpha_i Delta_i). The same
features give the occlusion map and the per-view confidence logit used by the fusion (Eq. 6).

Everything that depends only on the view (its downscaled image and heatmaps) is precomputed by
:meth:`CoarseMotion.prepare_view`, so the per-frame call only touches driving-dependent work.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from odecam.config import CoarseMotionConfig
from odecam.model.blocks import Hourglass, downsampler
from odecam.model import fastpath
from odecam.model.fastpath import fused_convs
from odecam.model.geometry import inverse_2x2, kp2gaussian, make_coordinate_grid


@dataclass
class CoarseMotionOutput:
    """F_C's per-frame output for V views at motion resolution (h, w)."""

    displacement: torch.Tensor  # (V, 2, h, w): T~ - identity
    occlusion: torch.Tensor | None  # (V, 1, h, w) in (0, 1)
    confidence: torch.Tensor  # (V, 1, h, w) logits of C^(j)
    features: torch.Tensor  # (V, F, h, w) hourglass features (context for F_E)


class CoarseMotion(nn.Module):
    """F_C. Parameter names match FOMM's ``dense_motion_network`` for the vox256 preset
    (plus ``confidence``, which is new and zero-initialised: equal weights for all views)."""

    def __init__(self, cfg: CoarseMotionConfig, num_kp: int, num_channels: int = 3,
                 estimate_occlusion: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_kp = num_kp
        in_features = (num_kp + 1) * (num_channels + 1)
        self.hourglass = Hourglass(cfg.block_expansion, in_features, cfg.num_blocks, cfg.max_features,
                                   cfg.depthwise)
        out = self.hourglass.out_filters
        pad = cfg.head_kernel // 2
        self.mask = nn.Conv2d(out, num_kp + 1, cfg.head_kernel, padding=pad)
        self.occlusion = nn.Conv2d(out, 1, cfg.head_kernel, padding=pad) if estimate_occlusion else None
        self.confidence = nn.Conv2d(out, 1, 3, padding=1)
        nn.init.zeros_(self.confidence.weight)
        nn.init.zeros_(self.confidence.bias)
        self.down = downsampler(num_channels, cfg.scale_factor, cfg.antialias)
        self.feature_channels = out

    # -- once per view ---------------------------------------------------------------------------
    def prepare_view(self, image: torch.Tensor, kp_value: torch.Tensor) -> dict[str, torch.Tensor]:
        """Driving-independent inputs of F_C for a view.

        image (V, 3, H, W), kp_value (V, K, 2) -> {'image_small': (V, 3, h, w), 'heat_view': (V, K, h, w),
        'grid': (h, w, 2)}.
        """
        small = self.down(image) if self.down is not None else image
        h, w = small.shape[2:]
        grid = make_coordinate_grid(h, w, torch.float32, image.device)  # coordinates stay fp32 in fp16 models
        return {"image_small": small, "heat_view": kp2gaussian(kp_value.float(), grid, self.cfg.kp_variance),
                "grid": grid}

    # -- per frame -------------------------------------------------------------------------------
    def sparse_motions(self, grid: torch.Tensor, kp_view: torch.Tensor, kp_driving: torch.Tensor,
                       jac_view: torch.Tensor | None = None, jac_driving: torch.Tensor | None = None) -> torch.Tensor:
        """The K+1 local motions as sampling grids, (V, K+1, h, w, 2); index 0 is the background."""
        v, k = kp_view.shape[:2]
        h, w = grid.shape[:2]
        ident = grid[None, None].expand(v, 1, h, w, 2)
        rel = grid[None, None] - kp_driving[:, :, None, None, :]  # z - x_D: (V, K, h, w, 2)
        if self.cfg.mode == "first_order" and jac_view is not None and jac_driving is not None:
            jac = torch.matmul(jac_view, inverse_2x2(jac_driving))  # (V, K, 2, 2)
            rel = torch.einsum("vkij,vkhwj->vkhwi", jac, rel)
        motions = rel + kp_view[:, :, None, None, :]
        return torch.cat([ident, motions], dim=1)

    def forward(self, view: dict[str, torch.Tensor], kp_view: torch.Tensor, kp_driving: torch.Tensor,
                jac_view: torch.Tensor | None = None, jac_driving: torch.Tensor | None = None) -> CoarseMotionOutput:
        """view: :meth:`prepare_view`'s dict; kp_view (V, K, 2); kp_driving (V, K, 2) (driving keypoints,
        broadcast to every view). Returns T~ and the heads for V views.

        Heatmaps, local motions, the deformation, the softmax and T~ are computed in fp32 whatever the
        weights' dtype (no-ops for an fp32 model): in fp16 the Gaussian exponent (|z - x|^2 / 0.02, up to
        ~200) and the coordinates lose the precision F_C needs. Only the hourglass and its heads run in the
        weights' dtype."""
        dtype = self.mask.weight.dtype
        grid = view["grid"].float()
        small = view["image_small"].float()
        kp_view, kp_driving = kp_view.float(), kp_driving.float()
        jac_view = jac_view.float() if jac_view is not None else None
        jac_driving = jac_driving.float() if jac_driving is not None else None
        v, c, h, w = small.shape
        k = self.num_kp
        # export fast path, zero-order motions (translations): separable Gaussians and sampling, no grid tensors
        shifts = (kp_view - kp_driving) if fastpath.enabled() and not (
            self.cfg.mode == "first_order" and jac_view is not None and jac_driving is not None) else None
        gauss = fastpath.gaussians if shifts is not None else kp2gaussian
        heat = gauss(kp_driving, grid, self.cfg.kp_variance) - view["heat_view"].float()
        heat = torch.cat([heat.new_zeros(v, 1, h, w), heat], dim=1)  # (V, K+1, h, w)
        if shifts is not None:
            deformed = torch.cat([small.unsqueeze(1), fastpath.translate_bilinear(small, shifts, grid)], dim=1)
        else:
            motions = self.sparse_motions(grid, kp_view, kp_driving, jac_view, jac_driving)  # (V, K+1, h, w, 2)
            src = small.unsqueeze(1).expand(v, k + 1, c, h, w).reshape(v * (k + 1), c, h, w)
            deformed = F.grid_sample(src, motions.reshape(v * (k + 1), h, w, 2), mode="bilinear",
                                     padding_mode="zeros", align_corners=True).view(v, k + 1, c, h, w)
        x = torch.cat([heat.unsqueeze(2), deformed], dim=2).view(v, (k + 1) * (c + 1), h, w).to(dtype)
        feats = self.hourglass(x)
        heads = [self.mask, self.confidence] + ([self.occlusion] if self.occlusion is not None else [])
        logits = [t.float() for t in fused_convs(feats, heads)]  # one convolution on the export fast path
        alpha = fastpath.softmax(logits[0], dim=1)  # (V, K+1, h, w): the coefficient maps of Eq. 3
        if shifts is not None:  # sum_i alpha_i (z + Delta_i) - z = sum_i alpha_i Delta_i (the alphas sum to one)
            displacement = fastpath.weighted_shifts(alpha[:, 1:], shifts)
        else:
            coarse = torch.einsum("vkhw,vkhwc->vchw", alpha, motions)  # sum_i alpha_i T_i, (V, 2, h, w)
            displacement = coarse - grid.permute(2, 0, 1)[None]
        occlusion = torch.sigmoid(logits[2]) if self.occlusion is not None else None
        return CoarseMotionOutput(displacement, occlusion, logits[1], feats)

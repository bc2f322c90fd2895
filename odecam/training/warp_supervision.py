"""Synthetic-warp pairs with a known motion field (an odecam training switch, not in the paper).

Trained only through photometric losses, a small F_C learns that a zero field (copy the source) is the
safest answer: its coarse field on a rotated driver came out 5x too small and uncorrelated with the
true rotation (cosine -0.03, the 128 px default of 2026-11). Here part of each batch gets a driving
frame made from its own source by a random similarity transform (rotation, scale, translation), so the
backward field the model must output is known exactly:

    D(p) = S(q(p)),   q(p) = s R(theta) p + t,   T*(p) = q(p) - p     (p, q in [-1, 1], (x, y))

and ``L_flow = mean | T(p) - T*(p) |_1`` on both the coarse field T~ (F_C) and the evolved field T (F_E)
of the source view. Landmarks move with the frame: l_D = R(-theta) (l_S - t) / s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from odecam.model.geometry import make_coordinate_grid


@dataclass
class WarpPairConfig:
    """How often and how far the synthetic pairs move. Angles in degrees, translation in [-1, 1] units."""

    prob: float = 0.25
    max_rotation: float = 20.0
    max_scale: float = 0.12
    max_translation: float = 0.12


def _params(n: int, cfg: WarpPairConfig, device: torch.device, dtype: torch.dtype,
            generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    u = torch.rand(n, 4, generator=generator).to(device=device, dtype=dtype) * 2 - 1
    theta = u[:, 0] * math.radians(cfg.max_rotation)
    scale = 1.0 + u[:, 1] * cfg.max_scale
    shift = u[:, 2:] * cfg.max_translation
    c, s = torch.cos(theta), torch.sin(theta)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (n, 2, 2)
    return rot * scale[:, None, None], shift, scale


def make_warp_pairs(source: torch.Tensor, source_landmarks: torch.Tensor | None, cfg: WarpPairConfig,
                    generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Warp ``source`` (n, 3, H, W) by random similarity transforms.

    Returns (driving (n, 3, H, W), driving landmarks (n, 68, 2) or None, affine (n, 2, 3)) where the
    affine maps a driving coordinate p to its source coordinate q = A[:, :, :2] p + A[:, :, 2].
    """
    n, _, h, w = source.shape
    lin, shift, _ = _params(n, cfg, source.device, source.dtype, generator)
    affine = torch.cat([lin, shift[:, :, None]], dim=2)
    grid = make_coordinate_grid(h, w, source.dtype, source.device).view(1, h * w, 2)
    q = torch.einsum("nij,npj->npi", lin, grid.expand(n, -1, -1)) + shift[:, None, :]
    driving = F.grid_sample(source, q.view(n, h, w, 2), mode="bilinear", padding_mode="reflection",
                            align_corners=True)
    lm = None
    if source_landmarks is not None:
        inv = torch.linalg.inv(lin)
        lm = torch.einsum("nij,npj->npi", inv, source_landmarks - shift[:, None, :])
    return driving, lm, affine


def target_field(affine: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The exact backward field T*(p) = q(p) - p of :func:`make_warp_pairs`, (n, 2, h, w)."""
    grid = make_coordinate_grid(h, w, affine.dtype, affine.device).view(1, h * w, 2)
    n = affine.shape[0]
    q = torch.einsum("nij,npj->npi", affine[:, :, :2], grid.expand(n, -1, -1)) + affine[:, None, :, 2]
    return (q - grid).transpose(1, 2).reshape(n, 2, h, w)


def flow_loss(field: torch.Tensor, affine: torch.Tensor) -> torch.Tensor:
    """Mean L1 between a predicted field (n, 2, h, w) and the known one."""
    return (field - target_field(affine, field.shape[2], field.shape[3])).abs().mean()


def expression_flow_loss(field: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean L1 between a predicted field (n, 2, h, w) and known fields (n, 2, G, G) with NaN where unknown.

    The known fields (landmark-guided synthetic motion: a mouth opening, a blink, a head turn; exact up to
    the TPS grid, :func:`~odecam.training.datasets.landmark_motion.synthesize_with_field`) are resampled to
    (h, w) on the same ``align_corners=True`` nodes; a predicted value counts where every node around it is
    known. 0 (with a graph) when nothing is known.
    """
    if target.shape[0] == 0:
        return field.sum() * 0.0
    known = torch.isfinite(target).all(dim=1, keepdim=True).to(field.dtype)
    h, w = field.shape[2:]
    tgt = F.interpolate(torch.nan_to_num(target, nan=0.0), size=(h, w), mode="bilinear", align_corners=True)
    mask = F.interpolate(known, size=(h, w), mode="bilinear", align_corners=True) > 0.999
    n = int(mask.sum())
    if n == 0:
        return field.sum() * 0.0
    diff = (field - tgt).abs() * mask
    return diff.sum() / (2 * n)

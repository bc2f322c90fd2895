"""Synthetic-warp pairs with a known motion field (an odecam training switch, not in the paper).

Trained only through photometric losses, a small F_C learns that a zero field (copy the source) is the
safest answer: its coarse field on a rotated driver came out 5x too small and uncorrelated with the
true rotation (cosine -0.03, the 128 px default of 2026-11). Here part of each batch gets a driving
frame made from its own source by a random similarity transform (rotation, scale, translation), so the
backward field the model must output is known exactly:

    D(p) = S(q(p)),   q(p) = s R(theta) p + t,   T*(p) = q(p) - p     (p, q in [-1, 1], (x, y))

and ``L_flow = mean | T(p) - T*(p) |_1`` on both the coarse field T~ (F_C) and the evolved field T (F_E)
of the source view. Landmarks move with the frame: l_D = R(-theta) (l_S - t) / s.

``head_only`` (the ``loss.warp_region = "head"`` switch) moves only the head: the field is faded to zero
outside a disc around where the face lands, T*(p) = m(p) (q(p) - p), with m = 1 within ``inner`` face radii
of the face centre c_D = A^-1 (c_S - t) and 0 beyond ``outer`` (smoothstep between), so the background
stays still as it does in a talking-head video. Items without landmarks fall back to the whole frame.
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


def head_region(affine: torch.Tensor, source_landmarks: torch.Tensor, inner: float = 1.6,
                outer: float = 2.6) -> torch.Tensor:
    """(n, 4) discs (c_x, c_y, r_inner, r_outer) in driving coordinates around where each source face lands
    under ``affine`` (n, 2, 3); landmarks (n, 68, 2), NaN rows where unknown -> an infinite disc (whole frame)."""
    known = torch.isfinite(source_landmarks).flatten(1).all(1)
    lm = torch.nan_to_num(source_landmarks, nan=0.0)
    centre = lm.mean(1)
    radius = (lm - centre[:, None]).norm(dim=-1).amax(1).clamp_min(0.05)
    centre_d = torch.einsum("nij,nj->ni", torch.linalg.inv(affine[:, :, :2]), centre - affine[:, :, 2])
    scale = torch.linalg.det(affine[:, :, :2]).abs().sqrt()
    r_in, r_out = inner * radius / scale, outer * radius / scale
    inf = torch.full_like(r_in, float("inf"))
    return torch.stack([centre_d[:, 0], centre_d[:, 1], torch.where(known, r_in, inf),
                        torch.where(known, r_out, inf)], 1)


def region_mask(region: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(n, 1, h, w) weight m(p) of :func:`head_region` discs: 1 inside r_inner, smoothstep to 0 at r_outer."""
    grid = make_coordinate_grid(h, w, region.dtype, region.device)  # (h, w, 2)
    d = (grid[None] - region[:, None, None, :2]).norm(dim=-1)
    r_in, r_out = region[:, 2, None, None], region[:, 3, None, None]
    x = ((r_out - d) / (r_out - r_in).clamp_min(1e-6)).clamp(0, 1)
    x = torch.where(torch.isinf(r_in), torch.ones_like(x), x)
    return (x * x * (3 - 2 * x))[:, None]


def make_warp_pairs(source: torch.Tensor, source_landmarks: torch.Tensor | None, cfg: WarpPairConfig,
                    generator: torch.Generator | None = None, head_only: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """Warp ``source`` (n, 3, H, W) by random similarity transforms (only the head with ``head_only``).

    Returns (driving (n, 3, H, W), driving landmarks (n, 68, 2) or None, affine (n, 2, 3), region (n, 4) or
    None) where the affine maps a driving coordinate p to its source coordinate q = A[:, :, :2] p + A[:, :, 2]
    (inside the region's inner disc; see :func:`target_field`).
    """
    n, _, h, w = source.shape
    lin, shift, _ = _params(n, cfg, source.device, source.dtype, generator)
    affine = torch.cat([lin, shift[:, :, None]], dim=2)
    region = head_region(affine, source_landmarks.to(source.dtype)) if (
        head_only and source_landmarks is not None) else None
    where = make_coordinate_grid(h, w, source.dtype, source.device)[None] + target_field(
        affine, h, w, region).permute(0, 2, 3, 1)
    driving = F.grid_sample(source, where, mode="bilinear", padding_mode="reflection", align_corners=True)
    lm = None
    if source_landmarks is not None:
        inv = torch.linalg.inv(lin)
        lm = torch.einsum("nij,npj->npi", inv, source_landmarks - shift[:, None, :])
    return driving, lm, affine, region


def target_field(affine: torch.Tensor, h: int, w: int, region: torch.Tensor | None = None) -> torch.Tensor:
    """The exact backward field T*(p) = m(p) (q(p) - p) of :func:`make_warp_pairs`, (n, 2, h, w);
    m = 1 without a ``region``."""
    grid = make_coordinate_grid(h, w, affine.dtype, affine.device).view(1, h * w, 2)
    n = affine.shape[0]
    q = torch.einsum("nij,npj->npi", affine[:, :, :2], grid.expand(n, -1, -1)) + affine[:, None, :, 2]
    field = (q - grid).transpose(1, 2).reshape(n, 2, h, w)
    return field if region is None else field * region_mask(region, h, w)


def flow_loss(field: torch.Tensor, affine: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
    """Mean L1 between a predicted field (n, 2, h, w) and the known one."""
    return (field - target_field(affine, field.shape[2], field.shape[3], region)).abs().mean()


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

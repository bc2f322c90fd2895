"""Coordinate grids, keypoint heatmaps and warping.

Conventions (as in First Order Motion Model): coordinates are (x, y) in [-1, 1] with -1 and 1 at the
centres of the border pixels (``align_corners=True``). A *sampling grid* (B, H, W, 2) maps each output
pixel to the source coordinate it reads from; a *displacement* (B, 2, H, W) is grid minus identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def make_coordinate_grid(h: int, w: int, dtype: torch.dtype = torch.float32,
                         device: torch.device | str | None = None) -> torch.Tensor:
    """Identity sampling grid, (H, W, 2) with [..., 0] = x and [..., 1] = y in [-1, 1]."""
    x = torch.linspace(-1.0, 1.0, w, dtype=dtype, device=device)
    y = torch.linspace(-1.0, 1.0, h, dtype=dtype, device=device)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def kp2gaussian(kp: torch.Tensor, grid: torch.Tensor, kp_variance: float) -> torch.Tensor:
    """Gaussian heatmaps around keypoints.

    kp: (B, K, 2); grid: (H, W, 2) -> (B, K, H, W).
    """
    diff = grid[None, None] - kp[:, :, None, None, :]
    return torch.exp(-0.5 * (diff ** 2).sum(-1) / kp_variance)


def warp(features: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Backward-warp features (B, C, H, W) with a sampling grid (B, h, w, 2) -> (B, C, h, w)."""
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def resize_grid(grid: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Bilinearly resample a sampling grid (B, H, W, 2) to (B, h, w, 2)."""
    if grid.shape[1] == h and grid.shape[2] == w:
        return grid
    g = grid.permute(0, 3, 1, 2)
    g = F.interpolate(g, size=(h, w), mode="bilinear", align_corners=True)
    return g.permute(0, 2, 3, 1)


def soft_argmax(heatmap: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Expected coordinate of normalised heatmaps: (B, K, H, W) x (H, W, 2) -> (B, K, 2)."""
    return torch.einsum("bkhw,hwc->bkc", heatmap, grid)

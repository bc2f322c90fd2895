"""Coordinate grids, keypoint heatmaps and warping.

Conventions (as in First Order Motion Model): coordinates are (x, y) in [-1, 1] with -1 and 1 at the
centres of the border pixels (``align_corners=True``). A *sampling grid* (B, H, W, 2) maps each output
pixel to the source coordinate it reads from; a *displacement* (B, 2, H, W) is grid minus identity.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F


def make_coordinate_grid(h: int, w: int, dtype: torch.dtype = torch.float32,
                         device: torch.device | str | None = None) -> torch.Tensor:
    """Identity sampling grid, (H, W, 2) with [..., 0] = x and [..., 1] = y in [-1, 1]."""
    x = torch.linspace(-1.0, 1.0, w, dtype=dtype, device=device)
    y = torch.linspace(-1.0, 1.0, h, dtype=dtype, device=device)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


_GRIDS: dict[tuple, torch.Tensor] = {}


def identity_grid(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """:func:`make_coordinate_grid` cached per (h, w, dtype, device), so the per-frame path allocates none.
    The grid is a constant: never modify it in place."""
    if _tracing(like):  # inside torch.export / dynamo / jit tracing: a graph constant, never cached
        return make_coordinate_grid(h, w, like.dtype, like.device)
    key = (h, w, like.dtype, like.device)
    grid = _GRIDS.get(key)
    if grid is None:
        with torch.inference_mode(False):
            grid = _GRIDS[key] = make_coordinate_grid(h, w, like.dtype, like.device)
    return grid


def _tracing(like: torch.Tensor) -> bool:
    """True while an exporter traces (its fake tensors must not leak into the cache and later eager calls)."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return True
    from torch._subclasses.fake_tensor import is_fake

    return is_fake(like)


def kp2gaussian(kp: torch.Tensor, grid: torch.Tensor, kp_variance: float) -> torch.Tensor:
    """Gaussian heatmaps around keypoints.

    kp: (B, K, 2); grid: (H, W, 2) -> (B, K, H, W).
    """
    diff = grid[None, None] - kp[:, :, None, None, :]
    return torch.exp(-0.5 * (diff ** 2).sum(-1) / kp_variance)


_GATHER_WARP = False
#: :func:`warp` uses :func:`warp_gather` (inside :func:`gather_warp`) for features with at least this many channels
GATHER_MIN_CHANNELS = 8


@contextlib.contextmanager
def gather_warp(enabled: bool = True) -> Iterator[None]:
    """Within this block :func:`warp` samples wide features with :func:`warp_gather` instead of
    ``grid_sample``. The ONNX export uses it: onnxruntime's CPU GridSample is about 3x slower than four
    row gathers on 64-channel features. Eager and training never enter it. Not thread-safe."""
    global _GATHER_WARP
    old, _GATHER_WARP = _GATHER_WARP, enabled
    try:
        yield
    finally:
        _GATHER_WARP = old


def warp(features: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Backward-warp features (B, C, H, W) with a sampling grid (B, h, w, 2) -> (B, C, h, w).

    Reduced-precision features with an fp32 grid are sampled in fp32 and cast back: fp16 cannot hold a
    pixel coordinate finely enough (steps of 1/8 pixel at 256 px)."""
    if features.dtype != grid.dtype:
        return warp(features.to(grid.dtype), grid).to(features.dtype)
    if _GATHER_WARP and features.shape[1] >= GATHER_MIN_CHANNELS:
        return warp_gather(features, grid)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def bilinear_taps(grid: torch.Tensor, hi: int, wi: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The four bilinear taps of sampling points ``grid`` (B, h, w, 2) in [-1, 1] (``align_corners=True``)
    from B maps of (hi, wi): (row index (B, h, w) int64 into a channels-last table of B * hi * wi rows,
    weight (B, h, w)); a tap outside the map gets weight 0 and row 0 (zero padding; NaN points too)."""
    b = grid.shape[0]
    x = (grid[..., 0] + 1) * (0.5 * (wi - 1))  # (B, h, w) pixel coordinates
    y = (grid[..., 1] + 1) * (0.5 * (hi - 1))
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = x - x0, y - y0
    base = torch.arange(b, dtype=grid.dtype, device=grid.device).view(b, 1, 1) * float(hi * wi)
    taps = []
    for dx, wx in ((0.0, 1 - fx), (1.0, fx)):
        for dy, wy in ((0.0, 1 - fy), (1.0, fy)):
            xx, yy = x0 + dx, y0 + dy
            inside = (xx >= 0) & (xx <= wi - 1) & (yy >= 0) & (yy <= hi - 1)  # False for NaN too
            index = torch.where(inside, yy * wi + xx + base, torch.zeros_like(xx))  # always a valid row
            taps.append((index.to(torch.int64), wx * wy * inside.to(grid.dtype)))
    return taps


def warp_gather(features: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """:func:`warp` (bilinear, zero padding, ``align_corners=True``) as four row gathers from a
    channels-last table: the same function as ``grid_sample`` to float rounding."""
    b, c, hi, wi = features.shape
    h, w = grid.shape[1:3]
    table = features.permute(0, 2, 3, 1).reshape(b * hi * wi, c)
    out = None
    for index, weight in bilinear_taps(grid, hi, wi):
        term = table[index.reshape(-1)].view(b, h, w, c) * weight.unsqueeze(-1)
        out = term if out is None else out + term
    return out.permute(0, 3, 1, 2)


def resize_grid(grid: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Bilinearly resample a sampling grid (B, H, W, 2) to (B, h, w, 2)."""
    if grid.shape[1] == h and grid.shape[2] == w:
        return grid
    g = grid.permute(0, 3, 1, 2)
    g = F.interpolate(g, size=(h, w), mode="bilinear", align_corners=True)
    return g.permute(0, 2, 3, 1)


def inverse_2x2(m: torch.Tensor) -> torch.Tensor:
    """Inverse of 2x2 matrices (..., 2, 2) in closed form (adj / det): exports to ONNX and TensorRT,
    where ``torch.inverse`` does not."""
    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    adj = torch.stack([torch.stack([d, -b], dim=-1), torch.stack([-c, a], dim=-1)], dim=-2)
    return adj / det[..., None, None]


def soft_argmax(heatmap: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Expected coordinate of normalised heatmaps: (B, K, H, W) x (H, W, 2) -> (B, K, 2)."""
    return torch.einsum("bkhw,hwc->bkc", heatmap, grid)

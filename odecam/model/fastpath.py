"""Export-time rewrites of a few layers into forms onnxruntime's CPU kernels run faster.

Each rewrite computes the same function as the layer it replaces, to float rounding (summation order);
no parameter changes name or shape. Eager inference and training never enter :func:`export_fastpath`;
the ONNX exporter does (:mod:`odecam.export.onnx`). Measured on 2 cores, onnxruntime 1.32 (see
``benchmarks/RESULTS.md``):

* :func:`fused_convs` — several convolutions reading the same input (F_G's final RGB conv and its
  image-skip mask; F_C's coefficient, occlusion and confidence heads) as one convolution whose outputs
  are split: onnxruntime pads every convolution's output channels to its vector block (8 or 16), so a
  3-channel and a 1-channel conv at 256 px cost two full 16-channel convs (6.7 ms -> 3.6 ms).
* :func:`conv_taps` — a k x k convolution with many inputs and very few outputs (F_A's flow head,
  81 -> 2 channels at 64 px) as one 1x1 convolution to k*k*out channels and k*k shifted sums: the
  im2col + skinny GEMM onnxruntime uses for it is memory-bound (1.6 ms -> 0.6 ms).
* :func:`upsampled_head` — F_G's last up-block (nearest 2x upsample, 3x3 conv, BN, ReLU) and its 3x3 output
  convolutions at half resolution: one convolution per phase of the upsampling, the output convolutions as
  one 2x2 convolution over the four phases and a ``pixel_shuffle`` (no 32-channel 256 px tensor; the 4-channel
  output conv, padded to 16 channels at 256 px, was the largest node: 12.7 -> 6.1 ms for that part).
* :func:`gaussians`, :func:`translate_bilinear`, :func:`weighted_shifts` — F_C with zero-order motions:
  the K local motions are translations, so the driving heatmaps are outer products of 1-D Gaussians, the
  deformed view images two small matrix products per keypoint (no GridSample, no (V, K+1, h, w, 2) motion
  grids) and T~ = sum_i alpha_i Delta_i one matrix product.
* :func:`softmax` — a softmax over a middle axis without onnxruntime's transposes.
* :func:`warp_views_sum` — F_A's appearance warp and its share of the fusion (Eq. 6) in one pass: the per-pixel
  fusion factors (1 - occlusion) * C~_j go into the gathers' corner weights and the views are summed
  channels-last (one full-size product and the per-view transposes fewer).

Not thread-safe (a module-level switch, like :func:`odecam.model.geometry.gather_warp`).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

_ENABLED = False


@contextlib.contextmanager
def export_fastpath(enabled: bool = True) -> Iterator[None]:
    """Within this block the layers above use their export forms."""
    global _ENABLED
    old, _ENABLED = _ENABLED, enabled
    try:
        yield
    finally:
        _ENABLED = old


def enabled() -> bool:
    return _ENABLED


def fused_convs(x: torch.Tensor, convs: Sequence[nn.Conv2d], act=None) -> list[torch.Tensor]:
    """``[act(conv(x)) for conv in convs]`` (``act`` elementwise, or None) as one convolution (and one ``act``)
    when the fast path is on and the convolutions share kernel size, stride, padding and groups=1 (each
    output (B, C_i, H, W))."""
    if not _ENABLED or len(convs) < 2:
        return [c(x) if act is None else act(c(x)) for c in convs]
    first = convs[0]
    same = all(c.kernel_size == first.kernel_size and c.padding == first.padding and c.stride == first.stride
               and c.dilation == first.dilation and c.groups == 1 and c.bias is not None for c in convs)
    if not same:
        return [c(x) if act is None else act(c(x)) for c in convs]
    weight = torch.cat([c.weight for c in convs], dim=0)
    bias = torch.cat([c.bias for c in convs], dim=0)
    y = F.conv2d(x, weight, bias, first.stride, first.padding, first.dilation)
    return list(torch.split(y if act is None else act(y), [c.out_channels for c in convs], dim=1))


def conv_taps(x: torch.Tensor | Sequence[torch.Tensor], conv: nn.Conv2d) -> torch.Tensor:
    """``conv(x)`` for a stride-1, 'same'-padded k x k convolution, as a 1x1 convolution to k*k*out channels
    followed by k*k shifted sums, when the fast path is on. x (B, C, H, W), or a list of parts whose
    channels concatenate to C -> (B, out, H, W)."""
    o, _, kh, kw = conv.weight.shape
    ph, pw = conv.padding if isinstance(conv.padding, tuple) else (conv.padding, conv.padding)
    parts = [x] if isinstance(x, torch.Tensor) else list(x)
    if not _ENABLED or conv.stride != (1, 1) or conv.groups != 1 or (ph, pw) != (kh // 2, kw // 2) or kh % 2 == 0:
        return conv(parts[0] if len(parts) == 1 else torch.cat(parts, 1))
    h, w = parts[0].shape[2:]
    w1 = conv.weight.permute(2, 3, 0, 1).reshape(kh * kw * o, -1, 1, 1)
    taps = None
    for p, wp in zip(parts, torch.split(w1, [p.shape[1] for p in parts], dim=1)):
        y = F.conv2d(p, wp)  # (B, kh*kw*o, H, W)
        taps = y if taps is None else taps + y
    taps = F.pad(taps, (pw, pw, ph, ph))
    out = None
    for a in range(kh):
        for b in range(kw):
            k = (a * kw + b) * o
            t = taps[:, k:k + o, a:a + h, b:b + w]
            out = t if out is None else out + t
    return out if conv.bias is None else out + conv.bias.view(1, o, 1, 1)


def sum_views(x: torch.Tensor) -> torch.Tensor:
    """``x.sum(1)`` over the views of (B, V, ...): on the fast path as V - 1 additions (onnxruntime's ReduceSum
    over a middle axis is about 3x slower than one Add for V = 2)."""
    if not _ENABLED or x.shape[1] > 8:
        return x.sum(1)
    out = x[:, 0]
    for j in range(1, x.shape[1]):
        out = out + x[:, j]
    return out


def softmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``torch.softmax(x, dim)``; on the fast path over a middle axis as max, exp and sum: onnxruntime's Softmax
    over a non-last axis transposes around the last-axis kernel (F_C's alpha over K + 1 = 11 channels at 32 px:
    0.20 -> 0.02 ms; the view weights C~ at 64 px, V = 2: 0.12 -> 0.03 ms)."""
    if not _ENABLED or dim in (-1, x.dim() - 1):
        return torch.softmax(x, dim)
    e = torch.exp(x - x.amax(dim, keepdim=True))
    return e / e.sum(dim, keepdim=True)


def conv_parts(parts: Sequence[torch.Tensor], conv: nn.Module) -> torch.Tensor:
    """``conv(torch.cat(parts, 1))`` without the concatenation: each part through its slice of the weights,
    summed (a ``Conv2d`` with groups=1, or a :class:`~odecam.model.blocks.SeparableConv2d` whose depthwise
    half is split the same way). onnxruntime falls back to a slow kernel for a depthwise convolution whose
    channel count is not a multiple of its vector block (F_A's 64 + 1 input channels: 7.9 ms -> 3.7 ms), and runs
    any convolution unblocked whose input channels are not (F_K's 16 + 3 channel head: 0.42 -> 0.19 ms)."""
    sizes = [p.shape[1] for p in parts]
    if isinstance(conv, nn.Conv2d):
        if conv.groups != 1:
            raise ValueError("conv_parts takes a Conv2d with groups=1 or a SeparableConv2d")
        ws = torch.split(conv.weight, sizes, dim=1)
        out = None
        for p, w in zip(parts, ws):  # the bias with the first part (no separate broadcast Add)
            y = F.conv2d(p, w, conv.bias if out is None else None, conv.stride, conv.padding, conv.dilation)
            out = y if out is None else out + y
        return out
    dw, pw = conv.dw, conv.pw  # SeparableConv2d: depthwise per part, then the pointwise 1x1 over the parts
    dws = torch.split(dw.weight, sizes, dim=0)
    mids = [F.conv2d(p, w, None, dw.stride, dw.padding, dw.dilation, groups=p.shape[1]) for p, w in zip(parts, dws)]
    return conv_parts(mids, pw)


# -- the last up-block and the output convolutions in the 4 phases of the 2x upsampling ---------------------
#: rows of the 3-tap kernel seen by output phase a of "nearest 2x upsample, then a 3-tap conv" at input resolution:
#: phase 0 reads input offsets (-1, 0) with taps (w0, w1 + w2); phase 1 reads (0, +1) with (w0 + w1, w2)
_PHASE_TAPS = (((1.0, 0.0, 0.0), (0.0, 1.0, 1.0), (0.0, 0.0, 0.0)),
               ((0.0, 0.0, 0.0), (1.0, 1.0, 0.0), (0.0, 0.0, 1.0)))


def _phase_kernel(weight: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """A 3x3 kernel (..., 3, 3) applied after a nearest 2x upsample -> the 3x3 kernel (zeros where unused) that
    gives output phase (a, b) (rows 2i + a, columns 2j + b) from the input at its own resolution."""
    ta = torch.tensor(_PHASE_TAPS[a], dtype=weight.dtype, device=weight.device)
    tb = torch.tensor(_PHASE_TAPS[b], dtype=weight.dtype, device=weight.device)
    return torch.einsum("iy,...yx,jx->...ij", ta, weight, tb)


def _is_3x3_same(conv: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1))


def _phase_conv_weight(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 'same' convolution (O, C, 3, 3) of an image held as its 4 phases (input channel p * C + c is pixel
    (2i + a, 2j + b) of channel c, p = 2a + b) -> a 2x2 convolution (O * 4, 4 * C, 2, 2) of the phases, run with
    padding 1, whose output (i, j), channel o * 4 + 2q + r, is output pixel (2i - 1 + q, 2j - 1 + r) of
    channel o: after ``pixel_shuffle`` the image is shifted by one pixel and one pixel larger on every side.
    Both output rows 2i - 1 and 2i read input rows 2i - 2 .. 2i + 1, i.e. phase rows i - 1 and i: 2x2 taps."""
    o, c = weight.shape[:2]
    big = weight.new_zeros(o, 2, 2, 2, 2, c, 2, 2)  # (o, q, r, a, b, c, ky, kx)
    for q in range(2):
        for dy in (-1, 0, 1):
            a, ky = (dy + q - 1) % 2, (dy + q - 1) // 2 + 1  # high-res row 2i - 1 + q + dy = 2 (i + ky - 1) + a
            for r in range(2):
                for dx in (-1, 0, 1):
                    b, kx = (dx + r - 1) % 2, (dx + r - 1) // 2 + 1
                    big[:, q, r, a, b, :, ky, kx] = weight[:, :, dy + 1, dx + 1]
    return big.reshape(o * 4, 4 * c, 2, 2)


def upsampled_head(x: torch.Tensor, block: nn.Module, convs: Sequence[nn.Conv2d],
                   act=None) -> list[torch.Tensor] | None:
    """``[act(conv(block(x))) for conv in convs]`` for F_G's last up-block (nearest 2x upsample -> 3x3 conv
    (plain or depthwise-separable) -> BN -> ReLU, :class:`~odecam.model.blocks.UpBlock2d`) and its 3x3 output
    convolutions, computed at x's resolution: the upsample and the block's 3x3 convolution become one
    convolution per output phase (2x2 phases), the output convolutions one convolution over the 4 phases, and a
    ``pixel_shuffle`` puts the few output channels at full resolution. x (B, C, h, w) -> [(B, C_i, 2h, 2w)].

    Same function to float rounding; no full-resolution tensor wider than the output. Returns None off the
    fast path or for layers of another shape (the caller runs the layers)."""
    from odecam.model.blocks import SeparableConv2d

    sep = isinstance(block.conv, SeparableConv2d)
    first = block.conv.dw if sep else block.conv
    if not _ENABLED or not _is_3x3_same(first) or not all(_is_3x3_same(c) and c.groups == 1 for c in convs):
        return None
    phases = []
    for a in range(2):
        for b in range(2):
            y = F.conv2d(x, _phase_kernel(first.weight, a, b), first.bias, 1, 1, 1, first.groups)
            if sep:
                y = block.conv.pw(y)
            phases.append(F.relu(block.norm(y)))
    weight = torch.cat([c.weight for c in convs], dim=0)
    bias = torch.cat([c.bias if c.bias is not None else c.weight.new_zeros(c.out_channels) for c in convs])
    y = F.conv2d(torch.cat(phases, dim=1), _phase_conv_weight(weight), bias.repeat_interleave(4), 1, 1)
    if act is not None:  # elementwise: before the shuffle, where onnxruntime fuses it into the convolution
        y = act(y)
    y = F.pixel_shuffle(y, 2)[:, :, 1:-1, 1:-1]  # (B, O, 2h + 2, 2w + 2), shifted by one pixel: crop
    return list(torch.split(y, [c.out_channels for c in convs], dim=1))


# -- F_C with zero-order motions: translations, computed separably ------------------------------------------
def gaussians(kp: torch.Tensor, grid: torch.Tensor, kp_variance: float) -> torch.Tensor:
    """:func:`odecam.model.geometry.kp2gaussian` on a coordinate grid (H, W, 2) (rows of constant y, columns of
    constant x, as ``make_coordinate_grid`` builds it) as the outer product of a row and a column Gaussian:
    kp (B, K, 2) -> (B, K, H, W), without the (B, K, H, W, 2) difference tensor."""
    x, y = grid[0, :, 0], grid[:, 0, 1]  # (W,), (H,)
    gx = torch.exp(-0.5 * (x[None, None] - kp[..., 0:1]) ** 2 / kp_variance)  # (B, K, W)
    gy = torch.exp(-0.5 * (y[None, None] - kp[..., 1:2]) ** 2 / kp_variance)  # (B, K, H)
    return gy.unsqueeze(-1) * gx.unsqueeze(-2)


def _hat_matrix(coords: torch.Tensor, shift: torch.Tensor, n: int) -> torch.Tensor:
    """Bilinear interpolation weights of a 1-D translation: coords (n,) in [-1, 1], shift (B, K) in the same
    units -> (B, K, n, n) with [.., j, m] = max(0, 1 - |u_j - m|), u_j the pixel position sampled for output j
    (``align_corners=True``). Positions outside [0, n - 1] have no column: zero padding."""
    u = (coords[None, None] + shift.unsqueeze(-1) + 1) * (0.5 * (n - 1))  # (B, K, n)
    m = torch.arange(n, dtype=coords.dtype, device=coords.device)
    return torch.relu(1 - (u.unsqueeze(-1) - m).abs())


def translate_bilinear(image: torch.Tensor, shift: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``grid_sample(image, grid + shift_k)`` (bilinear, zero padding, ``align_corners=True``) for K
    translations per item, as two small matrix products (separable: out = R_y image R_x^T): image (B, C, H, W),
    shift (B, K, 2) in grid units, grid (H, W, 2) as in :func:`gaussians` -> (B, K, C, H, W). No gathers."""
    h, w = image.shape[2:]
    rx = _hat_matrix(grid[0, :, 0], shift[..., 0], w)  # (B, K, W, W)
    ry = _hat_matrix(grid[:, 0, 1], shift[..., 1], h)  # (B, K, H, H)
    rows = torch.matmul(ry.unsqueeze(2), image.unsqueeze(1))  # (B, K, C, H, W)
    return torch.matmul(rows, rx.transpose(-1, -2).unsqueeze(2))


def weighted_shifts(alpha: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """sum_k alpha_k (z + Delta_k) - z for coefficient maps that sum to one over the background (Delta_0 = 0)
    and the K keypoints: alpha (B, K, H, W) of the keypoints only, shift Delta (B, K, 2) -> (B, 2, H, W)."""
    b, k, h, w = alpha.shape
    return torch.matmul(shift.transpose(1, 2), alpha.reshape(b, k, h * w)).view(b, 2, h, w)


# -- F_A's warp and the fusion over views in one pass ------------------------------------------------------
def warp_views_sum(features: torch.Tensor, grid: torch.Tensor, scale: torch.Tensor, num_views: int) -> torch.Tensor:
    """sum_j scale_j * warp(features_j, grid_j) over the V views of each item (F_A's appearance warp and its
    share of Eq. 6's fusion): features (B*V, C, H, W), grid (B*V, h, w, 2), per-pixel factors scale (B*V, h, w)
    -> (B, C, h, w). Inside :func:`odecam.model.geometry.gather_warp` the factors go into the four corner
    weights of the row gathers and the views are summed channels-last, so the full-size product with the
    factors and the per-view transposes disappear; otherwise ``warp`` then multiply and sum."""
    from odecam.model import geometry

    bv, c, hi, wi = features.shape
    b, (h, w) = bv // num_views, grid.shape[1:3]
    if not geometry._GATHER_WARP or c < geometry.GATHER_MIN_CHANNELS or features.dtype != grid.dtype:
        return sum_views((geometry.warp(features, grid) * scale.unsqueeze(1)).view(b, num_views, c, h, w))
    table = features.permute(0, 2, 3, 1).reshape(bv * hi * wi, c)
    out = None
    for index, weight in geometry.bilinear_taps(grid, hi, wi):
        rows = table[index.reshape(-1)].view(b, num_views, h, w, c)
        weight = (weight * scale).view(b, num_views, h, w, 1)
        out = rows * weight if out is None else out + rows * weight
    return sum_views(out).permute(0, 3, 1, 2)


def warp_views_rows(features: torch.Tensor, grid: torch.Tensor, scale: torch.Tensor | None,
                    num_views: int) -> list[torch.Tensor]:
    """Each view's features warped channels-last, [scale_j * warp(features_j, grid_j)] over the V views of each
    item: features (B*V, C, H, W), grid (B*V, h, w, 2), per-pixel factors scale (B*V, h, w) or None -> V x
    (B, h, w, C). Inside :func:`odecam.model.geometry.gather_warp` every view has its own four row gathers with
    its factors in their corner weights (no (B, V, h, w, C) tensor to split and weight afterwards); otherwise
    ``warp`` and a product."""
    from odecam.model import geometry

    bv, c, hi, wi = features.shape
    b, (h, w) = bv // num_views, grid.shape[1:3]
    if not geometry._GATHER_WARP or c < geometry.GATHER_MIN_CHANNELS or features.dtype != grid.dtype:
        rows = geometry.warp(features, grid).permute(0, 2, 3, 1)  # (B*V, h, w, C)
        if scale is not None:
            rows = rows * scale.unsqueeze(-1)
        rows = rows.reshape(b, num_views, h, w, c)
        return [rows[:, j] for j in range(num_views)]
    table = features.permute(0, 2, 3, 1).reshape(bv * hi * wi, c)
    taps = geometry.bilinear_taps(grid, hi, wi)  # index, weight (B*V, h, w)
    if scale is not None:
        taps = [(index, weight * scale) for index, weight in taps]
    out = []
    for j in range(num_views):
        acc = None
        for index, weight in taps:
            rows = table[index.view(b, num_views, h, w)[:, j].reshape(-1)].view(b, h, w, c)
            term = rows * weight.view(b, num_views, h, w, 1)[:, j]
            acc = term if acc is None else acc + term
        out.append(acc)
    return out

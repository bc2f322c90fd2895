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


def conv_parts(parts: Sequence[torch.Tensor], conv: nn.Module) -> torch.Tensor:
    """``conv(torch.cat(parts, 1))`` without the concatenation: each part through its slice of the weights,
    summed (a ``Conv2d`` with groups=1, or a :class:`~odecam.model.blocks.SeparableConv2d` whose depthwise
    half is split the same way). onnxruntime falls back to a slow kernel for a depthwise convolution whose
    channel count is not a multiple of its vector block (F_A's 64 + 1 input channels: 7.9 ms -> 3.7 ms)."""
    sizes = [p.shape[1] for p in parts]
    if isinstance(conv, nn.Conv2d):
        if conv.groups != 1:
            raise ValueError("conv_parts takes a Conv2d with groups=1 or a SeparableConv2d")
        ws = torch.split(conv.weight, sizes, dim=1)
        out = None
        for p, w in zip(parts, ws):
            y = F.conv2d(p, w, None, conv.stride, conv.padding, conv.dilation)
            out = y if out is None else out + y
        return out if conv.bias is None else out + conv.bias.view(1, -1, 1, 1)
    dw, pw = conv.dw, conv.pw  # SeparableConv2d: depthwise per part, then the pointwise 1x1 over the parts
    dws = torch.split(dw.weight, sizes, dim=0)
    mids = [F.conv2d(p, w, None, dw.stride, dw.padding, dw.dilation, groups=p.shape[1]) for p, w in zip(parts, dws)]
    return conv_parts(mids, pw)

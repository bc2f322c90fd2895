"""Convolutional building blocks shared by F_K, F_C, F_A and F_G.

Names and parameter layouts follow First Order Motion Model (``DownBlock2d``, ``UpBlock2d``,
``SameBlock2d``, ``ResBlock2d``, ``Hourglass``, ``AntiAliasInterpolation2d``) so that its checkpoints
load by name. ``depthwise=True`` swaps each 3x3 convolution for a depthwise-separable one (lite).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SeparableConv2d(nn.Module):
    """Depthwise k x k convolution followed by a pointwise 1x1 convolution."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.dw = nn.Conv2d(in_ch, in_ch, kernel_size, padding=padding, groups=in_ch, bias=False)
        self.pw = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


def conv(in_ch: int, out_ch: int, kernel_size: int = 3, padding: int = 1, depthwise: bool = False) -> nn.Module:
    """A k x k convolution, or its depthwise-separable version."""
    if depthwise and kernel_size > 1 and in_ch > 4:
        return SeparableConv2d(in_ch, out_ch, kernel_size, padding)
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=padding)


class DownBlock2d(nn.Module):
    """conv -> BN -> ReLU -> 2x2 average pool. (B, C_in, H, W) -> (B, C_out, H/2, W/2)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, padding: int = 1, depthwise: bool = False):
        super().__init__()
        self.conv = conv(in_ch, out_ch, kernel_size, padding, depthwise)
        self.norm = nn.BatchNorm2d(out_ch, affine=True)
        self.pool = nn.AvgPool2d(kernel_size=(2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.norm(self.conv(x))))


class UpBlock2d(nn.Module):
    """2x nearest upsample -> conv -> BN -> ReLU. (B, C_in, H, W) -> (B, C_out, 2H, 2W)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, padding: int = 1, depthwise: bool = False):
        super().__init__()
        self.conv = conv(in_ch, out_ch, kernel_size, padding, depthwise)
        self.norm = nn.BatchNorm2d(out_ch, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return F.relu(self.norm(self.conv(x)))


class SameBlock2d(nn.Module):
    """conv -> BN -> ReLU at constant resolution."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, padding: int = 1, depthwise: bool = False):
        super().__init__()
        self.conv = conv(in_ch, out_ch, kernel_size, padding, depthwise)
        self.norm = nn.BatchNorm2d(out_ch, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class ResBlock2d(nn.Module):
    """Pre-activation residual block: x + conv2(relu(bn2(conv1(relu(bn1(x))))))."""

    def __init__(self, ch: int, kernel_size: int = 3, padding: int = 1, depthwise: bool = False):
        super().__init__()
        self.conv1 = conv(ch, ch, kernel_size, padding, depthwise)
        self.conv2 = conv(ch, ch, kernel_size, padding, depthwise)
        self.norm1 = nn.BatchNorm2d(ch, affine=True)
        self.norm2 = nn.BatchNorm2d(ch, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class Encoder(nn.Module):
    """Hourglass encoder; returns the input and every down-block output (skip connections)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int,
                 depthwise: bool = False):
        super().__init__()
        blocks = []
        for i in range(num_blocks):
            cin = in_features if i == 0 else min(max_features, block_expansion * (2 ** i))
            cout = min(max_features, block_expansion * (2 ** (i + 1)))
            blocks.append(DownBlock2d(cin, cout, depthwise=depthwise))
        self.down_blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """Hourglass decoder with concatenated skips; output has ``out_filters`` channels."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int,
                 depthwise: bool = False):
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            cin = (1 if i == num_blocks - 1 else 2) * min(max_features, block_expansion * (2 ** (i + 1)))
            cout = min(max_features, block_expansion * (2 ** i))
            blocks.append(UpBlock2d(cin, cout, depthwise=depthwise))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(self.parts(skips), dim=1)

    def parts(self, skips: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` before its last concatenation: (the last up-block's output (B, block_expansion, H, W),
        the hourglass input (B, in_features, H, W))."""
        skips = list(skips)
        out = skips.pop()
        for block in self.up_blocks[:-1]:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return self.up_blocks[-1](out), skips.pop()


class Hourglass(nn.Module):
    """U-Net style hourglass: (B, in_features, H, W) -> (B, block_expansion + in_features, H, W)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256,
                 depthwise: bool = False):
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features, depthwise)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features, depthwise)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The output's two halves before they are concatenated: (B, block_expansion, H, W), x."""
        return self.decoder.parts(self.encoder(x))


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur then subsample by 1/scale (FOMM). The kernel is a buffer named ``weight``."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        sigma = (1 / scale - 1) / 2
        kernel_size = 2 * round(sigma * 4) + 1
        self.ka = kernel_size // 2
        self.kb = self.ka - 1 if kernel_size % 2 == 0 else self.ka
        coords = torch.arange(kernel_size, dtype=torch.float32)
        mean = (kernel_size - 1) / 2
        g1 = torch.exp(-((coords - mean) ** 2) / (2 * sigma ** 2))
        kernel = g1[:, None] * g1[None, :]
        kernel = kernel / kernel.sum()
        self.register_buffer("weight", kernel.view(1, 1, kernel_size, kernel_size).repeat(channels, 1, 1, 1))
        self.groups = channels
        self.int_inv_scale = int(round(1 / scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.ka, self.kb, self.ka, self.kb))
        x = F.conv2d(x, self.weight, groups=self.groups)
        return x[:, :, :: self.int_inv_scale, :: self.int_inv_scale]


class AreaDownsample(nn.Module):
    """Average-pool downsampling by an integer factor (a cheap anti-aliased resize)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.factor = int(round(1 / scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.factor) if self.factor > 1 else x


def downsampler(channels: int, scale: float, antialias: bool) -> nn.Module | None:
    """The FOMM blur-and-subsample, a cheap area pool, or None when scale == 1."""
    if math.isclose(scale, 1.0):
        return None
    return AntiAliasInterpolation2d(channels, scale) if antialias else AreaDownsample(scale)

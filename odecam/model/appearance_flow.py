"""F_A: self-appearance flow (paper Eq. 5).

F_App = T_App o F~_SD, with F~_SD = T_{S->D} o F_S the motion-warped view features. An encoder-decoder
looks at F~_SD and the occlusion map and predicts T_App (a displacement, (V, 2, h, w)) that copies
features of the warped view itself into the regions the motion left empty. The output layer is
zero-initialised, so an untrained F_A is a no-op (F_App = F~_SD).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from odecam.config import AppearanceConfig
from odecam.model.blocks import Hourglass
from odecam.model import fastpath
from odecam.model.geometry import warp


class AppearanceFlow(nn.Module):
    """F_A: (F~_SD (V, C, h, w), occlusion (V, 1, h, w), identity grid (h, w, 2)) -> F_App (V, C, h, w)."""

    def __init__(self, cfg: AppearanceConfig, feature_channels: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.hourglass = Hourglass(cfg.hidden, feature_channels + 1, cfg.num_blocks, cfg.hidden * 4, cfg.depthwise)
        self.flow = nn.Conv2d(self.hourglass.out_filters, 2, 3, padding=1)
        nn.init.zeros_(self.flow.weight)
        nn.init.zeros_(self.flow.bias)

    def forward(self, warped: torch.Tensor, occlusion: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        if fastpath.enabled():
            t_app = self._flow_fast(warped, occlusion)
        else:
            t_app = self.flow(self.hourglass(torch.cat([warped, occlusion], dim=1)))  # (V, 2, h, w)
        return warp(warped, grid[None] + t_app.permute(0, 2, 3, 1))

    def _flow_fast(self, warped: torch.Tensor, occlusion: torch.Tensor) -> torch.Tensor:
        """T_App as :meth:`forward` computes it, without concatenating [F~_SD, occlusion]: the hourglass's first
        convolution and the flow head take the two parts through split weights (export fast path)."""
        hg, parts = self.hourglass, [warped, occlusion]
        first = hg.encoder.down_blocks[0]
        skips = [first.pool(F.relu(first.norm(fastpath.conv_parts(parts, first.conv))))]
        for block in hg.encoder.down_blocks[1:]:
            skips.append(block(skips[-1]))
        out = skips.pop()
        blocks = list(hg.decoder.up_blocks)
        for block in blocks[:-1]:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return fastpath.conv_taps([blocks[-1](out)] + parts, self.flow)

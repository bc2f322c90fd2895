"""F_K: unsupervised keypoint extractor (paper Eq. 1; FOMM ``KPDetector``).

image (B, 3, H, W) in [0, 1] -> keypoints ``value`` (B, K, 2) in [-1, 1], optional ``jacobian``
(B, K, 2, 2). An hourglass on the downscaled image predicts K heatmaps; a softmax with temperature
turns them into distributions whose expectation is the keypoint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from odecam.config import KeypointConfig
from odecam.model import fastpath
from odecam.model.blocks import Hourglass, downsampler
from odecam.model.geometry import identity_grid, soft_argmax


class KeypointDetector(nn.Module):
    """F_K. Parameter names match FOMM's ``kp_detector`` for the vox256 preset."""

    def __init__(self, cfg: KeypointConfig, num_channels: int = 3) -> None:
        super().__init__()
        self.cfg = cfg
        self.predictor = Hourglass(cfg.block_expansion, num_channels, cfg.num_blocks, cfg.max_features,
                                   cfg.depthwise)
        self.kp = nn.Conv2d(self.predictor.out_filters, cfg.num_kp, cfg.head_kernel, padding=cfg.head_padding)
        if cfg.estimate_jacobian:
            self.jacobian = nn.Conv2d(self.predictor.out_filters, 4 * cfg.num_kp, cfg.head_kernel,
                                      padding=cfg.head_padding)
            nn.init.zeros_(self.jacobian.weight)
            with torch.no_grad():
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(cfg.num_kp))
        else:
            self.jacobian = None
        self.down = downsampler(num_channels, cfg.scale_factor, cfg.antialias)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """image (B, 3, H, W) -> {'value': (B, K, 2), 'jacobian': (B, K, 2, 2) if estimated}."""
        return self.from_downscaled(self.down(image) if self.down is not None else image)

    @property
    def area_factor(self) -> int:
        """n when F_K first average-pools its input by n x n (``antialias`` off): a caller may pool the frame
        itself and call :meth:`from_downscaled`; 1 otherwise (no downscaling, or FOMM's blur)."""
        return getattr(self.down, "factor", 1) if self.down is not None and not self.cfg.antialias else 1

    def from_downscaled(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`forward` after its downscaling: x (B, 3, H s, W s), s = ``cfg.scale_factor``.

        On the export fast path each head convolution runs as one convolution per half of the hourglass's
        output (:func:`odecam.model.fastpath.conv_parts`): onnxruntime's blocked (NCHWc) convolutions need
        channel counts that are multiples of their block, so the 16 + 3 channel head ran unblocked, at a tenth
        of their speed (0.42 ms of F_K's 1.4 ms at one thread; split, F_K takes 1.0 ms)."""
        parts = self.predictor.parts(x)  # the last up-block's output and x: cat(parts) is the hourglass's output
        feature_map = None if fastpath.enabled() else torch.cat(parts, dim=1)

        def head(conv: nn.Conv2d) -> torch.Tensor:
            return fastpath.conv_parts(parts, conv) if feature_map is None else conv(feature_map)

        logits = head(self.kp).float()  # softmax at temperature 0.1 and soft-argmax in fp32 (fp16 models)
        b, k, h, w = logits.shape
        heatmap = F.softmax(logits.view(b, k, h * w) / self.cfg.temperature, dim=2).view(b, k, h, w)
        out = {"value": soft_argmax(heatmap, identity_grid(h, w, logits))}
        if self.jacobian is not None:
            jac_map = head(self.jacobian).float().view(b, k, 4, h, w)
            jac = (jac_map * heatmap.unsqueeze(2)).sum(dim=(3, 4))
            out["jacobian"] = jac.view(b, k, 2, 2)
        return out

"""F_G: occlusion-aware generator with self-appearance assistance and multi-view fusion (paper 3.2-3.3).

Split in two so that avatar-only work runs once:

* :meth:`Generator.encode` (once per view): image (V, 3, H, W) -> features F (V, C, H/2^d, W/2^d).
* :meth:`Generator.decode_views` (per frame): for every view j (j = 0 the source, 1..N the references)
  warp its features with T_{S->D}^(j): F~^(j) = T o F^(j); inpaint with F_A: F_App^(j) (Eq. 5); fuse the
  views with per-pixel confidences normalised over views, C~^(j) = softmax_j(logit^(j)) (Eq. 6):
  F_bar_App = sum_j C~^(j) F_App^(j),  F_bar_D = sum_j C~^(j) occ^(j) F~^(j);
  concatenate, mix with a 1x1 convolution (initialised to pass F_bar_D through), decode.

Where C^(j) comes from (the paper leaves it open): a zero-initialised head on F_C's features for view j,
which sees the driving heatmaps and view j deformed towards the driving pose, so it can judge how well
view j covers each driving pixel. Softmax over views makes the weights positive and sum to one.

With N = 0, F_E and F_A untrained (identity) and the 1x1 mix at its initial value, this computes exactly
what First Order Motion Model's ``OcclusionAwareGenerator`` computes. Parameter names match its
``generator`` for the vox256 preset.

``image_skip`` (an odecam addition, on in ``lite``, off in ``vox256``): the view images themselves are
warped at full resolution with the same fields, fused with the same confidences, and blended into the
decoded image through a predicted per-pixel mask M: out = M * warped + (1 - M) * decoded. The decoder then
only has to paint what the motion cannot bring, which keeps a small network sharp.

``appearance.fused`` (an odecam addition for speed with references, off in the presets): F_A runs once, on the
views' fusion F~ = sum_j C~^(j) F~^(j) with occlusion sum_j C~^(j) O^(j), and F_bar_App = F_App of that; with
N = 0 the same computation as per-view F_A.

``pixel_shuffle`` r = 2 or 4 (an odecam addition for speed, 1 = off): the last log2(r) up-blocks are dropped;
the output convolutions read the remaining decoder output at 1/r resolution and give r * r values per output
channel, put at full resolution by ``F.pixel_shuffle`` (B, C r^2, H/r, W/r) -> (B, C, H, W).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from odecam.config import ModelConfig
from odecam.model.appearance_flow import AppearanceFlow
from odecam.model.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d
from odecam.model.coarse_motion import CoarseMotion
from odecam.model import fastpath
from odecam.model.fastpath import fused_convs, sum_views
from odecam.model.geometry import identity_grid, warp
from odecam.model.motion_evolution import MotionEvolution


class Generator(nn.Module):
    """F_G, holding F_C (``dense_motion_network``), F_E (``evolution``) and F_A (``appearance``)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        g = cfg.generator
        self.cfg = cfg
        self.dense_motion_network = CoarseMotion(cfg.motion, cfg.keypoints.num_kp, cfg.num_channels,
                                                 g.estimate_occlusion)
        self.evolution = MotionEvolution(cfg.evolution, self.dense_motion_network.feature_channels)
        self.first = SameBlock2d(cfg.num_channels, g.block_expansion, g.first_kernel, g.first_kernel // 2)
        self.down_blocks = nn.ModuleList([
            DownBlock2d(min(g.max_features, g.block_expansion * 2 ** i),
                        min(g.max_features, g.block_expansion * 2 ** (i + 1)), depthwise=g.depthwise)
            for i in range(g.num_down_blocks)
        ])
        self.shuffle = g.pixel_shuffle  # the output convolutions' up-scaling (pixel_shuffle)
        num_up = g.num_down_blocks - {1: 0, 2: 1, 4: 2}[g.pixel_shuffle]
        self.up_blocks = nn.ModuleList([
            UpBlock2d(min(g.max_features, g.block_expansion * 2 ** (g.num_down_blocks - i)),
                      min(g.max_features, g.block_expansion * 2 ** (g.num_down_blocks - i - 1)), depthwise=g.depthwise)
            for i in range(num_up)
        ])
        head = min(g.max_features, g.block_expansion * 2 ** (g.num_down_blocks - num_up))  # the head's input channels
        phases = self.shuffle ** 2
        ch = min(g.max_features, g.block_expansion * 2 ** g.num_down_blocks)
        self.feature_channels = ch
        self.bottleneck = nn.Sequential()
        for i in range(g.num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(ch, depthwise=g.depthwise))
        self.final = nn.Conv2d(head, cfg.num_channels * phases, g.final_kernel, padding=g.final_kernel // 2)
        self.skip_mask = (nn.Conv2d(head, phases, g.final_kernel, padding=g.final_kernel // 2)
                          if g.image_skip else None)
        if self.skip_mask is not None:  # start by trusting the warped views (mask ~0.88): a sharp first output
            nn.init.constant_(self.skip_mask.bias, 2.0)
        #: P, the image skip's margin in pixels (``generator.skip_margin``): state['image'] is (V, 3, S + 2P, S + 2P)
        self.skip_margin = skip_margin_pixels(g.skip_margin, cfg.image_size) if g.image_skip else 0
        taps = mask_blur_kernel(g.mask_blur)  # generator.mask_blur's taps, made once (not saved: derived from cfg)
        self.register_buffer("mask_taps", None if taps is None else torch.from_numpy(taps), persistent=False)
        self.appearance = AppearanceFlow(cfg.appearance, ch)
        self.appearance_mix = nn.Conv2d(2 * ch, ch, 1)
        with torch.no_grad():  # pass the motion-warped features through: an identity on [F_D | F_App]
            self.appearance_mix.weight.zero_()
            self.appearance_mix.weight[:, :ch, 0, 0].copy_(torch.eye(ch))
            self.appearance_mix.bias.zero_()

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Features F of the views: (V, 3, H, W) -> (V, C, H/2^d, W/2^d). Avatar-only: cache it."""
        out = self.first(image)
        for block in self.down_blocks:
            out = block(out)
        return out

    def decode(self, features: torch.Tensor, warped_image: torch.Tensor | None = None) -> torch.Tensor:
        """Fused features (B, C, h, w) [+ fused warped image (B, 3, H, W)] -> image (B, 3, H, W) in [0, 1]."""
        if self.skip_mask is None or warped_image is None:
            out = self._up(features)
            return torch.sigmoid(self._full_resolution(self.final(out)))
        image, mask = self.decode_parts(features)
        return blend_skip(image, mask, warped_image)

    def _up(self, features: torch.Tensor) -> torch.Tensor:
        out = self.bottleneck(features)
        for block in self.up_blocks:
            out = block(out)
        return out

    def decode_parts(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """With the image skip: fused features -> (decoded image (B, 3, H, W), skip mask M (B, 1, H, W)), both
        in [0, 1] and not yet blended (:func:`blend_skip`). The two output convolutions run as one on the
        export fast path (:func:`odecam.model.fastpath.fused_convs`).

        ``pixel_shuffle`` r = 2 or 4: the output convolutions read the last up-block's output at 1/r resolution
        and give each of their channels for the r * r phases of an r x r pixel block: ``pixel_shuffle`` of the
        RGB and mask channels together (r = 2: 3 + 1 outputs x 4 phases, one 16-channel convolution, one vector
        block on a CPU)."""
        if self.shuffle > 1:
            return self.shuffle_head(self._up(features))
        if fastpath.enabled() and len(self.up_blocks) > 0:  # last up-block + output convs at half resolution (export)
            out = self.bottleneck(features)
            for block in self.up_blocks[:-1]:
                out = block(out)
            parts = fastpath.upsampled_head(out, self.up_blocks[-1], [self.final, self.skip_mask], torch.sigmoid)
            if parts is not None:
                return parts[0], self.blur_mask(parts[1])
        rgb, mask = fused_convs(self._up(features), [self.final, self.skip_mask], act=torch.sigmoid)
        return rgb, self.blur_mask(mask)

    def blur_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """M (B, 1, H, W) -> M blurred by ``generator.mask_blur`` (:func:`mask_blur_kernel`, separable, reflected at
        the border as OpenCV's default ``BORDER_REFLECT_101``); M itself when 0."""
        if self.mask_taps is None:
            return mask
        k = self.mask_taps.to(mask.dtype)  # no copy when the dtypes agree
        pad = len(k) // 2
        out = F.conv2d(F.pad(mask, (pad, pad, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
        return F.conv2d(F.pad(out, (0, 0, pad, pad), mode="reflect"), k.view(1, 1, -1, 1))

    def shuffle_head(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``pixel_shuffle`` r > 1 with the image skip: the last up-block's output (B, C, H/r, W/r) -> (decoded image
        (B, 3, H, W), M (B, 1, H, W)): the RGB and mask convolutions as one, then one ``pixel_shuffle``."""
        weight = torch.cat([self.final.weight, self.skip_mask.weight], dim=0)  # (4 r^2, C, k, k)
        bias = torch.cat([self.final.bias, self.skip_mask.bias], dim=0)
        y = torch.sigmoid(F.conv2d(x, weight, bias, padding=self.final.padding))
        rgb, mask = F.pixel_shuffle(y, self.shuffle).split([self.cfg.num_channels, 1], dim=1)
        return rgb, self.blur_mask(mask)

    def decode_phases(self, features: torch.Tensor) -> torch.Tensor:
        """``pixel_shuffle`` r > 1 with the image skip: fused features -> the output convolutions' r * r phases,
        channels-last and not yet shuffled, (B, H/r, W/r, r * r * (C + 1)) in [0, 1]: channel (i r + j) (C + 1) + c
        holds pixel (r y + i, r x + j) of channel c (the C image channels, then M). A caller that blends
        channels-last puts this at full resolution with one copy (``reshape(B, H/r, W/r, r, r, C + 1)``, axes 2
        and 3 swapped: :meth:`odecam.engine.image_skip.ImageSkipTail.from_phases`), where :meth:`decode_parts`
        costs a ``pixel_shuffle`` (DepthToSpace, 0.7 ms in onnxruntime at 256 px) and two transposes. M is not yet
        blurred (``generator.mask_blur``): the caller blurs it at full resolution (:meth:`blur_mask`'s taps)."""
        if self.shuffle == 1 or self.skip_mask is None:
            raise ValueError("decode_phases needs a pixel-shuffle head with the image skip (generator.pixel_shuffle > 1)")
        r, c = self.shuffle, self.cfg.num_channels + 1
        weight = torch.cat([self.final.weight, self.skip_mask.weight], dim=0)  # (C r^2, ...): pixel_shuffle's order
        bias = torch.cat([self.final.bias, self.skip_mask.bias], dim=0)
        order = torch.arange(c * r * r, device=weight.device).view(c, r * r).t().reshape(-1)  # c r^2 + p -> p c + c
        y = torch.sigmoid(F.conv2d(self._up(features), weight[order], bias[order], padding=self.final.padding))
        return y.permute(0, 2, 3, 1)

    def _full_resolution(self, y: torch.Tensor) -> torch.Tensor:
        """The output convolutions' channels -> full resolution: ``pixel_shuffle`` with the head (B, C * 4, h, w)
        -> (B, C, 2h, 2w); the identity without it."""
        return F.pixel_shuffle(y, self.shuffle) if self.shuffle > 1 else y

    def skip_images(self, views: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        """The image skip's view images: views (V, 3, S, S) -> (V, 3, S + 2P, S + 2P) with P = :attr:`skip_margin`:
        the views reflected at their edges (``BORDER_REFLECT_101``, as ``grid_sample``'s reflection with
        ``align_corners=True``), or, given ``like`` (an avatar state's skip images of that shape), ``like``'s
        margin around these views (a repainted copy of an avatar keeps its photo's surroundings). P = 0: views."""
        p = self.skip_margin
        if p == 0:
            return views
        if like is not None:
            out = like.clone()
            out[:, :, p:-p, p:-p] = views
            return out
        return F.pad(views, (p, p, p, p), mode="reflect")

    def warp_images(self, images: torch.Tensor, displacement: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The image skip: view images (B*V, 3, S + 2P, S + 2P) (:meth:`skip_images`) warped by their fields
        (B*V, 2, h_m, w_m) and fused with the view weights (B, V, 1, h, w) -> (B, 3, S, S)."""
        return warp_images(images, displacement, weights, self.cfg.image_size)

    def warp_views(self, features: torch.Tensor, displacement: torch.Tensor,
                   occlusion: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Warp view features with their motion fields at feature resolution.

        features (V, C, h, w); displacement (V, 2, h_m, w_m) -> (F~ (V, C, h, w), identity grid (h, w, 2),
        occlusion resized to (V, 1, h, w) or None).
        """
        h, w = features.shape[2:]
        sampling, ident = sampling_grid(displacement, h, w)  # the field's dtype (fp32, also in fp16 models)
        return warp(features, sampling), ident, _resized(occlusion, h, w)

    def fuse(self, warped: torch.Tensor, ident: torch.Tensor, occlusion: torch.Tensor | None,
                        confidence: torch.Tensor, num_views: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """F_A and the fusion over views (Eq. 6).

        warped (B*V, C, h, w) grouped by batch item (views of one item are contiguous); confidence logits
        (B*V, 1, h_m, w_m). Returns fused features (B, C, h, w) and {'weights': (B, V, 1, h, w)}.
        """
        bv, c, h, w = warped.shape
        b = bv // num_views
        dtype = warped.dtype  # the features' (fp16 models: F_C's fp32 occlusion and confidences are cast to it)
        occlusion = occlusion.to(dtype) if occlusion is not None else None
        weights = view_weights(confidence, b, num_views, h, w)
        wts = weights.to(dtype)
        motion_feats = warped if occlusion is None else warped * occlusion
        fused_d = sum_views(motion_feats.view(b, num_views, c, h, w) * wts)
        if self.cfg.appearance.enabled:
            occ = occlusion if occlusion is not None else torch.ones_like(warped[:, :1])
            if self.cfg.appearance.fused and num_views > 1:  # F_A once, on the views' fusion (appearance.fused)
                app_in = sum_views(warped.view(b, num_views, c, h, w) * wts)  # (B, C, h, w)
                occ = sum_views(occ.view(b, num_views, 1, h, w) * wts)  # (B, 1, h, w)
                app_views, app_wts = 1, None  # already fused: no view weights left to apply
            else:
                app_in, app_views, app_wts = warped, num_views, wts
            app = self.appearance(app_in, occ, ident)
            app = app * (1 - occ)  # F_A fills what the motion leaves occluded
            fused_app = app if app_wts is None else sum_views(app.view(b, app_views, c, h, w) * app_wts)
            fused = self.appearance_mix(torch.cat([fused_d, fused_app], dim=1))
        else:
            fused = fused_d
        return fused, {"weights": weights}

    def warp_and_fuse(self, features: torch.Tensor, displacement: torch.Tensor, occlusion: torch.Tensor | None,
                      confidence: torch.Tensor, num_views: int,
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
        """:meth:`warp_views` and :meth:`fuse` as one step, for the export fast path (the same function to float
        rounding): features (B*V, C, h, w), fields (B*V, 2, h_m, w_m) -> (fused features (B, C, h, w),
        {'weights': (B, V, 1, h, w)}, the occlusion at (h, w)). Each view is warped by its own row gathers
        (:func:`odecam.model.fastpath.warp_views_rows`) with its fusion weight C~_j folded into the corner
        weights, so the views are never gathered into one (B, V, h, w, C) tensor to be split and weighted again."""
        bv, c, h, w = features.shape
        b = bv // num_views
        sampling, ident = sampling_grid(displacement, h, w)
        occlusion = _resized(occlusion, h, w)
        occlusion = occlusion.to(features.dtype) if occlusion is not None else None
        weights = view_weights(confidence, b, num_views, h, w)
        wts = weights.to(features.dtype)
        fold = num_views > 1 and (not self.cfg.appearance.enabled or self.cfg.appearance.fused)
        views = fastpath.warp_views_rows(features, sampling, wts.view(bv, h, w) if fold else None, num_views)
        return self._fuse_channels_last(views, fold, ident, occlusion, wts), {"weights": weights}, occlusion

    def _fuse_channels_last(self, views: list[torch.Tensor], folded: bool, ident: torch.Tensor,
                            occlusion: torch.Tensor | None, wts: torch.Tensor) -> torch.Tensor:
        """:meth:`fuse` on the export fast path, the same sums to float rounding: the warped views channels-last,
        V x (B, h, w, C), each times its view weight C~_j when ``folded`` (V > 1 with F_A on the views' fusion,
        or no F_A), the occlusion (B*V, 1, h, w), the view weights (B, V, 1, h, w) -> fused features (B, C, h, w).

        The products and view sums run channels-last, the layout the gather warp leaves them in; F_A's warp reads
        its table channels-last, and onnxruntime turns the one transpose left before each convolution into its
        channels-last reorder: no full-size transpose of the features remains. The per-pixel fusion factors
        (1 - occlusion) C~_j go into F_A's sampling weights (:func:`odecam.model.fastpath.warp_views_sum`)."""
        v = len(views)
        b, h, w, c = views[0].shape
        occ = [occlusion.view(b, v, h, w, 1)[:, j] for j in range(v)] if occlusion is not None else None
        w_cl = [wts[:, j].view(b, h, w, 1) for j in range(v)]
        if folded or v == 1:  # views[j] = C~_j F~_j (C~ = 1 when V = 1)
            fused_d = _sum(views) if occ is None else _sum([o * x for o, x in zip(occ, views)])  # (B, h, w, C)
        else:  # F_A per view: the views unweighted
            fused_d = _sum([x * (wj if occ is None else o * wj) for x, o, wj in
                            zip(views, occ or [None] * v, w_cl)])
        if not self.cfg.appearance.enabled:
            return fused_d.permute(0, 3, 1, 2)
        if occ is None:
            occ = [torch.ones(b, h, w, 1, dtype=views[0].dtype, device=views[0].device)] * v
        if folded or v == 1:  # F_A once, on the views' fusion (appearance.fused), or on the one view
            app_in = _sum(views)  # (B, h, w, C)
            occ_f = occ[0] if v == 1 else _sum([o * wj for o, wj in zip(occ, w_cl)])  # (B, h, w, 1)
            app_views, factor = 1, 1 - occ_f
        else:
            app_in = torch.stack(views, dim=1).reshape(b * v, h, w, c)
            occ_f = torch.stack(occ, dim=1).reshape(b * v, h, w, 1)
            app_views, factor = v, (1 - occ_f) * torch.stack(w_cl, dim=1).reshape(b * v, h, w, 1)
        app_in, occ_f = app_in.permute(0, 3, 1, 2), occ_f.permute(0, 3, 1, 2)  # NCHW views for F_A's convolutions
        t_app = self.appearance._flow_fast(app_in, occ_f)  # T_App (B*V', 2, h, w)
        fused_app = fastpath.warp_views_sum(app_in, ident[None] + t_app.permute(0, 2, 3, 1),
                                            factor.reshape(-1, h, w), app_views)  # (B, C, h, w)
        # the 1x1 mix without the concatenation: one convolution per half, each reading its channels-last input
        return fastpath.conv_parts([fused_d.permute(0, 3, 1, 2), fused_app], self.appearance_mix)


def _resized(x: torch.Tensor | None, h: int, w: int) -> torch.Tensor | None:
    """A map (B, C, h', w') bilinearly resized to (h, w) (``align_corners=False``); None stays None."""
    if x is None or x.shape[2:] == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


def _sum(xs: list[torch.Tensor]) -> torch.Tensor:
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out


def view_weights(confidence: torch.Tensor, b: int, num_views: int, h: int, w: int) -> torch.Tensor:
    """The fusion weights C~ of Eq. 6: confidence logits (B*V, 1, h_m, w_m) -> softmax over the views at (h, w),
    (B, V, 1, h, w), in the logits' dtype (ones for one view)."""
    if num_views == 1:
        return torch.ones(b, 1, 1, h, w, dtype=confidence.dtype, device=confidence.device)
    return fastpath.softmax(_resized(confidence, h, w).view(b, num_views, 1, h, w), dim=1)


def mask_blur_kernel(sigma: float) -> np.ndarray | None:
    """The 1-D Gaussian taps (2 ceil(3 sigma) + 1,) float32 of ``generator.mask_blur`` = sigma (summing to 1, as
    ``cv2.getGaussianKernel`` makes them), or None for 0."""
    if not sigma > 0:
        return None
    half = int(math.ceil(3.0 * sigma))
    x = np.arange(-half, half + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).astype(np.float32)


def blend_skip(decoded: torch.Tensor, mask: torch.Tensor, warped_image: torch.Tensor) -> torch.Tensor:
    """The image skip's blend: out = M * warped + (1 - M) * decoded, all (B, ., H, W) (M broadcast over the
    channels), as one ``lerp`` in the inputs' promoted dtype (an fp16 model's fused warped image is fp32 for V > 1).
    Under torch.export (the ONNX exporter) as decoded + M * (warped - decoded): three nodes, where ``lerp``
    decomposes into seven (both of its branches and a Where)."""
    if torch.compiler.is_compiling():
        return decoded + mask * (warped_image - decoded)
    dtype = torch.promote_types(torch.promote_types(decoded.dtype, mask.dtype), warped_image.dtype)
    return torch.lerp(decoded.to(dtype), warped_image.to(dtype), mask.to(dtype))


def sampling_grid(displacement: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampling grid of motion fields at another resolution: displacements (B, 2, h_m, w_m) ->
    (identity + the displacement upsampled to (h, w) (bilinear, ``align_corners=True``) (B, h, w, 2),
    the identity grid (h, w, 2)), in the field's dtype.

    The same as ``resize_grid(identity_m + displacement, h, w)`` to float rounding (that is bilinear with
    ``align_corners=True`` too: linear, and it maps the (h_m, w_m) identity onto the (h, w) one), cheaper: the
    contiguous (B, 2, h_m, w_m) field is upsampled rather than the strided (B, h_m, w_m, 2) grid (0.8 of 1.2 ms
    per view at 256 px), and the identity is :func:`identity_grid`'s cached constant."""
    ident = identity_grid(h, w, displacement)
    if displacement.shape[2:] != (h, w):
        displacement = F.interpolate(displacement, size=(h, w), mode="bilinear", align_corners=True)
    return ident + displacement.permute(0, 2, 3, 1), ident  # identity first: a contiguous grid


def edge_window(share: float, h: int, w: int) -> torch.Tensor:
    """``generator.edge_anchor``'s window (1, 1, h, w) on a field of (h, w) nodes: 0 on the border nodes, rising
    as a smoothstep to 1 at ``share`` of the side from the edge (nodes at the same relative distance in each axis;
    the smaller of the two ramps). All ones for ``share`` 0."""
    def ramp(n: int) -> torch.Tensor:
        if share <= 0:
            return torch.ones(n)
        d = torch.minimum(torch.arange(n), torch.arange(n).flip(0)).float() / max(share * (n - 1), 1e-6)
        t = d.clamp(0.0, 1.0)
        return t * t * (3.0 - 2.0 * t)

    return torch.minimum(ramp(h)[:, None], ramp(w)[None, :])[None, None]


def skip_margin_pixels(share: float, size: int) -> int:
    """P: ``generator.skip_margin`` (a share of the side) in pixels of an S = ``size`` square."""
    return int(round(float(share) * size))


def skip_margin_of(images: torch.Tensor, size: int | None = None) -> int:
    """P of the image skip's view images (..., S + 2P, S + 2P) for an S = ``size`` output (default: their side,
    P = 0); a ValueError names the shape when it is not the square plus an even margin."""
    hi, wi = images.shape[-2:]
    s = hi if size is None else int(size)
    if hi != wi or hi < s or (hi - s) % 2:
        raise ValueError(f"the image skip's view images must be (V, 3, S + 2P, S + 2P) for S = {s}, "
                         f"got {tuple(images.shape)}")
    return (hi - s) // 2


def warp_images(images: torch.Tensor, displacement: torch.Tensor, weights: torch.Tensor,
                size: int | None = None) -> torch.Tensor:
    """The image skip's warp (:meth:`Generator.warp_images`; no parameters, so a backend can run it beside an
    exported graph): view images (B*V, 3, S + 2P, S + 2P), fields (B*V, 2, h_m, w_m), view weights
    (B, V, 1, h, w) -> fused warped image sum_j C~^(j) (T^(j) o image^(j)) (B, 3, S, S), the weights upsampled
    to (S, S). ``size``: S (default: the images' side, P = 0).

    The fields are in the square's coordinates ([-1, 1] = its border pixels' centres). With a margin P > 0 they
    are scaled by (S - 1) / (S + 2P - 1) into the larger image's (the margin is symmetric, so no shift) and the
    image is reflected beyond its edge; with P = 0 the border is zero, as the models were trained."""
    bv, c, hi, _ = images.shape
    margin = skip_margin_of(images, size)
    h = w = hi - 2 * margin
    b, v = weights.shape[:2]
    grid = sampling_grid(displacement, h, w)[0]
    if margin == 0:
        warped = warp(images, grid)
    else:
        grid = grid.mul_((h - 1) / (hi - 1))  # sampling_grid's own new tensor: scaled in place
        warped = F.grid_sample(images.to(grid.dtype), grid, mode="bilinear", padding_mode="reflection",
                               align_corners=True).to(images.dtype)
    warped = warped.view(b, v, c, h, w)
    if v == 1:
        return warped[:, 0]
    wts = F.interpolate(weights.view(b, v, weights.shape[3], weights.shape[4]), size=(h, w), mode="bilinear",
                        align_corners=False)
    return sum_views(warped * wts.unsqueeze(2))

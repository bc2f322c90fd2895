"""The image skip's tail beside an exported frame graph, with OpenCV's ``remap`` (CPU backends).

The onnxruntime backend runs the frame graph without its image-skip tail (``FrameGraph(skip_tail=True)``) and
finishes the frame here: each view image warped at full resolution by its field T_j, fused with the view
weights C~_j and blended through the mask M::

    out = M * sum_j C~_j (T_j o image_j) + (1 - M) * decoded

:func:`odecam.export.graphs.finish_tail` computes the same in torch (``grid_sample``). Here the view images
are kept channels-last (S + 2P, S + 2P, 3) and warped by ``cv2.remap`` (bilinear; beyond the skip's margin P a
zero border when P = 0, else reflected: ``BORDER_REFLECT_101``, as ``grid_sample``'s reflection): one read of a pixel
serves its three channels, where ``grid_sample`` walks three planes, and ``remap`` on float maps interpolates in
float (the same values to 1e-7). The field is upsampled to pixel coordinates by two small matrix products
(bilinear with ``align_corners=True`` is separable). Measured inside the per-frame path (after an
onnxruntime run, lite at 256 px, 1 torch thread): see ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F


#: the blend weights' scale in ``cv2.blendLinear`` (its denominator's 1e-5 becomes a 1e-11 relative error)
BLEND = np.float32(1e6)


def interpolation_matrix(n_out: int, n_in: int, align_corners: bool) -> torch.Tensor:
    """The linear map of 1-D ``F.interpolate(mode='linear')`` from n_in to n_out samples, (n_out, n_in)."""
    eye = torch.eye(n_in, dtype=torch.float32)[None]  # (1, n_in, n_in): the basis vectors as channels
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=align_corners)[0].t().contiguous()


class ImageSkipTail:
    """The tail for one avatar: view images (V, 3, S + 2P, S + 2P) in [0, 1] (the avatar state's 'image', with the
    skip's margin P; ``size`` = S, default the images' side) and the field's size (h_m, w_m).

    ``__call__(decoded (1, S, S, 3), mask (1, S, S, 1), displacement (V, 2, h_m, w_m), weights (1, V, 1, h, w))``,
    decoded and mask channels-last as ``FrameGraph(nhwc_tail=True)`` returns them -> the frame as a (1, 3, S, S)
    float32 view of a new channels-last array (``permute(0, 2, 3, 1)`` of it is contiguous: what ``to_image``
    and the sinks read). The working buffers are reused from call to call; the returned frame is the caller's.
    ``mask_blur``: ``generator.mask_blur``, applied by :meth:`from_phases` (the phase layout leaves M unblurred;
    ``__call__``'s M comes blurred from ``Generator.decode_parts``)."""

    def __init__(self, view_images: torch.Tensor, field_size: tuple[int, int], mask_blur: float = 0.0,
                 size: int | None = None) -> None:
        from odecam.model.generator import skip_margin_of

        v, c, hi, _ = view_images.shape
        if c != 3:
            raise ValueError(f"view images must be (V, 3, H, W), got {tuple(view_images.shape)}")
        #: P, the skip's margin (``generator.skip_margin``): a field reading past the square's edge reads the margin,
        #: and the image is reflected beyond it; without one the border is zero, as the models were trained
        self.margin = skip_margin_of(view_images, size)
        h = w = hi - 2 * self.margin
        self._border = cv2.BORDER_REFLECT_101 if self.margin else cv2.BORDER_CONSTANT
        self.views, self.size = v, (h, w)
        self.images = [np.ascontiguousarray(view_images[j].detach().float().cpu().permute(1, 2, 0).numpy())
                       for j in range(v)]  # (S + 2P, S + 2P, 3) each
        hm, wm = field_size
        # T in normalised units -> pixel coordinates: x_px = (x + 1) (W - 1) / 2 + P (align_corners=True). The
        # identity is linear in the pixel index, which bilinear interpolation reproduces exactly, so the maps are one
        # upsampling R_y (T * scale + N) R_x^T, N the field nodes' own pixel positions
        self.rows = interpolation_matrix(h, hm, True)  # (S, h_m)
        self.cols_t = interpolation_matrix(w, wm, True).t().contiguous()  # (w_m, S)
        self.scale = torch.tensor([(w - 1) / 2.0, (h - 1) / 2.0]).view(1, 2, 1, 1)
        self.nodes = torch.stack([
            (torch.arange(wm, dtype=torch.float32) * ((w - 1) / max(wm - 1, 1))).expand(hm, wm),
            (torch.arange(hm, dtype=torch.float32) * ((h - 1) / max(hm - 1, 1))).view(hm, 1).expand(hm, wm)]) + self.margin
        self._low = torch.empty(v, 2, hm, wm)
        self._half = torch.empty(v, 2, h, wm)
        self._maps = torch.empty(v, 2, h, w)  # map_x, map_y of each view: contiguous (S, S) planes
        self._warped = np.empty((v, h, w, 3), np.float32)
        self._fused = np.empty((h, w, 3), np.float32)
        self._low_weights = np.empty((0,), np.float32)  # C~ at its own resolution, times BLEND (sized on first use)
        self._weights = np.empty((v, h, w), np.float32)  # BLEND C~ upsampled
        self._total = np.empty((h, w), np.float32)  # BLEND sum_{i<j} C~_i
        self._take = np.empty((h, w), np.float32)  # BLEND M
        self._keep = np.empty((h, w), np.float32)  # BLEND (1 - M)
        self._rgbm = np.empty((0, 0, 4), np.float32)  # from_phases: the head at full resolution, and split
        self._decoded = np.empty((0, 0, 3), np.float32)
        self._mask = np.empty((0, 0), np.float32)
        from odecam.model.generator import mask_blur_kernel

        self._blur = mask_blur_kernel(mask_blur)  # generator.mask_blur's taps, or None

    def warp(self, displacement: torch.Tensor) -> np.ndarray:
        """Every view image warped by its field: (V, 2, h_m, w_m) -> (V, S, S, 3) channels-last (a reused buffer)."""
        torch.mul(displacement.float(), self.scale, out=self._low)
        self._low += self.nodes
        torch.matmul(self.rows, self._low, out=self._half)
        maps = torch.matmul(self._half, self.cols_t, out=self._maps).numpy()  # (V, 2, S, S) pixel coordinates
        map_x, map_y = maps[:, 0], maps[:, 1]
        for j in range(self.views):
            cv2.remap(self.images[j], map_x[j], map_y[j], cv2.INTER_LINEAR, dst=self._warped[j],
                      borderMode=self._border, borderValue=0)
        return self._warped

    def fuse(self, warped: np.ndarray, weights: torch.Tensor) -> np.ndarray:
        """sum_j C~_j warped_j: (V, S, S, 3) and weights (1, V, 1, h, w), upsampled to (S, S) (bilinear,
        ``align_corners=False``, as :func:`odecam.model.generator.warp_images`; ``cv2.resize`` gives the same
        values) -> (S, S, 3). C~ is a softmax over the views (sum 1), so the sum is a chain of two-way blends,
        one pass each: acc <- (a acc + C~_j warped_j) / (a + C~_j), a = sum_{i<j} C~_i."""
        if self.views == 1:
            return warped[0]
        v, hw, ww = weights.shape[1], weights.shape[3], weights.shape[4]
        if self._low_weights.shape != (v, hw, ww):
            self._low_weights = np.empty((v, hw, ww), np.float32)
        low = np.multiply(weights.detach().float().numpy().reshape(v, hw, ww), BLEND, out=self._low_weights)
        h, w = self.size
        planes = self._weights
        for j in range(v):
            cv2.resize(low[j], (w, h), dst=planes[j], interpolation=cv2.INTER_LINEAR)
        cv2.blendLinear(warped[0], warped[1], planes[0], planes[1], dst=self._fused)
        if v > 2:
            cv2.add(planes[0], planes[1], dst=self._total)
            for j in range(2, v):
                cv2.blendLinear(self._fused, warped[j], self._total, planes[j], dst=self._fused)
                cv2.add(self._total, planes[j], dst=self._total)
        return self._fused

    def from_phases(self, phases: np.ndarray, displacement: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """:meth:`__call__` on a ``FrameGraph(phase_tail=True)`` output: F_G's head unshuffled, (1, S/r, S/r,
        r * r * 4) channels-last in phase order (:meth:`odecam.model.generator.Generator.decode_phases`). One
        copy puts it at full resolution, (S, S, 4) = the pixel shuffle and the transpose to channels-last at once
        (axes 2 and 3 of (S/r, S/r, r, r, 4) swapped), and ``cv2.mixChannels`` splits the image from M."""
        h, w = self.size
        _, hr, wr, c = phases.shape
        r = h // hr
        if (hr * r, wr * r, c) != (h, w, r * r * 4):
            raise ValueError(f"phases must be (1, {h}/r, {w}/r, 4 r^2), got {tuple(phases.shape)}")
        if self._rgbm.shape != (h, w, 4):
            self._rgbm = np.empty((h, w, 4), np.float32)
            self._decoded = np.empty((h, w, 3), np.float32)
            self._mask = np.empty((h, w), np.float32)
        np.copyto(self._rgbm.reshape(hr, r, wr, r, 4), phases.reshape(hr, wr, r, r, 4).transpose(0, 2, 1, 3, 4))
        cv2.mixChannels([self._rgbm], [self._decoded, self._mask], [0, 0, 1, 1, 2, 2, 3, 3])
        if self._blur is not None:  # Generator.blur_mask's: separable, reflected at the border
            cv2.sepFilter2D(self._mask, -1, self._blur, self._blur, dst=self._mask, borderType=cv2.BORDER_REFLECT_101)
        return self._blend(self.fuse(self.warp(displacement), weights), self._decoded, self._mask)

    def __call__(self, decoded: torch.Tensor, mask: torch.Tensor, displacement: torch.Tensor,
                 weights: torch.Tensor) -> torch.Tensor:
        d = decoded.detach().float().numpy()[0]  # (S, S, 3)
        m = mask.detach().float().numpy()[0, :, :, 0]  # (S, S)
        return self._blend(self.fuse(self.warp(displacement), weights), d, m)

    def _blend(self, fused: np.ndarray, d: np.ndarray, m: np.ndarray) -> torch.Tensor:
        """M fused + (1 - M) decoded: fused and d (S, S, 3), m (S, S) -> the new frame (1, 3, S, S)."""
        # M fused + (1 - M) decoded (blend_skip's), channels-last, in one pass: blendLinear computes
        # (w1 a + w2 b) / (w1 + w2 + 1e-5), so the weights are scaled by BLEND to make the 1e-5 negligible
        np.multiply(m, BLEND, out=self._take)
        np.subtract(BLEND, self._take, out=self._keep)
        out = np.empty((1,) + d.shape, np.float32)
        cv2.blendLinear(fused, d, self._take, self._keep, dst=out[0])
        return torch.from_numpy(out).permute(0, 3, 1, 2)

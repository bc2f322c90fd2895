"""The image skip's tail beside an exported frame graph, with OpenCV's ``remap`` (CPU backends).

The onnxruntime backend runs the frame graph without its image-skip tail (``FrameGraph(skip_tail=True)``) and
finishes the frame here: each view image warped at full resolution by its field T_j, fused with the view
weights C~_j and blended through the mask M::

    out = M * sum_j C~_j (T_j o image_j) + (1 - M) * decoded

:func:`odecam.export.graphs.finish_tail` computes the same in torch (``grid_sample``). Here the view images
are kept channels-last (S, S, 3) and warped by ``cv2.remap`` (bilinear, zero border): one read of a pixel
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


def interpolation_matrix(n_out: int, n_in: int, align_corners: bool) -> torch.Tensor:
    """The linear map of 1-D ``F.interpolate(mode='linear')`` from n_in to n_out samples, (n_out, n_in)."""
    eye = torch.eye(n_in, dtype=torch.float32)[None]  # (1, n_in, n_in): the basis vectors as channels
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=align_corners)[0].t().contiguous()


class ImageSkipTail:
    """The tail for one avatar: view images (V, 3, S, S) in [0, 1] and the field's size (h_m, w_m).

    ``__call__(decoded (1, S, S, 3), mask (1, S, S, 1), displacement (V, 2, h_m, w_m), weights (1, V, 1, h, w))``,
    decoded and mask channels-last as ``FrameGraph(nhwc_tail=True)`` returns them -> the frame as a (1, 3, S, S)
    float32 view of a new channels-last array (``permute(0, 2, 3, 1)`` of it is contiguous: what ``to_image``
    and the sinks read). The working buffers are reused from call to call; the returned frame is the caller's."""

    def __init__(self, view_images: torch.Tensor, field_size: tuple[int, int]) -> None:
        v, c, h, w = view_images.shape
        if c != 3:
            raise ValueError(f"view images must be (V, 3, H, W), got {tuple(view_images.shape)}")
        self.views, self.size = v, (h, w)
        self.images = [np.ascontiguousarray(view_images[j].detach().float().cpu().permute(1, 2, 0).numpy())
                       for j in range(v)]  # (S, S, 3) each
        hm, wm = field_size
        # T in normalised units -> pixel offsets: x_px = (x + 1) (W - 1) / 2 (align_corners=True), upsampled by
        # R_y T R_x^T with the 1-D bilinear maps; the identity in pixels is added per axis
        self.rows = interpolation_matrix(h, hm, True)  # (S, h_m)
        self.cols_t = interpolation_matrix(w, wm, True).t().contiguous()  # (w_m, S)
        self.scale = torch.tensor([(w - 1) / 2.0, (h - 1) / 2.0]).view(1, 2, 1, 1)
        self.px_x = torch.arange(w, dtype=torch.float32).expand(h, w)
        self.px_y = torch.arange(h, dtype=torch.float32).view(h, 1).expand(h, w)
        self._map_x = torch.empty(v, h, w)
        self._map_y = torch.empty(v, h, w)
        self._warped = np.empty((v, h, w, 3), np.float32)
        self._fused = np.empty((h, w, 3), np.float32)
        self._term = np.empty((h, w, 3), np.float32)
        self._per_pixel = np.empty((h, w, 3), np.float32)  # a (S, S) factor repeated over the 3 channels

    def warp(self, displacement: torch.Tensor) -> np.ndarray:
        """Every view image warped by its field: (V, 2, h_m, w_m) -> (V, S, S, 3) channels-last (a reused buffer)."""
        field = self.rows @ (displacement.float() * self.scale) @ self.cols_t  # (V, 2, S, S) in pixels
        torch.add(self.px_x, field[:, 0], out=self._map_x)
        torch.add(self.px_y, field[:, 1], out=self._map_y)
        map_x, map_y = self._map_x.numpy(), self._map_y.numpy()
        for j in range(self.views):
            cv2.remap(self.images[j], map_x[j], map_y[j], cv2.INTER_LINEAR, dst=self._warped[j],
                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return self._warped

    def fuse(self, warped: np.ndarray, weights: torch.Tensor) -> np.ndarray:
        """sum_j C~_j warped_j: (V, S, S, 3) and weights (1, V, 1, h, w), upsampled to (S, S) (bilinear,
        ``align_corners=False``, as :func:`odecam.model.generator.warp_images`) -> (S, S, 3)."""
        if self.views == 1:
            return warped[0]
        b, v, _, hw, ww = weights.shape
        wts = F.interpolate(weights.reshape(b, v, hw, ww).float(), size=self.size, mode="bilinear",
                            align_corners=False)[0].numpy()  # (V, S, S)
        cv2.multiply(warped[0], self._repeat(wts[0]), dst=self._fused)
        for j in range(1, v):
            cv2.multiply(warped[j], self._repeat(wts[j]), dst=self._term)
            cv2.add(self._fused, self._term, dst=self._fused)
        return self._fused

    def _repeat(self, plane: np.ndarray) -> np.ndarray:
        """(S, S) -> (S, S, 3) in the reused buffer (OpenCV multiplies channel by channel)."""
        return cv2.merge((plane, plane, plane), dst=self._per_pixel)

    def __call__(self, decoded: torch.Tensor, mask: torch.Tensor, displacement: torch.Tensor,
                 weights: torch.Tensor) -> torch.Tensor:
        fused = self.fuse(self.warp(displacement), weights)
        d = decoded.detach().float().numpy()[0]  # (S, S, 3)
        m = mask.detach().float().numpy()[0, :, :, 0]  # (S, S)
        out = np.empty((1,) + d.shape, np.float32)  # decoded + M (fused - decoded): blend_skip's, channels-last
        cv2.subtract(fused, d, dst=out[0])
        cv2.multiply(out[0], self._repeat(m), dst=out[0])
        cv2.add(out[0], d, dst=out[0])
        return torch.from_numpy(out).permute(0, 3, 1, 2)

"""Keypoint-field consistency (odecam switch ``loss.kp_field``): the motion field must carry each keypoint.

F_C's zero-order field at a driving pixel z is T~(z) - z = sum_i alpha_i(z) Delta_i with
Delta_i = x_S^i - x_D^i (paper Eq. 2-3). At the driving keypoint x_D^i itself the backward field should
point at x_S^i, i.e. equal Delta_i: the point the keypoint detector F_K tracked is where the pixel came from.
Measured on the shipped default (carphone reconstruction, N=0) the refined field T carried 0.70 of Delta_i
at the keypoints (least squares) and missed it by 11 px on average at 256 px: the output under-moves, and the
pixel metrics are no better than showing the source still. This loss samples the field at every driving
keypoint, for every view, and takes the L1 to that view's Delta_i. The keypoints are detached: the loss
teaches F_C and F_E to follow F_K, not F_K to agree with a lazy field (F_K has its own landmark and
equivariance terms).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def field_at(field: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of a displacement field at points.

    field (B, 2, h, w) on the [-1, 1] grid of :func:`odecam.model.geometry.make_coordinate_grid`
    (corners at -1 and 1, so ``align_corners=True``); points (B, K, 2) as (x, y) -> (B, K, 2)."""
    if field.dim() != 4 or field.shape[1] != 2:
        raise ValueError(f"field must have shape (B, 2, h, w), got {tuple(field.shape)}")
    if points.dim() != 3 or points.shape[-1] != 2 or points.shape[0] != field.shape[0]:
        raise ValueError(f"points must have shape (B, K, 2) with B = {field.shape[0]}, got {tuple(points.shape)}")
    grid = points.to(field.dtype)[:, :, None, :]  # (B, K, 1, 2)
    return F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=True)[..., 0].transpose(1, 2)


def keypoint_field_loss(field: torch.Tensor, kp_view: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
    """Mean L1 between the field at the driving keypoints and the keypoint displacements.

    field (B*V, 2, h, w) (T~ - identity or T - identity, views of one item contiguous); kp_view (B*V, K, 2)
    (x_S^i of each view); kp_driving (B, K, 2) or (B*V, K, 2). Keypoints are detached. Returns a scalar."""
    bv = field.shape[0]
    kp_view = kp_view.detach().float()
    kp_driving = kp_driving.detach().float()
    if kp_driving.shape[0] != bv:
        if bv % kp_driving.shape[0]:
            raise ValueError(f"{bv} views is not a multiple of {kp_driving.shape[0]} driving frames")
        kp_driving = kp_driving.repeat_interleave(bv // kp_driving.shape[0], dim=0)
    if kp_view.shape != kp_driving.shape:
        raise ValueError(f"kp_view {tuple(kp_view.shape)} and kp_driving {tuple(kp_driving.shape)} must match")
    at = field_at(field.float(), kp_driving)
    return (at - (kp_view - kp_driving)).abs().mean()

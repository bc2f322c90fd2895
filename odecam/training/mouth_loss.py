"""Mouth-region loss (an odecam training switch, not in the paper).

The whole-frame losses give the mouth a few hundred of 65,536 pixels at 256 px, so a small F_G learns to
stretch a closed mouth rather than paint an open one. This loss scores a crop around the driving frame's
mouth again, resampled to ``size`` px, with the frame losses' own weights:

    L_mouth = w_p * L_percep(crop(S_D), crop(D)) + w_1 * mean | crop(S_D) - crop(D) |

``crop`` is centred on the mean of dlib's mouth landmarks 48-67 of D with a half side of ``margin`` times
the mouth's half width (clamped to [0.08, 0.5] in [-1, 1] units), sampled bilinearly (differentiable in
S_D). Items without landmarks (NaN) are left out; with none in a batch the loss is 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MOUTH_LANDMARKS = slice(48, 68)


def mouth_boxes(landmarks: torch.Tensor, margin: float = 1.6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """landmarks (B, 68, 2) in [-1, 1] (x, y), NaN rows where unknown -> centre (B, 2), half side (B,),
    valid (B,) bool (every mouth landmark known)."""
    mouth = landmarks[:, MOUTH_LANDMARKS]
    valid = torch.isfinite(mouth).flatten(1).all(1)
    safe = torch.where(valid[:, None, None], mouth, torch.zeros_like(mouth))
    centre = safe.mean(1)
    half_width = (safe[..., 0].amax(1) - safe[..., 0].amin(1)) / 2
    return centre, (margin * half_width).clamp(0.08, 0.5), valid


def crop(images: torch.Tensor, centre: torch.Tensor, half: torch.Tensor, size: int) -> torch.Tensor:
    """images (B, C, H, W), boxes centre (B, 2) and half side (B,) in [-1, 1] units -> (B, C, size, size)."""
    b = images.shape[0]
    theta = images.new_zeros(b, 2, 3)
    theta[:, 0, 0] = half
    theta[:, 1, 1] = half
    theta[:, :, 2] = centre
    grid = F.affine_grid(theta, [b, images.shape[1], size, size], align_corners=True)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)


def mouth_loss(pred: torch.Tensor, driving: torch.Tensor, driving_landmarks: torch.Tensor, vgg=None,
               perceptual_weight: float = 0.0, l1_weight: float = 1.0, size: int = 128) -> torch.Tensor:
    """pred, driving (B, 3, S, S); driving_landmarks (B, 68, 2) -> scalar (see the module docstring).
    ``vgg``: a :class:`~odecam.training.losses.VGG19Perceptual` (its own pyramid scales apply to the crop)."""
    centre, half, valid = mouth_boxes(driving_landmarks.to(pred.dtype))
    if not bool(valid.any()):
        return pred.sum() * 0.0
    idx = valid.nonzero().squeeze(1)
    p = crop(pred[idx], centre[idx], half[idx], size)
    with torch.no_grad():
        d = crop(driving[idx], centre[idx], half[idx], size)
    loss = l1_weight * (p - d).abs().mean()
    if vgg is not None and perceptual_weight > 0:
        loss = loss + perceptual_weight * vgg(p, d)
    return loss

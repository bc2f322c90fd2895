"""Relative motion with movement-scale adaptation (FOMM's ``normalize_kp``).

The avatar moves by the driving keypoints' motion *relative to a neutral driving pose*, scaled by
sqrt(area(hull(x_S)) / area(hull(x_D_neutral))) so a face far from the camera still moves the avatar
by the right amount:

    x = x_S + (x_D - x_D_neutral) * scale,        J = (J_D J_D_neutral^-1) J_S.

Lip retargeting (odecam, after LivePortrait's): with a landmark-guided F_K whose keypoints u and l sit on the
inner upper and lower lip, ``lip_gain`` g multiplies how far the mouth opens beyond the neutral pose. The
gap change d = ((x_D^l - x_D^u) - (x_Dn^l - x_Dn^u)) * scale is split between the two lips,
x^u -= (g - 1) / 2 * d and x^l += (g - 1) / 2 * d, only while the mouth is open beyond neutral (d_y > 0):
a mouth that closes is followed as it is, so the avatar's lips never cross.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

#: the keypoint roles (checkpoint metadata ``keypoint_roles``) lip retargeting needs
LIP_ROLES = ("inner_upper_lip", "inner_lower_lip")


def hull_area(kp: torch.Tensor | np.ndarray) -> float:
    """Area of the convex hull of keypoints (K, 2)."""
    pts = np.asarray(kp.detach().cpu() if isinstance(kp, torch.Tensor) else kp, dtype=np.float32).reshape(-1, 1, 2)
    return float(cv2.contourArea(cv2.convexHull(pts)))


class RelativeMotion:
    """Maps raw driving keypoints to avatar keypoints. Tensors are (1, K, 2) and (1, K, 2, 2).

    ``lips``: indices (upper, lower) of the inner-lip keypoints, needed when ``lip_gain`` != 1."""

    def __init__(self, kp_source: torch.Tensor, jac_source: torch.Tensor | None = None,
                 adapt_scale: bool = True, lip_gain: float = 1.0, lips: tuple[int, int] | None = None) -> None:
        if lip_gain != 1.0 and lips is None:
            raise ValueError("lip_gain needs the inner-lip keypoint indices (lips)")
        self.lip_gain = float(lip_gain)
        self.lips = lips
        self.kp_source = kp_source
        self.jac_source = jac_source
        self.adapt_scale = adapt_scale
        self._source_area = hull_area(kp_source[0])
        self.neutral: torch.Tensor | None = None
        self.neutral_jac_inv: torch.Tensor | None = None
        self.scale = 1.0

    def set_neutral(self, kp: torch.Tensor, jac: torch.Tensor | None = None) -> None:
        """Take these driving keypoints as the neutral pose (calibration)."""
        self.neutral = kp.clone()
        self.neutral_jac_inv = torch.inverse(jac) if jac is not None else None
        if self.adapt_scale:
            area = hull_area(kp[0])
            self.scale = float(np.sqrt(self._source_area / area)) if area > 1e-8 else 1.0
        else:
            self.scale = 1.0

    def __call__(self, kp: torch.Tensor, jac: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.neutral is None:
            self.set_neutral(kp, jac)
        value = self.kp_source + (kp - self.neutral) * self.scale
        if self.lip_gain != 1.0:
            u, lo = self.lips
            gap = ((kp[:, lo] - kp[:, u]) - (self.neutral[:, lo] - self.neutral[:, u])) * self.scale  # (1, 2)
            extra = (self.lip_gain - 1.0) / 2 * gap * (gap[:, 1:] > 0)  # only an opening beyond neutral
            value[:, u] -= extra  # value is this call's own tensor: changed in place
            value[:, lo] += extra
        new_jac = None
        if jac is not None and self.jac_source is not None and self.neutral_jac_inv is not None:
            new_jac = torch.matmul(torch.matmul(jac, self.neutral_jac_inv), self.jac_source)
        return value, new_jac

"""Landmark-guided F_K (an odecam switch, training only): tie some keypoints to facial landmarks.

Unsupervised keypoints (the paper's F_K) tend to settle where the appearance is easiest to track --
hairline, collar, background edges -- and leave the mouth and eyelids without a keypoint of their
own, so a driver's open mouth or blink never reaches the avatar. This loss pulls the first ``M`` of the
K keypoints towards fixed groups of dlib's 68 landmarks (precomputed offline by ``odecam prepare-faces``):

    L_lm = mean_{b, m : landmarks known} | x_m(I_b) - mean_{j in G_m} l_j(I_b) |_1

on the source and the driving frame. The remaining K - M keypoints stay free. Inference still runs
F_K alone: the landmarks are never needed after training.

Coordinates are (x, y) in [-1, 1] (``odecam.model.geometry.make_coordinate_grid``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: keypoint m -> dlib 68-landmark indices averaged into its target (the face's own right/left)
LANDMARK_GROUPS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("upper_eyelid_right", (37, 38)),
    ("upper_eyelid_left", (43, 44)),
    ("nose_tip", (30,)),
    ("mouth_corner_right", (48,)),
    ("mouth_corner_left", (54,)),
    ("inner_upper_lip", (61, 62, 63)),
    ("inner_lower_lip", (65, 66, 67)),
    ("chin", (8,)),
)


@dataclass(frozen=True)
class LandmarkTargets:
    """Averages landmark groups into per-keypoint targets. ``num_tied`` = M <= K."""

    groups: tuple[tuple[str, tuple[int, ...]], ...] = LANDMARK_GROUPS

    @property
    def num_tied(self) -> int:
        return len(self.groups)

    def matrix(self, dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> torch.Tensor:
        """(M, 68) averaging matrix: targets = matrix @ landmarks."""
        m = torch.zeros(self.num_tied, 68, dtype=dtype, device=device)
        for i, (_, idx) in enumerate(self.groups):
            m[i, list(idx)] = 1.0 / len(idx)
        return m

    def __call__(self, landmarks: torch.Tensor) -> torch.Tensor:
        """landmarks (B, 68, 2) -> targets (B, M, 2); NaN where a group's landmarks are missing."""
        if landmarks.dim() != 3 or landmarks.shape[1:] != (68, 2):
            raise ValueError(f"landmarks must have shape (B, 68, 2), got {tuple(landmarks.shape)}")
        return torch.einsum("mj,bjc->bmc", self.matrix(landmarks.dtype, landmarks.device), landmarks)


def landmark_loss(kp: torch.Tensor, landmarks: torch.Tensor, targets: LandmarkTargets = LandmarkTargets()
                  ) -> tuple[torch.Tensor, int]:
    """Mean L1 between the first M keypoints and their landmark targets, over images whose landmarks exist.

    Args:
        kp: keypoints (B, K, 2) with K >= M.
        landmarks: (B, 68, 2), rows of NaN for images without a face.

    Returns:
        (loss scalar, number of images that contributed); the loss is 0 (with a graph) when none did.
    """
    m = targets.num_tied
    if kp.shape[1] < m:
        raise ValueError(f"landmark-guided F_K ties {m} keypoints but the model has only K={kp.shape[1]}")
    tgt = targets(landmarks.to(kp.dtype))
    valid = torch.isfinite(tgt).all(dim=2).all(dim=1)  # (B,)
    n = int(valid.sum())
    if n == 0:
        return kp.sum() * 0.0, 0
    diff = (kp[valid, :m] - tgt[valid]).abs()
    return diff.mean(), n

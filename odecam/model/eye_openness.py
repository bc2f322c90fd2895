"""The eye-openness reader of blink retargeting: a small CNN on full-resolution eye crops.

F_K works on a 64 x 64 copy of the frame, where an eyelid is about one pixel, so the keypoints cannot carry a
blink (EVALUATION.md, "Can F_K see a blink?"). This network reads each eye from the 256 px frame instead: a
grey crop placed by F_K's two upper-eyelid keypoints (roles ``upper_eyelid_right`` / ``upper_eyelid_left``),
resampled to :data:`EYE_CROP` so faces of every size look alike, the left eye mirrored to look like the right.
Its output is the eye's openness as dlib's 68 landmarks measure it on the training clips (the lid gap over the
eye width, about 0.3 for an open eye and under 0.1 for a closed one); only its ratio to the same person's
running median is used (:mod:`odecam.engine.blink`). 8.9 k weights; ``odecam/assets/eye_openness.safetensors``.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn

#: (width, height) of the resampled eye crop
EYE_CROP = (32, 20)
#: the crop's centre lies DROP eye widths below the upper-eyelid keypoint; its size is BOX eye widths
DROP = 0.15
BOX = (1.6, 1.0)
#: the eye width is this times the distance between the two upper-eyelid keypoints
EYE_WIDTH = 0.45


class EyeOpennessNet(nn.Module):
    """(B, 1, 20, 32) grey eye crops in [0, 1] -> (B,) openness (lid gap over eye width)."""

    def __init__(self, width: int = 12) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(2 * width * (EYE_CROP[1] // 4) * (EYE_CROP[0] // 4), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, EYE_CROP[1], EYE_CROP[0]):
            raise ValueError(f"eye crops must be (B, 1, {EYE_CROP[1]}, {EYE_CROP[0]}), got {tuple(x.shape)}")
        x = x - x.mean((2, 3), keepdim=True)  # brightness-free
        return self.head(self.body(x).flatten(1))[:, 0]


def eye_crops(image: np.ndarray, lids: np.ndarray, out: np.ndarray | None = None, drop: float = DROP,
              box: tuple[float, float] = BOX, scratch: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """A frame, grey (H, W) float32 in [0, 1] or (H, W, 3) uint8 RGB, and its (2, 2) upper-eyelid keypoints in
    pixels (the right, then the left eye of the face) -> (2, 20, 32) float32 grey crops in [0, 1], the left eye
    mirrored. An RGB frame is cut first and made grey after (only the crops' pixels are read; the same crops
    to the uint8 rounding). ``out``: a buffer of that shape to fill; ``drop`` and ``box``: the crop's placement
    (the shipped network was trained with the defaults); ``scratch``: (20, 32, 3) and (20, 32) uint8 buffers for
    an RGB frame's crop and its grey (the per-frame caller's, so nothing is allocated per frame)."""
    if out is None:
        out = np.empty((2, EYE_CROP[1], EYE_CROP[0]), np.float32)
    if scratch is None and image.ndim == 3:
        scratch = (np.empty((EYE_CROP[1], EYE_CROP[0], 3), np.uint8), np.empty((EYE_CROP[1], EYE_CROP[0]), np.uint8))
    width = EYE_WIDTH * float(np.linalg.norm(lids[1] - lids[0]))
    w, h = box[0] * width, box[1] * width
    dst = np.float32([[0, 0], [EYE_CROP[0], 0], [0, EYE_CROP[1]]])
    for e in range(2):
        cx, cy = float(lids[e, 0]), float(lids[e, 1]) + drop * width
        x0, x1 = (cx - w / 2, cx + w / 2) if e == 0 else (cx + w / 2, cx - w / 2)  # mirror the left eye
        src = np.float32([[x0, cy - h / 2], [x1, cy - h / 2], [x0, cy + h / 2]])
        m = cv2.getAffineTransform(src, dst)
        if image.ndim == 2:
            cv2.warpAffine(image, m, EYE_CROP, dst=out[e], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        else:
            cv2.warpAffine(image, m, EYE_CROP, dst=scratch[0], flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
            cv2.cvtColor(scratch[0], cv2.COLOR_RGB2GRAY, dst=scratch[1])
            np.multiply(scratch[1], np.float32(1.0 / 255.0), out=out[e])
    return out

"""Reading and validating images and video frames for the engine.

Images are numpy uint8 arrays (H, W, 3) in RGB order at the boundary; the model sees float tensors
(B, 3, S, S) in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from odecam.errors import InputImageError

MIN_SIDE = 32
MAX_SIDE = 8192
MAX_PIXELS = 40_000_000


def load_image(path: str | Path, role: str = "image") -> np.ndarray:
    """Read an 8-bit RGB image file -> (H, W, 3) uint8 RGB, or raise :class:`InputImageError`."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise InputImageError(f"{role} file {str(p)!r} does not exist; check the path.")
    if p.is_dir():
        raise InputImageError(f"{role} {str(p)!r} is a folder; pass an image file (JPEG or PNG).")
    try:
        with Image.open(p) as im:
            w, h = im.size
            check_size(w, h, p, role)
            mode = im.mode
            if mode not in ("RGB", "RGBA", "P", "L", "LA", "CMYK", "YCbCr"):
                raise InputImageError(f"{role} {str(p)!r} has pixel format {mode!r}, not 8-bit RGB; "
                                      "save it as an 8-bit RGB JPEG or PNG.")
            if mode in ("L", "LA"):
                raise InputImageError(f"{role} {str(p)!r} is greyscale, not RGB; convert it to an RGB "
                                      "JPEG or PNG (e.g. with any image editor).")
            arr = np.asarray(im.convert("RGB"))
    except InputImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputImageError(f"{role} {str(p)!r} is not a readable image ({type(exc).__name__}); "
                              "pass a JPEG or PNG file.") from None
    return np.ascontiguousarray(arr)


def check_size(w: int, h: int, path: object, role: str) -> None:
    """Refuse tiny and huge images with a one-sentence fix."""
    if min(w, h) < MIN_SIDE:
        raise InputImageError(f"{role} {str(path)!r} is only {w}x{h} pixels; use an image at least "
                              f"{MIN_SIDE}x{MIN_SIDE} (256x256 or larger is best).")
    if max(w, h) > MAX_SIDE or w * h > MAX_PIXELS:
        raise InputImageError(f"{role} {str(path)!r} is {w}x{h} pixels, too large; resize it below "
                              f"{MAX_SIDE}x{MAX_SIDE} first.")


def check_frame(frame: np.ndarray, role: str = "driving frame") -> np.ndarray:
    """Validate an in-memory frame (H, W, 3) uint8 and return it contiguous."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        shape = getattr(frame, "shape", None)
        raise InputImageError(f"{role} must be an (H, W, 3) RGB array, got shape {shape}; "
                              "convert greyscale or RGBA frames to RGB first.")
    if frame.dtype != np.uint8:
        raise InputImageError(f"{role} must be uint8 (0-255), got {frame.dtype}; scale and cast it first.")
    check_size(frame.shape[1], frame.shape[0], "<array>", role)
    return np.ascontiguousarray(frame)


def center_square(img: np.ndarray) -> np.ndarray:
    """The largest centred square crop of (H, W, C)."""
    h, w = img.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return img[y:y + s, x:x + s]


def to_tensor(img: np.ndarray, size: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, size, size) float in [0, 1] (square-cropped and resized).

    ``out`` (1, 3, size, size) is reused when given, so the per-frame path allocates no new tensor.
    """
    sq = center_square(img)
    if sq.shape[0] != size:
        interp = cv2.INTER_AREA if sq.shape[0] > size else cv2.INTER_LINEAR
        sq = cv2.resize(sq, (size, size), interpolation=interp)
    t = torch.from_numpy(np.ascontiguousarray(sq)).permute(2, 0, 1).unsqueeze(0)
    if out is None:
        return t.float().div_(255.0)
    out.copy_(t).div_(255.0)
    return out


def to_image(t: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) float in [0, 1] -> (H, W, 3) uint8 RGB."""
    if t.dim() == 4:
        t = t[0]
    return (t.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy())

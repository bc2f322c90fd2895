"""Reading and validating images and video frames for the engine.

Images are numpy uint8 arrays (H, W, 3) in RGB order at the boundary; the model sees float tensors
(B, 3, S, S) in [0, 1].

A user's image file (source, reference, an avatar received over the network) is hostile until checked:
:func:`load_image` and :func:`decode_image_bytes` read its header first (PIL opens lazily) and refuse,
before a single pixel is decoded,

* formats other than JPEG, PNG and WebP;
* more than :data:`MAX_PIXELS` (40 megapixels) or a side over :data:`MAX_SIDE`, or under :data:`MIN_SIDE`;
* a header that claims more pixels than the file's bytes can hold (a JPEG needs at least one bit per
  8x8 block, a PNG at least 1/1032 of its raw rows: deflate's best ratio), the "8192x4880 JPEG that
  holds a 256-px picture" that would otherwise allocate hundreds of megabytes;
* pixel formats other than 8-bit colour.

Photos are turned upright by their EXIF orientation (as phones store portraits). Large JPEGs are
decoded at a reduced scale (libjpeg's DCT scaling: 1/2, 1/4 or 1/8) so that the long side
stays at least :data:`DECODE_LONG_SIDE` px: the model never uses more, and memory stays low.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps

from odecam.errors import InputImageError

MIN_SIDE = 32
MAX_SIDE = 8192
#: the most pixels a header may announce (checked before decoding)
MAX_PIXELS = 40_000_000
#: JPEGs with a long side of at least twice this are decoded at 1/2, 1/4 or 1/8 scale, down to this
DECODE_LONG_SIDE = 2048
#: image formats read (PIL format names)
FORMATS = ("JPEG", "PNG", "WEBP")

# PIL's own decompression-bomb guard at odecam's cap (it warns above it and refuses above twice it;
# load_image refuses above it first, with a sentence).
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

_DEFLATE_MAX_RATIO = 1032  # deflate codes at most 258 bytes in 2 bits
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_JPEG_ARITHMETIC_SOF = {0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def load_image(path: str | Path, role: str = "image") -> np.ndarray:
    """Read an 8-bit colour image file (JPEG, PNG or WebP) -> (H, W, 3) uint8 RGB, or raise
    :class:`InputImageError` with one sentence naming the file (see the module notes for the checks)."""
    p = Path(path)
    if not p.exists():
        raise InputImageError(f"{role} file {str(p)!r} does not exist; check the path.")
    if p.is_dir():
        raise InputImageError(f"{role} {str(p)!r} is a folder; pass an image file (JPEG or PNG).")
    if not p.is_file():
        raise InputImageError(f"{role} {str(p)!r} is not a regular file; pass an image file (JPEG or PNG).")
    try:
        with open(p, "rb") as f:
            return _decode(f, p.stat().st_size, f"{role} {str(p)!r}", FORMATS)
    except OSError as exc:
        raise InputImageError(f"{role} {str(p)!r} cannot be read ({exc.strerror or type(exc).__name__}); "
                              "check the file and its permissions.") from None


def decode_image_bytes(data: bytes, role: str = "the image", formats: tuple[str, ...] = FORMATS) -> np.ndarray:
    """Decode image file bytes (e.g. an avatar received over the network) with the same checks as
    :func:`load_image` -> (H, W, 3) uint8 RGB, or :class:`InputImageError` whose sentence starts with
    ``role`` (no file name). ``formats``: PIL format names accepted (default JPEG, PNG, WebP)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputImageError(f"{role} must be image file bytes, not {type(data).__name__}.")
    return _decode(io.BytesIO(bytes(data)), len(data), role, formats)


def _decode(f: BinaryIO, nbytes: int, who: str, formats: tuple[str, ...]) -> np.ndarray:
    names = " or ".join(", ".join(formats).rsplit(", ", 1)).replace("WEBP", "WebP")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, with a sentence
            im = Image.open(f, formats=list(formats))
        with im:
            w, h = im.size
            check_size(w, h, None, who)
            _check_plausible(im, f, nbytes, who)
            if im.mode in ("L", "LA"):
                raise InputImageError(f"{who} is greyscale, not RGB; convert it to an RGB JPEG or PNG (e.g. with "
                                      "any image editor).")
            if im.mode not in ("RGB", "RGBA", "P", "CMYK", "YCbCr"):
                raise InputImageError(f"{who} has pixel format {im.mode!r}, not 8-bit RGB; save it as an 8-bit "
                                      "RGB JPEG or PNG.")
            if im.format == "JPEG" and max(w, h) >= 2 * DECODE_LONG_SIDE:
                k = max(w, h) / DECODE_LONG_SIDE
                im.draft("RGB", (max(1, int(w / k)), max(1, int(h / k))))  # libjpeg decodes at 1/2, 1/4 or 1/8
            im.load()
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            rgb = ImageOps.exif_transpose(rgb) if _exif_orientation(im) not in (None, 1) else rgb
            arr = np.asarray(rgb)
    except InputImageError:
        raise
    except Image.DecompressionBombError as exc:  # PIL's guard, at twice MAX_PIXELS, fires in Image.open
        found = re.search(r"\((\d+) pixels\)", str(exc))
        mp = f"{int(found.group(1)) / 1e6:,.0f}" if found else f"over {2 * MAX_PIXELS // 1_000_000}"
        raise InputImageError(f"{who} has {mp} megapixels, too large (at most {MAX_PIXELS // 1_000_000} megapixels "
                              f"and {MAX_SIDE} px a side); resize it first, e.g. to 2048 px on its long side.") from None
    except MemoryError:
        raise InputImageError(f"{who} does not fit in memory; resize it below {MAX_PIXELS // 1_000_000} "
                              "megapixels first.") from None
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file makes a decoder raise
        if "truncated" in str(exc):
            raise InputImageError(f"{who} is truncated (its data ends before the picture does); re-save it as a "
                                  "JPEG or PNG.") from None
        raise InputImageError(f"{who} is not a readable image ({type(exc).__name__}); pass a {names} "
                              "file.") from None
    return np.ascontiguousarray(arr)


def _exif_orientation(im: Image.Image) -> int | None:
    """The EXIF orientation tag (phones store portraits sideways and set it), or None."""
    try:
        return im.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - a damaged EXIF block: take the pixels as stored
        return None


def _check_plausible(im: Image.Image, f: BinaryIO, nbytes: int, who: str) -> None:
    """Refuse a header that announces more pixels than ``nbytes`` of compressed data can hold."""
    w, h = im.size
    need = 0
    if im.format == "JPEG" and getattr(im, "layer", None):
        header_end = f.tell()
        f.seek(0)
        head = f.read(min(header_end, 1 << 20))
        f.seek(header_end)
        if not _jpeg_arithmetic(head):
            hmax = max(c[1] for c in im.layer) or 1
            vmax = max(c[2] for c in im.layer) or 1
            blocks = sum(math.ceil(w * c[1] / (8 * hmax)) * math.ceil(h * c[2] / (8 * vmax)) for c in im.layer)
            need = blocks // 8  # Huffman coding spends at least one bit on every 8x8 block
            nbytes -= header_end
    elif im.format == "PNG":
        f.seek(0)
        ihdr = f.read(33)
        f.seek(0)
        channels = _PNG_CHANNELS.get(ihdr[25], 1) if len(ihdr) > 25 else 1
        depth = ihdr[24] if len(ihdr) > 24 else 1
        need = h * (1 + math.ceil(w * depth * channels / 8)) // _DEFLATE_MAX_RATIO
    if nbytes < need:
        raise InputImageError(f"{who} claims {w}x{h} pixels but holds too little data for that ({max(nbytes, 0)} "
                              f"bytes, at least {need} needed): it is damaged or crafted; re-save it as a JPEG or "
                              "PNG.")


def _jpeg_arithmetic(head: bytes) -> bool:
    """Whether the JPEG's frame header (within ``head``) says arithmetic coding (rare; can go below a bit
    per block, so the size check skips it)."""
    i = 2
    while i + 4 <= len(head):
        if head[i] != 0xFF:
            i += 1
            continue
        marker = head[i + 1]
        if marker == 0xFF:
            i += 1
        elif marker in (0x00, 0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            i += 2
        elif marker in _JPEG_ARITHMETIC_SOF:
            return True
        elif marker == 0xDA:
            return False
        else:
            i += 2 + int.from_bytes(head[i + 2:i + 4], "big")
    return False


def still_image_format(path: str | Path) -> str | None:
    """The format name ('JPEG', 'PNG', ...) when ``path`` is a still image (read from its header only),
    else None (a video, an animated image, anything else, or no such file)."""
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                return None if getattr(im, "is_animated", False) else im.format
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def check_size(w: int, h: int, path: object, role: str) -> None:
    """Refuse tiny and huge images with a one-sentence fix (``path`` None: ``role`` names the image)."""
    who = role if path is None else f"{role} {str(path)!r}"
    if min(w, h) < MIN_SIDE:
        raise InputImageError(f"{who} is only {w}x{h} pixels; use an image at least {MIN_SIDE}x{MIN_SIDE} "
                              "(256x256 or larger is best).")
    if max(w, h) > MAX_SIDE or w * h > MAX_PIXELS:
        raise InputImageError(f"{who} is {w}x{h} pixels, too large (at most {MAX_PIXELS // 1_000_000} megapixels "
                              f"and {MAX_SIDE} px a side); resize it first, e.g. to 2048 px on its long side.")


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


def to_tensor(img: np.ndarray, size: int, out: torch.Tensor | None = None, pool: int = 1) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, size, size) float in [0, 1] (square-cropped and resized).

    ``out`` (1, 3, size, size) is reused when given, so the per-frame path allocates no new tensor.
    ``pool`` n > 1: the (1, 3, size / n, size / n) average of every n x n block of that tensor (F_K's area
    pooling, done here in OpenCV instead of inside the keypoints graph; the same values to float rounding);
    ``out`` is then (1, 3, size / n, size / n).
    """
    sq = center_square(img)
    if sq.shape[0] != size:
        interp = cv2.INTER_AREA if sq.shape[0] > size else cv2.INTER_LINEAR
        sq = cv2.resize(sq, (size, size), interpolation=interp)
    if pool > 1:  # box average of the float frame (INTER_AREA at an integer factor), then to [0, 1]
        small = size // pool
        sq = cv2.resize(np.ascontiguousarray(sq).astype(np.float32), (small, small), interpolation=cv2.INTER_AREA)
        if out is None or out.dtype != torch.float32 or out.device.type != "cpu" or not out.is_contiguous():
            t = torch.from_numpy(sq).permute(2, 0, 1).unsqueeze(0).div(255.0)
            return t if out is None else out.copy_(t)
        planes = out.numpy()[0]
        for c, plane in enumerate(cv2.split(sq)):
            np.multiply(plane, np.float32(1.0 / 255.0), out=planes[c])
        return out
    if out is not None and out.dtype == torch.float32 and out.device.type == "cpu" and out.is_contiguous():
        planes = out.numpy()[0]  # per channel plane: a cast of a strided (H, W, 3) view is 2x slower
        for c, plane in enumerate(cv2.split(np.ascontiguousarray(sq))):
            np.divide(plane, np.float32(255.0), out=planes[c])  # float32 x / 255, as div_ computes it
        return out
    arr = np.ascontiguousarray(sq)
    if not arr.flags.writeable:  # e.g. a decoder's read-only frame: torch warns about (and cannot own) it
        arr = arr.copy()
    t = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)
    if out is None:
        return t.float().div_(255.0)
    out.copy_(t).div_(255.0)
    return out


def to_image(t: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) float in [0, 1] -> (H, W, 3) uint8 RGB (rounded, clamped to [0, 255]).

    A float32 CPU image held channels-last (the onnxruntime backend's frames) is converted by OpenCV in two
    passes (clamp below at 0, then scale, round and saturate) instead of torch's five."""
    if t.dim() == 4:
        t = t[0]
    hwc = t.detach().permute(1, 2, 0)
    if hwc.dtype == torch.float32 and hwc.device.type == "cpu" and hwc.is_contiguous() and not hwc.requires_grad:
        return cv2.convertScaleAbs(np.maximum(hwc.numpy(), 0.0), alpha=255.0)
    return (t.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy())

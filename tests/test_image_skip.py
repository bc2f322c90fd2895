"""The onnxruntime backend's image-skip tail (OpenCV remap, channels-last) against the model's own torch tail."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from odecam.engine.image_skip import ImageSkipTail, interpolation_matrix
from odecam.engine.images import to_image
from odecam.export.graphs import finish_tail


def _inputs(v: int, s: int, hm: int, hw: int, seed: int, reach: float = 0.2):
    """Smooth view images (V, 3, S, S), fields (V, 2, h_m, h_m), view weights (1, V, 1, hw, hw), decoded and mask."""
    g = torch.Generator().manual_seed(seed)
    images = F.interpolate(torch.rand(v, 3, 8, 8, generator=g), size=(s, s), mode="bicubic",
                           align_corners=False).clamp(0, 1)
    disp = F.interpolate(torch.randn(v, 2, 4, 4, generator=g) * reach, size=(hm, hm), mode="bilinear")
    weights = torch.softmax(torch.randn(1, v, 1, hw, hw, generator=g), dim=1)
    decoded, mask = torch.rand(1, 3, s, s, generator=g), torch.rand(1, 1, s, s, generator=g)
    return images, disp, weights, decoded, mask


@pytest.mark.parametrize("n", [8, 32])
@pytest.mark.parametrize("align_corners", [True, False])
def test_interpolation_matrix_is_torch_bilinear_resize(n, align_corners):
    x = torch.randn(2, 3, n, n)
    rows, cols = interpolation_matrix(4 * n, n, align_corners), interpolation_matrix(4 * n, n, align_corners)
    want = F.interpolate(x, size=(4 * n, 4 * n), mode="bilinear", align_corners=align_corners)
    assert rows.shape == (4 * n, n)
    assert float((rows @ x @ cols.t() - want).abs().max()) <= 1e-6


@pytest.mark.parametrize("views", [1, 2, 3])
@pytest.mark.parametrize("size", [64, 256])
def test_tail_equals_the_models_torch_tail(views, size):
    """decoded + M (sum_j C~_j T_j o image_j - decoded), as finish_tail (grid_sample) computes it, to float
    rounding; fields large enough to carry points out of the view (zero border) included."""
    images, disp, weights, decoded, mask = _inputs(views, size, size // 8, size // 4, seed=views * 7 + size,
                                                   reach=0.4)
    want = finish_tail(images, decoded, mask, disp, weights)
    tail = ImageSkipTail(images, (size // 8, size // 8))
    got = tail(decoded.permute(0, 2, 3, 1).contiguous(), mask.permute(0, 2, 3, 1).contiguous(), disp, weights)
    assert got.shape == (1, 3, size, size) and got.dtype == torch.float32
    assert got.permute(0, 2, 3, 1).is_contiguous()  # channels-last underneath: to_image's fast layout
    assert float((got - want).abs().max()) <= 3e-5
    assert float((got - want).abs().mean()) <= 1e-6


@pytest.mark.parametrize("views,shuffle", [(1, 2), (2, 2), (1, 4)])
def test_phases_of_the_shuffle_head_give_the_same_frame(views, shuffle):
    """from_phases on F_G's unshuffled head (animate(phases=True), decode_phases' layout) = the tail on its
    pixel_shuffle (animate(skip_tail=True)), exactly."""
    from odecam.config import preset
    from odecam.model import MotionTransferModel

    cfg = preset("lite").replace(image_size=64, num_refs=views - 1)
    cfg.generator.pixel_shuffle, cfg.generator.final_kernel = shuffle, 1
    torch.manual_seed(0)
    model = MotionTransferModel(cfg).eval()
    g = torch.Generator().manual_seed(views)
    with torch.no_grad():
        state = model.prepare_views(torch.rand(1, views, 3, 64, 64, generator=g))
        kp = model.kp_detector(torch.rand(1, 3, 64, 64, generator=g))["value"]
        parts = model.animate(state, kp, num_views=views, skip_tail=True)
        phased = model.animate(state, kp, num_views=views, skip_tail=True, phases=True)
    n = 64 // shuffle
    assert phased["prediction"].shape == (1, n, n, 4 * shuffle * shuffle) and "skip_mask" not in phased
    tail = ImageSkipTail(state["image"], tuple(state["image_small"].shape[2:]))
    want = tail(parts["prediction"].permute(0, 2, 3, 1).contiguous(), parts["skip_mask"].permute(0, 2, 3, 1).contiguous(),
                parts["displacement"], parts["weights"])
    got = tail.from_phases(phased["prediction"].contiguous().numpy(), phased["displacement"], phased["weights"])
    assert got.permute(0, 2, 3, 1).is_contiguous()
    assert torch.equal(got, want)
    with pytest.raises(ValueError, match="phases must be"):
        tail.from_phases(np.zeros((1, n, n, 12), np.float32), phased["displacement"], phased["weights"])


@pytest.mark.parametrize("sigma", [0.7, 1.0])
def test_the_blurred_mask_is_the_same_in_the_model_and_the_tail(sigma):
    """generator.mask_blur: from_phases blurs M (OpenCV, reflected border) as Generator.decode_parts does (torch), to
    float rounding; the taps are OpenCV's Gaussian; an M of 1 stays 1; the blur changes M only near its edges."""
    import cv2

    from odecam.config import preset
    from odecam.model import MotionTransferModel
    from odecam.model.generator import mask_blur_kernel

    taps = mask_blur_kernel(sigma)
    assert len(taps) == 2 * int(np.ceil(3 * sigma)) + 1 and abs(float(taps.sum()) - 1.0) < 1e-6
    assert np.allclose(taps, cv2.getGaussianKernel(len(taps), sigma, cv2.CV_32F).ravel(), atol=1e-6)
    assert mask_blur_kernel(0.0) is None
    cfg = preset("lite").replace(image_size=64)
    cfg.generator.pixel_shuffle, cfg.generator.final_kernel = 2, 1
    torch.manual_seed(0)
    plain = MotionTransferModel(cfg).eval()
    blurred = MotionTransferModel(cfg.replace(**{"generator.mask_blur": sigma})).eval()
    blurred.load_state_dict(plain.state_dict())
    g = torch.Generator().manual_seed(1)
    ones = torch.ones(1, 1, 64, 64)
    assert torch.allclose(blurred.generator.blur_mask(ones), ones, atol=1e-6)
    with torch.no_grad():
        state = blurred.prepare_views(torch.rand(1, 1, 3, 64, 64, generator=g))
        kp = blurred.kp_detector(torch.rand(1, 3, 64, 64, generator=g))["value"]
        parts = blurred.animate(state, kp, skip_tail=True)
        raw = plain.animate(state, kp, skip_tail=True)["skip_mask"]
        phased = blurred.animate(state, kp, skip_tail=True, phases=True)
    m = raw[0, 0].numpy()
    want_mask = cv2.sepFilter2D(m, -1, taps, taps, borderType=cv2.BORDER_REFLECT_101)
    assert float(np.abs(parts["skip_mask"][0, 0].numpy() - want_mask).max()) < 1e-6
    assert float((parts["skip_mask"] - raw).abs().max()) > 1e-3  # it does blur
    tail = ImageSkipTail(state["image"], tuple(state["image_small"].shape[2:]), mask_blur=sigma)
    want = tail(parts["prediction"].permute(0, 2, 3, 1).contiguous(), parts["skip_mask"].permute(0, 2, 3, 1).contiguous(),
                parts["displacement"], parts["weights"])
    got = tail.from_phases(phased["prediction"].contiguous().numpy(), phased["displacement"], phased["weights"])
    assert float((got - want).abs().max()) < 1e-5


def test_each_frame_is_a_new_array():
    """Working buffers are reused; a returned frame is not overwritten by the next call."""
    images, disp, weights, decoded, mask = _inputs(2, 64, 8, 16, seed=3)
    tail = ImageSkipTail(images, (8, 8))
    d, m = decoded.permute(0, 2, 3, 1).contiguous(), mask.permute(0, 2, 3, 1).contiguous()
    first = tail(d, m, disp, weights)
    kept = first.clone()
    second = tail(d, m, disp * -1.0, weights)
    assert torch.equal(first, kept)
    assert float((second - first).abs().max()) > 1e-2


def test_views_must_be_rgb():
    with pytest.raises(ValueError, match=r"\(V, 3, H, W\)"):
        ImageSkipTail(torch.rand(1, 4, 32, 32), (8, 8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_to_image_is_the_same_for_either_layout(dtype):
    """Channels-last float32 frames take OpenCV's conversion; the uint8 image is the same: rounded half to
    even, clamped to [0, 255], below-zero values to 0 (not mirrored)."""
    g = torch.Generator().manual_seed(0)
    hwc = torch.rand(1, 32, 48, 3, generator=g, dtype=dtype) * 1.6 - 0.3  # values below 0 and above 1
    hwc[0, 0, :4, 0] = torch.tensor([0.5, 1.5, 2.5, 254.5], dtype=dtype) / 255  # rounding ties
    nchw_view = hwc.permute(0, 3, 1, 2)
    planar = nchw_view.contiguous()
    fast, slow = to_image(nchw_view), to_image(planar)
    assert fast.dtype == np.uint8 and fast.shape == (32, 48, 3)
    assert np.array_equal(fast, slow)
    assert fast[0, :4, 0].tolist() == [0, 2, 2, 254]
    assert fast.min() == 0 and fast.max() == 255


@pytest.mark.parametrize("shape", [(256, 256), (300, 420), (120, 90)])
def test_to_tensor_into_a_buffer_is_bit_identical(shape):
    """The per-frame input conversion into the animator's reused buffer (OpenCV planes, float32 x / 255) gives
    the same bits as the allocating torch path, for crops that are resized and for ones that are not."""
    from odecam.engine.images import to_tensor

    frame = np.random.default_rng(1).integers(0, 256, size=shape + (3,), dtype=np.uint8)
    buf = torch.full((1, 3, 256, 256), -1.0)
    got = to_tensor(frame, 256, out=buf)
    assert got is buf
    assert torch.equal(got, to_tensor(frame, 256))
    assert float(got.min()) >= 0.0 and float(got.max()) <= 1.0

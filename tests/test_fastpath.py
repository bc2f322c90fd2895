"""The export fast path (odecam.model.fastpath) and the fp32 islands compute what eager computes."""

import pytest
import torch

from odecam.config import preset
from odecam.export.graphs import FrameGraph, example_inputs
from odecam.model import MotionTransferModel
from odecam.model.fastpath import (conv_parts, conv_taps, export_fastpath, fused_convs, gaussians, sum_views,
                                   translate_bilinear, upsampled_head, weighted_shifts)
from odecam.model.geometry import gather_warp, kp2gaussian, make_coordinate_grid

from conftest import randomize_new_parts


@pytest.mark.parametrize("depthwise,shuffle,fused_app", [(False, 1, False), (True, 1, False), (True, 2, False),
                                                        (True, 4, False), (True, 2, True)])
@pytest.mark.parametrize("num_refs", [0, 2])
def test_frame_graph_on_the_fast_path_matches_eager(depthwise, shuffle, fused_app, num_refs):
    """Every rewrite is on (fused heads, tap-decomposed F_A head, F_A's split input conv, view sums, gather
    warps, the half-resolution output head, F_C's separable translations), with depthwise-separable nets like
    lite's and without, and with the pixel-shuffle head in place of the last up-block."""
    cfg = preset("tiny").replace(num_refs=num_refs, **{"appearance.depthwise": depthwise,
                                                       "generator.depthwise": depthwise,
                                                       "generator.final_kernel": 3,  # lite's: the phase head
                                                       "generator.pixel_shuffle": shuffle,
                                                       "motion.depthwise": depthwise,
                                                       "appearance.fused": fused_app})
    torch.manual_seed(0)
    model = MotionTransferModel(cfg).eval()
    randomize_new_parts(model)
    ex = example_inputs(model)["frame"]
    with torch.no_grad():
        want = FrameGraph(model)(*ex)[0]
        want_tail = FrameGraph(model, skip_tail=True)(*ex)
        with export_fastpath(), gather_warp():
            got = FrameGraph(model)(*ex)[0]
            tail = FrameGraph(model, skip_tail=True)(*ex)
    assert len(tail) == 5 and tail[0].shape == want.shape and tail[1].shape[1] == 1  # decoded, mask, ...
    for g, w in zip(tail, want_tail):  # decoded image, mask, fields, view weights: rounding only
        assert float((g.float() - w.float()).abs().max()) <= 1e-6
    # the image skip samples random 64 px views with those fields: a 2e-7 field difference moves a sharp edge
    assert float((got - want).abs().max()) <= 5e-5


def test_rewrites_match_the_layers_they_replace():
    torch.manual_seed(0)
    x, y = torch.rand(2, 20, 9, 11), torch.rand(2, 1, 9, 11)
    a, b = torch.nn.Conv2d(20, 3, 3, padding=1), torch.nn.Conv2d(20, 1, 3, padding=1)
    head = torch.nn.Conv2d(21, 2, 3, padding=1)
    from odecam.model.blocks import SeparableConv2d

    sep = SeparableConv2d(21, 8)
    with torch.no_grad(), export_fastpath():
        fa, fb = fused_convs(x, [a, b], act=torch.sigmoid)
        assert torch.allclose(fa, torch.sigmoid(a(x)), atol=1e-6) and torch.allclose(fb, torch.sigmoid(b(x)), atol=1e-6)
        assert torch.allclose(conv_taps([x, y], head), head(torch.cat([x, y], 1)), atol=1e-5)
        assert torch.allclose(conv_parts([x, y], sep), sep(torch.cat([x, y], 1)), atol=1e-5)
        v = torch.rand(2, 3, 4, 5, 5)
        assert torch.allclose(sum_views(v), v.sum(1), atol=1e-6)
    with torch.no_grad():  # off the fast path: the layers themselves
        assert torch.equal(fused_convs(x, [a, b])[0], a(x))


@pytest.mark.parametrize("depthwise", [False, True])
def test_half_resolution_head_matches_upsample_conv_head(depthwise):
    """nearest 2x upsample -> 3x3 conv -> BN -> ReLU -> 3x3 output convs, computed in the 4 phases at the input's
    resolution (lite's last up-block and its RGB + mask convs)."""
    from odecam.model.blocks import UpBlock2d

    torch.manual_seed(0)
    block = UpBlock2d(12, 8, depthwise=depthwise).eval()
    with torch.no_grad():
        block.norm.running_mean.normal_(0, 0.5)
        block.norm.running_var.uniform_(0.5, 2)
    convs = [torch.nn.Conv2d(8, 3, 3, padding=1), torch.nn.Conv2d(8, 1, 3, padding=1)]
    x = torch.randn(2, 12, 7, 9)
    with torch.no_grad():
        want = [torch.sigmoid(c(block(x))) for c in convs]
        assert upsampled_head(x, block, convs, torch.sigmoid) is None  # off the fast path: the caller runs the layers
        with export_fastpath():
            got = upsampled_head(x, block, convs, torch.sigmoid)
            assert upsampled_head(x, block, [torch.nn.Conv2d(8, 3, 7, padding=3)]) is None  # other kernels: fall back
    assert [g.shape for g in got] == [w.shape for w in want] == [(2, 3, 14, 18), (2, 1, 14, 18)]
    for g, w in zip(got, want):
        assert float((g - w).abs().max()) <= 1e-6


def test_separable_translations_match_grid_sample():
    """F_C's zero-order local motions: K translations of the small view image sampled with two small matrix
    products, the Gaussians as outer products, T~ from the shifts; shifts reach past the border (zero padding)."""
    torch.manual_seed(0)
    h, w = 12, 10
    grid = make_coordinate_grid(h, w)
    image = torch.rand(2, 3, h, w)
    shift = torch.empty(2, 5, 2).uniform_(-1.3, 1.3)
    shift[0, 0] = 0.0
    got = translate_bilinear(image, shift, grid)
    for k in range(5):
        want = torch.nn.functional.grid_sample(image, grid[None] + shift[:, k, None, None], mode="bilinear",
                                               padding_mode="zeros", align_corners=True)
        assert float((got[:, k] - want).abs().max()) <= 1e-5
    kp = torch.empty(2, 5, 2).uniform_(-1, 1)
    assert float((gaussians(kp, grid, 0.01) - kp2gaussian(kp, grid, 0.01)).abs().max()) <= 1e-6
    alpha = torch.softmax(torch.randn(2, 6, h, w), dim=1)  # background + 5 keypoints
    motions = torch.cat([grid[None, None].expand(2, 1, h, w, 2), grid[None, None] + shift[:, :, None, None]], 1)
    want = torch.einsum("vkhw,vkhwc->vchw", alpha, motions) - grid.permute(2, 0, 1)[None]
    assert float((weighted_shifts(alpha[:, 1:], shift) - want).abs().max()) <= 1e-5


def test_warp_views_sum_matches_warp_then_weighted_sum():
    """F_A's warp with the fusion factors folded into the sampling weights, views summed (gathers and
    grid_sample); grids reach past the border; a NaN point gathers a valid row (no out-of-range read)."""
    from odecam.model.fastpath import warp_views_sum

    torch.manual_seed(0)
    feats = torch.rand(4, 16, 9, 11)  # B = 2 items x V = 2 views
    grid = torch.empty(4, 7, 8, 2).uniform_(-1.2, 1.2)
    scale = torch.rand(4, 7, 8)
    want = torch.nn.functional.grid_sample(feats, grid, align_corners=True) * scale[:, None]
    want = want.view(2, 2, 16, 7, 8).sum(1)
    with export_fastpath():
        plain = warp_views_sum(feats, grid, scale, 2)
        with gather_warp():
            gathered = warp_views_sum(feats, grid, scale, 2)
            grid[0, 0, 0] = float("nan")
            assert torch.isfinite(warp_views_sum(feats, grid, scale, 2)[1]).all()  # the other item is untouched
    assert float((plain - want).abs().max()) <= 1e-5 and float((gathered - want).abs().max()) <= 1e-5


@pytest.mark.parametrize("b", [1, 2])
@pytest.mark.parametrize("v", [1, 2])
def test_image_skip_tail_matches_the_resize_grid_formulation(b, v):
    """The image skip has one implementation: the backend's ``finish_tail`` is ``warp_images`` + ``blend_skip``,
    and their sampling grid (the contiguous field upsampled, plus a cached identity) is the previous
    ``resize_grid`` of the (B*V, h_m, w_m, 2) sampling grid to float rounding. A grid rounding of 2.4e-7 moves a
    sampled point by (S - 1) / 2 times that in pixels, which an edge (noise, or the zero padding where a point
    leaves the view) turns into up to 3e-5 at 256 px: smooth views at 64 px here (bound 7.5e-6)."""
    import torch.nn.functional as F

    from odecam.export.graphs import finish_tail
    from odecam.model.generator import blend_skip, sampling_grid, warp_images
    from odecam.model.geometry import resize_grid

    torch.manual_seed(b * 10 + v)
    s, hm, hw = 64, 16, 16  # image, field and view-weight sizes (lite's proportions at a quarter size)
    images = F.interpolate(torch.rand(b * v, 3, 8, 8), size=(s, s), mode="bicubic", align_corners=False)
    disp = F.interpolate(torch.randn(b * v, 2, 4, 4) * 0.2, size=(hm, hm), mode="bilinear") \
        + torch.randn(b * v, 2, hm, hm) * 0.01
    weights = torch.softmax(torch.randn(b, v, 1, hw, hw), dim=1)
    decoded, mask = torch.rand(b, 3, s, s), torch.rand(b, 1, s, s)

    grid = resize_grid(make_coordinate_grid(hm, hm)[None] + disp.permute(0, 2, 3, 1), s, s)  # the previous grid
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    wts = F.interpolate(weights.view(b, v, hw, hw), size=(s, s), mode="bilinear", align_corners=False)
    fused = (warped.view(b, v, 3, s, s) * wts.unsqueeze(2)).sum(1)
    want = mask * fused + (1 - mask) * decoded

    new_grid, ident = sampling_grid(disp, s, s)
    assert new_grid.shape == (b * v, s, s, 2) and torch.equal(ident, make_coordinate_grid(s, s))
    assert float((new_grid - grid).abs().max()) <= 1e-6
    same = sampling_grid(disp, hm, hm)[0]  # warp_views' case at the field's own size: no resampling at all
    assert torch.equal(same, resize_grid(make_coordinate_grid(hm, hm)[None] + disp.permute(0, 2, 3, 1), hm, hm))
    ours = blend_skip(decoded, mask, warp_images(images, disp, weights))
    tail = finish_tail(images, decoded, mask, disp, weights)
    assert ours.shape == tail.shape == (b, 3, s, s)
    assert float((ours - want).abs().max()) <= 1e-5
    assert float((tail - want).abs().max()) <= 1e-5
    assert float((tail - ours).abs().max()) <= 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,dim", [((2, 11, 32, 32), 1), ((1, 2, 1, 16, 16), 1), ((3, 5), -1)])
def test_softmax_on_the_fast_path_is_torchs(dtype, shape, dim):
    from odecam.model.fastpath import softmax

    x = torch.randn(*shape, dtype=dtype) * 30  # large logits: the max is subtracted
    with export_fastpath():
        got = softmax(x, dim)
    torch.testing.assert_close(got, torch.softmax(x, dim), rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-14)
    torch.testing.assert_close(got.sum(dim), torch.ones_like(got.sum(dim)))


@pytest.mark.parametrize("gather", [True, False])
@pytest.mark.parametrize("num_views", [1, 2])
def test_warp_views_rows_is_each_views_warp_times_its_factors(gather, num_views):
    """Per view, scale_j * warp(features_j, grid_j) channels-last, with the row gathers (points off the map
    included: zero padding) and with grid_sample."""
    from odecam.model.fastpath import warp_views_rows

    g = torch.Generator().manual_seed(num_views)
    b = 2
    features = torch.rand(b * num_views, 16, 12, 10, generator=g)
    grid = torch.rand(b * num_views, 6, 7, 2, generator=g) * 2.4 - 1.2
    scale = torch.rand(b * num_views, 6, 7, generator=g)
    want = (torch.nn.functional.grid_sample(features, grid, align_corners=True) * scale.unsqueeze(1))
    want = want.permute(0, 2, 3, 1).reshape(b, num_views, 6, 7, 16)
    with gather_warp(gather):
        got = warp_views_rows(features, grid, scale, num_views)
        plain = warp_views_rows(features, grid, None, num_views)
    assert len(got) == num_views and got[0].shape == (b, 6, 7, 16)
    for j in range(num_views):
        torch.testing.assert_close(got[j], want[:, j], rtol=0, atol=1e-6)
        torch.testing.assert_close(plain[j] * scale.view(b, num_views, 6, 7, 1)[:, j], want[:, j], rtol=0, atol=1e-6)

"""The export fast path (odecam.model.fastpath) and the fp32 islands compute what eager computes."""

import pytest
import torch

from odecam.config import preset
from odecam.export.graphs import FrameGraph, example_inputs
from odecam.model import MotionTransferModel
from odecam.model.fastpath import conv_parts, conv_taps, export_fastpath, fused_convs, sum_views
from odecam.model.geometry import gather_warp

from conftest import randomize_new_parts


@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize("num_refs", [0, 2])
def test_frame_graph_on_the_fast_path_matches_eager(depthwise, num_refs):
    """Every rewrite is on (fused heads, tap-decomposed F_A head, F_A's split input conv, view sums, gather
    warps), with depthwise-separable nets like lite's and without."""
    cfg = preset("tiny").replace(num_refs=num_refs, **{"appearance.depthwise": depthwise,
                                                       "generator.depthwise": depthwise,
                                                       "motion.depthwise": depthwise})
    torch.manual_seed(0)
    model = MotionTransferModel(cfg).eval()
    randomize_new_parts(model)
    ex = example_inputs(model)["frame"]
    with torch.no_grad():
        want = FrameGraph(model)(*ex)[0]
        with export_fastpath(), gather_warp():
            got = FrameGraph(model)(*ex)[0]
            tail = FrameGraph(model, skip_tail=True)(*ex)
    assert float((got - want).abs().max()) <= 1e-5
    assert len(tail) == 5 and tail[0].shape == want.shape and tail[1].shape[1] == 1  # decoded, mask, ...


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

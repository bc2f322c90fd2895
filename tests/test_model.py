"""The model: shapes, the paper's ablation switches, identity-initialised new parts, cost of lite."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from odecam.config import ModelConfig, preset
from odecam.model import MotionTransferModel

from conftest import randomize_new_parts


def _run(model, num_refs, b=2):
    s = model.cfg.image_size
    src, drv = torch.rand(b, 3, s, s), torch.rand(b, 3, s, s)
    refs = torch.rand(b, num_refs, 3, s, s) if num_refs else None
    return model(src, drv, refs, solver="unrolled")


@pytest.mark.parametrize("num_refs", [0, 1, 3, 6])
def test_reference_views_and_fusion_weights(tiny_model, num_refs):
    randomize_new_parts(tiny_model)
    with torch.no_grad():
        out = _run(tiny_model, num_refs)
    assert out["prediction"].shape == (2, 3, 64, 64)
    w = out["weights"]
    assert w.shape[:2] == (2, num_refs + 1)
    assert torch.allclose(w.sum(1), torch.ones_like(w.sum(1)), atol=1e-6)  # C~ sums to one per pixel
    if num_refs:
        assert w.std() > 0  # a trained-looking confidence head gives unequal weights


@pytest.mark.parametrize("switch", ["evolution.enabled", "appearance.enabled"])
def test_untrained_new_parts_are_no_ops(switch):
    """F_E and F_A start as identity: switching them off changes nothing until they are trained."""
    torch.manual_seed(3)
    on = MotionTransferModel(preset("tiny")).eval()
    off = MotionTransferModel(preset("tiny").replace(**{switch: False})).eval()
    off.load_state_dict(on.state_dict())
    torch.manual_seed(4)
    a = _run(on, 0)["prediction"]
    torch.manual_seed(4)
    b = _run(off, 0)["prediction"]
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("switch", ["evolution.enabled", "appearance.enabled"])
def test_ablation_switches_change_trained_model(switch):
    torch.manual_seed(3)
    on = MotionTransferModel(preset("tiny")).eval()
    randomize_new_parts(on, 0.5)
    off = MotionTransferModel(preset("tiny").replace(**{switch: False})).eval()
    off.load_state_dict(on.state_dict())
    torch.manual_seed(4)
    a = _run(on, 1)["prediction"]
    torch.manual_seed(4)
    b = _run(off, 1)["prediction"]
    assert (a - b).abs().max() > 1e-4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_first_order_mode_and_dtypes(dtype):
    cfg = preset("tiny").replace(**{"motion.mode": "first_order", "keypoints.estimate_jacobian": True})
    model = MotionTransferModel(cfg).to(dtype).eval()
    s = cfg.image_size
    with torch.no_grad():
        out = model(torch.rand(1, 3, s, s, dtype=dtype), torch.rand(1, 3, s, s, dtype=dtype))
    assert out["prediction"].dtype == dtype
    assert out["jacobian_driving"].shape == (1, 5, 2, 2)
    assert torch.isfinite(out["prediction"]).all()


def test_identity_motion_reconstructs_warp_of_source(tiny_model):
    """Driving == source gives zero-order displacements Delta_i = 0, so T~ = identity."""
    s = tiny_model.cfg.image_size
    img = torch.rand(1, 3, s, s)
    with torch.no_grad():
        out = tiny_model(img, img, solver="unrolled")
    assert out["coarse"].abs().max() < 1e-5


def test_training_pass_backpropagates(tiny_model):
    tiny_model.train()
    randomize_new_parts(tiny_model)
    out = _run(tiny_model, 1)
    out["prediction"].mean().backward()
    grads = {n: p.grad for n, p in tiny_model.named_parameters()}
    assert grads["kp_detector.kp.weight"] is not None and grads["kp_detector.kp.weight"].abs().sum() > 0
    assert grads["generator.evolution.field.out.weight"].abs().sum() > 0


def test_nan_from_ode_falls_back_to_coarse_field(tiny_model):
    with torch.no_grad():
        tiny_model.generator.evolution.field.out.bias.fill_(float("nan"))
        out = _run(tiny_model, 0)
    assert not bool(out["ode_ok"])
    assert torch.equal(out["displacement"], out["coarse"])
    assert torch.isfinite(out["prediction"]).all()


def test_bad_shapes_name_the_dimensions(tiny_model):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        tiny_model(torch.rand(3, 64, 64), torch.rand(1, 3, 64, 64))


def test_lite_costs_at_most_one_gflop_with_one_reference():
    model = MotionTransferModel(preset("lite")).eval()
    s = model.cfg.image_size
    with torch.no_grad():
        state = model.prepare_views(torch.rand(1, 2, 3, s, s))
        with FlopCounterMode(display=False) as fc:
            kp = model.kp_detector(torch.rand(1, 3, s, s))
            model.animate(state, kp["value"], num_views=2)
    gflop = fc.get_total_flops() / 1e9
    assert 0.2 < gflop <= 1.0, gflop


@pytest.mark.parametrize("image_skip", [True, False])
def test_pixel_shuffle_head_replaces_the_last_up_block(image_skip):
    """generator.pixel_shuffle 2: one up-block fewer; the output convolutions run at half resolution with
    4 outputs per channel, and pixel (2i + a, 2j + b) of channel c is their output c * 4 + 2a + b at (i, j)."""
    base = preset("tiny").replace(**{"generator.image_skip": image_skip})
    torch.manual_seed(0)
    model = MotionTransferModel(base.replace(**{"generator.pixel_shuffle": 2})).eval()
    g = model.generator
    assert len(g.up_blocks) == len(MotionTransferModel(base).generator.up_blocks) - 1
    assert g.final.out_channels == 12 and (g.skip_mask is None or g.skip_mask.out_channels == 4)
    with torch.no_grad():
        out = _run(model, 1, b=1)
        assert out["prediction"].shape == (1, 3, 64, 64)
        x = torch.rand(1, g.feature_channels, 16, 16)
        half = g._up(x)
        assert half.shape[2:] == (32, 32)
        rgb = g.decode(x) if not image_skip else g.decode_parts(x)[0]
        logits = g.final(half)
    for c, a, b in ((0, 0, 1), (2, 1, 0), (1, 1, 1)):
        want = torch.sigmoid(logits[0, c * 4 + 2 * a + b, 5, 7])
        assert torch.allclose(rgb[0, c, 10 + a, 14 + b], want, atol=1e-6)


@pytest.mark.parametrize("shuffle,downs", [(2, 0), (4, 1), (3, 2)])
def test_pixel_shuffle_needs_as_many_up_blocks(shuffle, downs):
    with pytest.raises(ValueError, match=rf"generator.pixel_shuffle = {shuffle} must be 1, 2 or 4"):
        preset("tiny").replace(**{"generator.pixel_shuffle": shuffle, "generator.num_down_blocks": downs})


def test_config_roundtrip_and_unknown_keys():
    cfg = preset("lite")
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="unknown preset"):
        preset("nope")


@pytest.mark.parametrize("fast", [False, True])
def test_fused_appearance_flow_is_per_view_f_a_at_n0_and_one_f_a_with_references(fast):
    """``appearance.fused``: F_A once on the views' fusion. With one view it computes what per-view F_A does; with
    references it differs (one T_App for the fused map), on the torch path and the export fast path alike."""
    from odecam.model import fastpath

    torch.manual_seed(3)
    per_view = MotionTransferModel(preset("tiny")).eval()
    randomize_new_parts(per_view, 0.5)
    fused = MotionTransferModel(preset("tiny").replace(**{"appearance.fused": True})).eval()
    fused.load_state_dict(per_view.state_dict())
    outs = {}
    with torch.no_grad(), fastpath.export_fastpath(fast):
        for n in (0, 2):
            for name, model in (("per_view", per_view), ("fused", fused)):
                torch.manual_seed(4)
                outs[name, n] = _run(model, n)["prediction"]
    assert torch.allclose(outs["per_view", 0], outs["fused", 0], atol=1e-6)
    assert (outs["per_view", 2] - outs["fused", 2]).abs().max() > 1e-4
    assert torch.isfinite(outs["fused", 2]).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("jacobian", [False, True])
def test_keypoint_head_split_over_the_hourglass_halves_equals_one_convolution(dtype, jacobian):
    """On the export fast path F_K's heads run as one convolution per half of the hourglass's output (blocked
    convolutions in onnxruntime); the keypoints (and jacobians) are those of the convolution of the concatenation."""
    import dataclasses

    from odecam.model import fastpath
    from odecam.model.keypoint_detector import KeypointDetector

    torch.manual_seed(0)
    kd = KeypointDetector(dataclasses.replace(preset("lite").keypoints, estimate_jacobian=jacobian)).to(dtype).eval()
    if jacobian:  # a trained-looking jacobian head (it starts as the identity)
        torch.nn.init.normal_(kd.jacobian.weight, std=0.05)
    x = torch.rand(2, 3, 64, 64, dtype=dtype)
    with torch.no_grad():
        halves = kd.predictor.parts(x)
        assert [h.shape[1] for h in halves] == [kd.cfg.block_expansion, 3]
        torch.testing.assert_close(torch.cat(halves, dim=1), kd.predictor(x), rtol=0, atol=0)
        eager = kd.from_downscaled(x)
        with fastpath.export_fastpath():
            split = kd.from_downscaled(x)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert sorted(split) == sorted(eager) == (["jacobian", "value"] if jacobian else ["value"])
    for key in eager:
        torch.testing.assert_close(split[key], eager[key], rtol=0, atol=tol)

"""Synthetic-warp pairs: the known field reproduces the warp, landmarks move with the image, and training
with the flow loss logs it."""

import csv
import math

import pytest
import torch
import torch.nn.functional as F

from odecam.errors import OdecamError
from odecam.model.geometry import make_coordinate_grid
from odecam.training.trainer import TrainConfig, Trainer
from odecam.training.warp_supervision import (WarpPairConfig, flow_loss, head_region, make_warp_pairs, region_mask,
                                              target_field)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identity_affine_has_zero_field(dtype):
    affine = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=dtype)
    field = target_field(affine, 8, 8)
    assert field.shape == (1, 2, 8, 8) and field.abs().max() == 0


def test_quarter_turn_field_at_a_corner():
    # q = R(90 deg) p: the top-left corner (-1, -1) samples the source at (1, -1)
    affine = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]])
    field = target_field(affine, 5, 5)
    assert field[0, :, 0, 0].tolist() == pytest.approx([2.0, 0.0])


def test_field_reproduces_the_driving_frame():
    torch.manual_seed(0)
    src = F.interpolate(torch.rand(2, 3, 8, 8), size=64, mode="bilinear", align_corners=False)
    drv, _, affine, _ = make_warp_pairs(src, None, WarpPairConfig(max_rotation=25.0), torch.Generator().manual_seed(1))
    grid = make_coordinate_grid(64, 64)[None] + target_field(affine, 64, 64).permute(0, 2, 3, 1)
    again = F.grid_sample(src, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
    torch.testing.assert_close(again, drv)
    assert flow_loss(target_field(affine, 16, 16), affine).item() == 0.0
    assert flow_loss(torch.zeros(2, 2, 16, 16), affine).item() > 0.01


def test_landmarks_move_with_the_image():
    size = 65
    src = torch.zeros(1, 3, size, size)
    r, c = 20, 44  # a bright dot at row 20, column 44
    src[0, :, r - 1:r + 2, c - 1:c + 2] = 1.0
    lm = torch.full((1, 68, 2), float("nan"))
    lm[0, 30] = torch.tensor([2 * c / (size - 1) - 1, 2 * r / (size - 1) - 1])
    cfg = WarpPairConfig(max_rotation=30.0, max_scale=0.1, max_translation=0.1)
    drv, lm_d, _, _ = make_warp_pairs(src, lm, cfg, torch.Generator().manual_seed(3))
    img = drv[0, 0]
    ys, xs = torch.nonzero(img > 0.3, as_tuple=True)
    w = img[ys, xs]
    centre = torch.stack([(xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()])
    expect = (lm_d[0, 30] + 1) * (size - 1) / 2
    assert torch.dist(centre, expect).item() < 1.0
    assert torch.isnan(lm_d[0, 0]).all()


def _face_landmarks(n: int, cx: float = 0.0, cy: float = -0.1, radius: float = 0.3) -> torch.Tensor:
    """(n, 68, 2): a ring of 68 points, a 'face' of the given radius."""
    t = torch.linspace(0, 2 * math.pi, 69)[:-1]
    ring = torch.stack([cx + radius * torch.cos(t), cy + radius * torch.sin(t)], -1)
    return ring.expand(n, 68, 2).clone()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_head_only_pairs_move_the_face_and_keep_the_background(dtype):
    torch.manual_seed(0)
    src = F.interpolate(torch.rand(3, 3, 8, 8, dtype=dtype), size=96, mode="bilinear", align_corners=False)
    lm = _face_landmarks(3).to(dtype)
    lm[2] = float("nan")  # no face found: the whole frame moves, as without head_only
    cfg = WarpPairConfig(max_rotation=25.0)
    drv, lm_d, affine, region = make_warp_pairs(src, lm, cfg, torch.Generator().manual_seed(5), head_only=True)
    assert region.shape == (3, 4) and torch.isinf(region[2, 2:]).all()
    field = target_field(affine, 96, 96, region)
    # far from the face (the corners) the first two items do not move at all
    assert field[:2, :, 0, 0].abs().max() == 0 and field[:2, :, -1, -1].abs().max() == 0
    torch.testing.assert_close(field[2], target_field(affine, 96, 96)[2])  # no landmarks: whole frame
    # the driving frame is the source sampled along that field
    grid = make_coordinate_grid(96, 96, dtype)[None] + field.permute(0, 2, 3, 1)
    torch.testing.assert_close(F.grid_sample(src, grid, padding_mode="reflection", align_corners=True), drv)
    # the moved landmarks sit where the mask is 1, so they follow the similarity exactly: p + T*(p) = l_S
    mask = region_mask(region, 96, 96)
    assert mask.min() >= 0 and mask.max() <= 1
    d = (lm_d[:2] - region[:2, None, :2]).norm(dim=-1)
    assert (d < region[:2, None, 2]).all()
    back = torch.einsum("nij,npj->npi", affine[:2, :, :2], lm_d[:2]) + affine[:2, None, :, 2]
    torch.testing.assert_close(back, lm[:2], atol=1e-5, rtol=0)


def test_head_region_is_infinite_without_landmarks_and_grows_with_the_face():
    affine = torch.tensor([[[1.0, 0.0, 0.1], [0.0, 1.0, 0.0]]]).expand(2, 2, 3)
    lm = torch.cat([_face_landmarks(1, radius=0.2), _face_landmarks(1, radius=0.4)])
    region = head_region(affine, lm)
    assert region[0, 2].item() == pytest.approx(1.6 * 0.2, rel=1e-4)
    assert region[1, 3].item() == pytest.approx(2.6 * 0.4, rel=1e-4)
    assert region[0, 0].item() == pytest.approx(-0.1, abs=1e-6)  # the face lands at A^-1 (c_S - t)


def test_bad_warp_region_is_refused():
    with pytest.raises(OdecamError, match="warp_region"):
        TrainConfig.from_dict({"loss": {"warp_region": "sky"}})


def test_training_logs_the_flow_loss(tmp_path):
    cfg = TrainConfig.from_dict({
        "model": "tiny", "num_refs": 1, "random_refs": True, "batch_size": 2, "steps": 2, "checkpoint_every": 100,
        "log_every": 1, "data": ["procedural:8"],
        "loss": {"perceptual": 0.0, "l1": 1.0, "flow": 10.0, "warp_prob": 0.5, "warp_rotation": 15.0},
    })
    t = Trainer(cfg, tmp_path / "run", progress=False)
    last = t.train()
    assert last["flow"] > 0 and math.isfinite(last["total"])
    rows = list(csv.DictReader(open(tmp_path / "run" / "losses.csv")))
    assert float(rows[-1]["flow"]) > 0

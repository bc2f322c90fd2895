"""Keypoint-field consistency: fields are sampled where the driving keypoints are, the loss is zero for a field
that carries every keypoint and mean |Delta| for one that carries none, only the field gets gradients, and a
training step reports it."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from odecam.model.geometry import make_coordinate_grid
from odecam.training.keypoint_field_loss import field_at, keypoint_field_loss

from conftest import train_tiny


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_field_at_reads_a_linear_field_exactly(dtype):
    grid = make_coordinate_grid(9, 13, dtype)  # (h, w, 2) = (x, y) in [-1, 1]
    field = torch.stack([0.5 * grid[..., 0] + 0.1, -0.25 * grid[..., 1]], 0)[None]  # (1, 2, 9, 13)
    pts = torch.tensor([[[0.33, -0.71], [-1.0, 1.0], [0.0, 0.0]]], dtype=dtype)
    expected = torch.stack([0.5 * pts[..., 0] + 0.1, -0.25 * pts[..., 1]], -1)
    torch.testing.assert_close(field_at(field, pts), expected)  # bilinear sampling is exact on linear fields


def test_loss_is_zero_for_a_field_that_carries_each_keypoint_and_mean_delta_for_none():
    kp_d = torch.tensor([[[-0.5, -0.5], [0.5, 0.25]]])  # (B=1, K=2, 2)
    kp_v = kp_d + torch.tensor([[[0.1, 0.0], [0.0, -0.2]]])  # Delta_1 = (0.1, 0), Delta_2 = (0, -0.2)
    h = w = 33  # keypoints on grid nodes, so a field that is Delta_i near x_D^i is exact there
    grid = make_coordinate_grid(h, w)
    near_first = (grid[..., 0] < 0).float()  # left half carries keypoint 1, right half keypoint 2
    field = torch.stack([0.1 * near_first, -0.2 * (1 - near_first)], 0)[None]
    assert keypoint_field_loss(field, kp_v, kp_d).item() == pytest.approx(0.0, abs=1e-7)
    still = torch.zeros(1, 2, h, w)
    assert keypoint_field_loss(still, kp_v, kp_d).item() == pytest.approx((0.1 + 0.2) / 4)


def test_driving_keypoints_are_shared_by_the_views_of_an_item():
    kp_d = torch.zeros(2, 3, 2)  # B = 2 driving frames
    kp_v = torch.full((4, 3, 2), 0.3)  # B*V = 4 views (V = 2)
    field = torch.full((4, 2, 8, 8), 0.3)
    assert keypoint_field_loss(field, kp_v, kp_d).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="multiple"):
        keypoint_field_loss(torch.zeros(5, 2, 8, 8), torch.zeros(5, 3, 2), kp_d)
    with pytest.raises(ValueError, match=r"\(B, 2, h, w\)"):
        field_at(torch.zeros(2, 3, 8, 8), kp_d)


def test_only_the_field_gets_gradients():
    field = torch.zeros(1, 2, 8, 8, requires_grad=True)
    kp_v = torch.full((1, 4, 2), 0.2, requires_grad=True)
    kp_d = torch.zeros(1, 4, 2, requires_grad=True)
    keypoint_field_loss(field, kp_v, kp_d).backward()
    assert field.grad is not None and field.grad.abs().sum() > 0
    assert kp_v.grad is None and kp_d.grad is None  # F_K is taught by its own terms, not by the field


class _Pairs(Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        img = torch.rand(3, 64, 64, generator=g)
        return {"source": img, "driving": torch.roll(img, 5, dims=-1), "refs": torch.zeros(0, 3, 64, 64)}


def test_training_step_logs_the_keypoint_field_loss(tmp_path):
    rows = train_tiny(tmp_path / "run", _Pairs(), {"kp_field": 5.0})
    assert len(rows) == 2
    for r in rows:
        value = float(r["kp_field"])
        assert 0.0 < value < 5.0 * 2.0  # keypoints in [-1, 1]: |Delta| < 2 per coordinate

"""Mouth-region loss: the crop sits on the mouth landmarks, items without a face are left out, its value is the
frame losses on the crop, and a training step reports it."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from odecam.training.mouth_loss import MOUTH_LANDMARKS, crop, mouth_boxes, mouth_loss

from conftest import train_tiny


def _landmarks(cx: float, cy: float, half_width: float, dtype=torch.float32) -> torch.Tensor:
    """(1, 68, 2): the mouth's 20 points on a horizontal segment centred at (cx, cy), the rest elsewhere."""
    lm = torch.full((1, 68, 2), -0.9, dtype=dtype)
    xs = torch.linspace(cx - half_width, cx + half_width, 20, dtype=dtype)
    lm[0, MOUTH_LANDMARKS, 0] = xs
    lm[0, MOUTH_LANDMARKS, 1] = cy
    return lm


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_box_is_centred_on_the_mouth_and_scaled_by_its_width(dtype):
    centre, half, valid = mouth_boxes(_landmarks(0.1, 0.4, 0.15, dtype))
    torch.testing.assert_close(centre[0], torch.tensor([0.1, 0.4], dtype=dtype))
    assert half[0].item() == pytest.approx(1.6 * 0.15) and bool(valid[0])
    _, tiny, _ = mouth_boxes(_landmarks(0.0, 0.0, 0.01, dtype))
    assert tiny[0].item() == pytest.approx(0.08)  # clamped: a mouth a few pixels wide still gets a crop


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_crop_shows_what_lies_at_the_mouth(dtype):
    img = torch.zeros(1, 3, 64, 64, dtype=dtype)
    img[0, :, 44:50, 36:42] = 1.0  # a bright square around pixel (38.5, 46.5): (0.222, 0.476) in [-1, 1] units
    c = torch.tensor([[38.5 / 31.5 - 1, 46.5 / 31.5 - 1]], dtype=dtype)
    out = crop(img, c, torch.tensor([0.2], dtype=dtype), 16)
    assert out.shape == (1, 3, 16, 16) and out.dtype == dtype
    assert out[0, 0, 6:10, 6:10].min() > 0.99  # the square fills the middle of the crop
    assert out[0, 0, 0, 0] < 0.01


def test_loss_is_l1_on_the_crop_and_skips_items_without_landmarks():
    pred, drv = torch.zeros(2, 3, 64, 64), torch.zeros(2, 3, 64, 64)
    drv[:, :, 40:56, 20:44] = 0.5  # the mouth region differs by 0.5
    drv[:, :, :8] = 1.0  # far from the mouth: not in the crop
    lm = torch.cat([_landmarks(0.0, 0.5, 0.1), _landmarks(0.0, 0.5, 0.1)])
    lm[1] = float("nan")
    loss = mouth_loss(pred, drv, lm, vgg=None, l1_weight=2.0, size=32)
    assert loss.item() == pytest.approx(2.0 * 0.5, rel=1e-4)
    assert mouth_loss(pred, drv, lm[1:], size=32).item() == 0.0


class _FacesWithMouths(Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        img = torch.rand(3, 64, 64, generator=g)
        lm = _landmarks(0.0, 0.4, 0.2)[0]
        return {"source": img, "driving": img.flip(-1).clone(), "refs": torch.zeros(0, 3, 64, 64),
                "source_landmarks": lm, "driving_landmarks": lm}


def test_training_step_logs_the_mouth_loss(tmp_path):
    rows = train_tiny(tmp_path / "run", _FacesWithMouths(), {"mouth": 3.0})
    assert len(rows) == 2
    for r in rows:
        assert 3.0 * 0.1 < float(r["mouth"]) < 3.0 * 0.6  # 3 x L1 of uniform noise crops (about 1/3)

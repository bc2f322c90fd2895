"""Landmark-guided F_K: targets are landmark-group means, missing faces are skipped, and training with the
loss pulls the tied keypoints onto the landmarks."""

import csv

import pytest
import torch
from torch.utils.data import Dataset

from odecam.training.landmark_loss import LANDMARK_GROUPS, LandmarkTargets, landmark_loss
from odecam.training.trainer import TrainConfig, Trainer, _open_loss_log


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_targets_are_group_means(dtype):
    lm = torch.zeros(1, 68, 2, dtype=dtype)
    lm[0, 37] = torch.tensor([0.2, -0.4], dtype=dtype)
    lm[0, 38] = torch.tensor([0.4, -0.2], dtype=dtype)
    lm[0, 30] = torch.tensor([0.0, 0.1], dtype=dtype)
    t = LandmarkTargets()(lm)
    assert t.shape == (1, len(LANDMARK_GROUPS), 2) and t.dtype == dtype
    torch.testing.assert_close(t[0, 0], torch.tensor([0.3, -0.3], dtype=dtype))
    torch.testing.assert_close(t[0, 2], torch.tensor([0.0, 0.1], dtype=dtype))


def test_loss_value_and_missing_faces():
    m = LandmarkTargets().num_tied
    lm = torch.zeros(3, 68, 2)
    lm[1] = float("nan")  # no face in image 1
    kp = torch.zeros(3, 10, 2)
    kp[:, :m] = 0.5  # every tied keypoint 0.5 off in x and y
    kp[1] = 100.0  # ignored: no landmarks
    loss, n = landmark_loss(kp, lm)
    assert n == 2
    assert loss.item() == pytest.approx(0.5)
    loss_none, n_none = landmark_loss(kp[1:2], lm[1:2])
    assert n_none == 0 and loss_none.item() == 0.0


def test_refuses_too_few_keypoints_and_bad_shapes():
    with pytest.raises(ValueError, match="K=5"):
        landmark_loss(torch.zeros(1, 5, 2), torch.zeros(1, 68, 2))
    with pytest.raises(ValueError, match=r"\(B, 68, 2\)"):
        landmark_loss(torch.zeros(1, 10, 2), torch.zeros(1, 5, 2))


class _FixedLandmarks(Dataset):
    """Random-texture frames whose 'landmarks' put every tied keypoint at a fixed spot (a known answer)."""

    def __init__(self, size: int, target: torch.Tensor) -> None:
        self.size, self.lm = size, target

    def __len__(self) -> int:
        return 64

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        img = torch.rand(3, self.size, self.size, generator=g)
        return {"source": img, "driving": img.flip(-1).clone(), "refs": torch.zeros(0, 3, self.size, self.size),
                "source_landmarks": self.lm, "driving_landmarks": self.lm}


def test_training_pulls_tied_keypoints_to_landmarks(tmp_path):
    torch.manual_seed(0)
    lm = torch.zeros(68, 2)
    for _, idx in LANDMARK_GROUPS:
        lm[list(idx)] = torch.tensor([0.6, -0.5])
    cfg = TrainConfig.from_dict({
        "model": "tiny", "num_refs": 0, "batch_size": 2, "steps": 20, "checkpoint_every": 1000, "log_every": 1,
        "lr": 1e-2, "model_overrides": {"keypoints.num_kp": 10},
        "loss": {"perceptual": 0.0, "l1": 1.0, "equivariance_value": 0.0, "equivariance_jacobian": 0.0,
                 "landmarks": 10.0},
    })
    t = Trainer(cfg, tmp_path / "run", dataset=_FixedLandmarks(64, lm), progress=False)
    x = _FixedLandmarks(64, lm)[0]["source"].unsqueeze(0)
    target = lm[37]  # every tied group sits at the same point

    def error() -> float:
        t.model.eval()
        with torch.no_grad():
            return (t.model.kp_detector(x)["value"][0, :8] - target).abs().mean().item()

    before = error()
    t.model.train()
    t.train()
    after = error()
    assert before > 0.3 and after < 0.5 * before, (before, after)
    rows = list(csv.DictReader(open(tmp_path / "run" / "losses.csv")))
    first, last = ([float(r["landmarks"]) for r in part] for part in (rows[:5], rows[-5:]))
    assert len(rows) == 20 and sum(last) < sum(first), (first, last)  # means over 5 steps: one batch is noisy


def test_old_loss_log_gets_new_columns(tmp_path):
    p = tmp_path / "losses.csv"
    p.write_text("step,total,l1\n10,1.5,0.2\n")
    _open_loss_log(p, ["step", "total", "l1", "landmarks"])
    rows = list(csv.DictReader(open(p)))
    assert rows == [{"step": "10", "total": "1.5", "l1": "0.2", "landmarks": "nan"}]

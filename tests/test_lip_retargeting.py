"""Lip retargeting: the avatar's mouth opens g times the driver's opening beyond neutral and nothing else
moves differently; a closing mouth is followed as it is; the default applies only to models whose checkpoint
says which keypoints sit on the inner lips, and that claim travels in the checkpoint, checked."""

from __future__ import annotations

import json

import pytest
import torch

from odecam.checkpoint import keypoint_roles, load_checkpoint, save_checkpoint
from odecam.config import DEFAULT_LIP_GAIN, preset
from odecam.engine.animator import lip_retargeting
from odecam.engine.relative_motion import LIP_ROLES, RelativeMotion
from odecam.errors import CheckpointError, OdecamError
from odecam.model import MotionTransferModel

UP, LO = 5, 6


def _kp(dtype, gap: float = 0.1) -> torch.Tensor:
    kp = torch.linspace(-0.5, 0.5, 16, dtype=dtype).view(1, 8, 2).clone()
    kp[0, UP] = torch.tensor([0.0, 0.3], dtype=dtype)
    kp[0, LO] = torch.tensor([0.0, 0.3 + gap], dtype=dtype)
    return kp


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("gain", [1.0, 1.5, 2.0])
def test_mouth_opens_gain_times_the_drivers_opening(dtype, gain):
    source = _kp(dtype, gap=0.05)
    motion = RelativeMotion(source, adapt_scale=False, lip_gain=gain, lips=(UP, LO))
    neutral = _kp(dtype, gap=0.1)
    assert torch.equal(motion(neutral)[0], source)  # the neutral pose gives the avatar as it is
    opened = neutral.clone()
    opened[0, LO, 1] += 0.08  # the driver's lower lip drops by 0.08
    opened[0, 0] += 0.02  # and another keypoint moves a little
    out, _ = motion(opened)
    reference = RelativeMotion(source, adapt_scale=False)
    reference.set_neutral(neutral)
    plain, _ = reference(opened)
    gap = lambda k: (k[0, LO] - k[0, UP])[1].item()  # noqa: E731
    assert gap(out) - gap(source) == pytest.approx(gain * 0.08, abs=1e-6)
    assert (out[0, UP] + out[0, LO]).tolist() == pytest.approx((plain[0, UP] + plain[0, LO]).tolist(), abs=1e-6)
    others = [i for i in range(8) if i not in (UP, LO)]
    assert torch.equal(out[0, others], plain[0, others])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_mouth_closing_beyond_neutral_is_followed_as_it_is(dtype):
    source, neutral = _kp(dtype, 0.05), _kp(dtype, 0.1)
    closed = neutral.clone()
    closed[0, LO, 1] -= 0.04
    motion = RelativeMotion(source, adapt_scale=False, lip_gain=3.0, lips=(UP, LO))
    motion.set_neutral(neutral)
    out, _ = motion(closed)
    plain = RelativeMotion(source, adapt_scale=False)
    plain.set_neutral(neutral)
    assert torch.equal(out, plain(closed)[0])  # no amplified closing: the lips never cross


def test_a_gain_needs_the_lip_indices():
    with pytest.raises(ValueError, match="lips"):
        RelativeMotion(_kp(torch.float32), lip_gain=2.0)


def _model(roles=()) -> MotionTransferModel:
    torch.manual_seed(0)
    m = MotionTransferModel(preset("tiny"))
    m.keypoint_roles = tuple(roles)
    return m


TIED = ("upper_eyelid_right", "upper_eyelid_left", "nose_tip", "mouth_corner_right", "mouth_corner_left",
        "inner_upper_lip", "inner_lower_lip", "chin")


def test_default_gain_only_for_models_with_lip_keypoints():
    assert lip_retargeting(_model(TIED), None) == ((5, 6), DEFAULT_LIP_GAIN)
    assert lip_retargeting(_model(TIED), 1.0) == ((5, 6), 1.0)
    assert lip_retargeting(_model(), None) == (None, 1.0)  # unsupervised F_K: off, silently
    with pytest.raises(OdecamError, match="--lip-gain 2 needs a model whose keypoints are tied to the inner lips"):
        lip_retargeting(_model(), 2.0)
    with pytest.raises(OdecamError, match="out of range"):
        lip_retargeting(_model(TIED), 7.0)
    assert all(r in TIED for r in LIP_ROLES)


def test_the_shipped_default_has_lip_keypoints():
    from odecam.engine.weights import load_model

    model = load_model().model
    assert lip_retargeting(model, None) == ((5, 6), DEFAULT_LIP_GAIN)


def test_roles_travel_in_the_checkpoint(tmp_path):
    roles = TIED[: preset("tiny").keypoints.num_kp]
    path = save_checkpoint(_model(roles), tmp_path / "m.safetensors")
    assert load_checkpoint(path).keypoint_roles == roles
    plain = save_checkpoint(_model(), tmp_path / "plain.safetensors")
    assert load_checkpoint(plain).keypoint_roles == ()


@pytest.mark.parametrize("text", ['{"a": 1}', '["x"', json.dumps(["a"] * 11), json.dumps(["../etc"]),
                                  json.dumps([3]), json.dumps(["a" * 41])])
def test_hostile_roles_are_refused_in_one_sentence(text):
    with pytest.raises(CheckpointError, match="invalid keypoint roles"):
        keypoint_roles({"keypoint_roles": text}, num_kp=10, source="evil.safetensors")


def test_training_with_landmarks_writes_the_roles(tmp_path):
    from torch.utils.data import Dataset

    from conftest import train_tiny

    class Faces(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            img = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(i))
            lm = torch.rand(68, 2, generator=torch.Generator().manual_seed(i)) - 0.5
            return {"source": img, "driving": img.flip(-1).clone(), "refs": torch.zeros(0, 3, 64, 64),
                    "source_landmarks": lm, "driving_landmarks": lm}

    train_tiny(tmp_path / "run", Faces(), {"landmarks": 1.0}, steps=1, checkpoint_every=1,
               model_overrides={"keypoints.num_kp": 10})
    assert load_checkpoint(tmp_path / "run" / "last.safetensors").keypoint_roles == TIED

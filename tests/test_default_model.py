"""The shipped default model really animates: on the held-out carphone clip it beats the no-motion
baseline in video reconstruction, and the demo says it uses it."""

import pytest
import torch

from odecam.assets import DEFAULT_WEIGHTS
from odecam.engine.weights import load_model
from odecam.evaluation.protocols import evaluate, load_videos, model_method, no_motion

from conftest import carphone_path

pytestmark = pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="no trained default model is installed")


def test_default_is_loaded_and_described():
    loaded = load_model()
    assert loaded.trained and "trained default" in loaded.description


@pytest.mark.parametrize("num_refs", [0, 3])
def test_default_beats_no_motion_on_held_out_clip(num_refs):
    torch.set_num_threads(1)
    model = load_model().model
    videos = load_videos(carphone_path(), model.cfg.image_size, max_frames=120)
    kw = dict(fid=False, face_metrics=False)
    ours = evaluate(model_method(model), videos, "reconstruction", num_refs, **kw)
    base = evaluate(no_motion, videos, "reconstruction", num_refs, **kw)
    assert ours.frames == base.frames == 119
    if num_refs == 3:
        assert ours.metrics["l1"] < 0.8 * base.metrics["l1"]
        assert ours.metrics["psnr"] > base.metrics["psnr"] + 1.0
    else:
        # N=0 does not beat no-motion yet (benchmarks/results/EVALUATION.md); guard against regressions only
        assert ours.metrics["l1"] < base.metrics["l1"] * 1.3

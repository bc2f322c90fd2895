"""odecam eval: protocols, JSON keys, saved frame pairs, the no-motion baseline, bad input."""

import json
import subprocess
import sys

import cv2
import pytest
import torch

from odecam.checkpoint import save_checkpoint
from odecam.config import preset
from odecam.evaluation.protocols import evaluate, load_videos, no_motion, reference_indices
from odecam.model import MotionTransferModel

from conftest import carphone_path


def _odecam(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "odecam.cli", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def tiny_ckpt(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(MotionTransferModel(preset("tiny")), tmp_path / "tiny.safetensors")


def test_reconstruction_json_and_frames(tmp_path, tiny_ckpt):
    out = tmp_path / "m.json"
    frames = tmp_path / "frames"
    res = _odecam("eval", "--checkpoint", str(tiny_ckpt), "--data", str(carphone_path()), "--protocol",
                  "reconstruction", "--refs", "3", "--json", str(out), "--save-frames", str(frames), "--max-frames", "6")
    assert res.returncode == 0, res.stderr
    m = json.loads(out.read_text())
    for key in ("l1", "psnr", "ssim", "ms_ssim", "fid", "akd", "csim"):
        assert key in m
    assert m["frames"] == 5 and m["csim"] is None  # CSIM is for animation
    assert 0 < m["l1"] < 1 and 0 < m["psnr"] < 60 and m["fid"] is not None
    assert "| no motion (output = source) |" in res.stdout and "| method |" in res.stdout
    nm = m["baselines"]["no motion (output = source)"]
    assert 0 < nm["l1"] < 0.2
    real = sorted(frames.glob("*_real.png"))
    fake = sorted(frames.glob("*_fake.png"))
    assert [p.name for p in real][:2] == ["00000_real.png", "00001_real.png"] and len(fake) == 5
    assert cv2.imread(str(real[0])).shape == (64, 64, 3)  # the resolution the metrics saw


def test_no_motion_baseline_known_answer():
    videos = load_videos(carphone_path(), 64, max_frames=5)
    r = evaluate(no_motion, videos, "reconstruction", 0, fid=False, face_metrics=False)
    frames = videos[0].frames
    expected = (frames[1:] - frames[:1]).abs().mean().item()
    assert r.frames == 4 and abs(r.metrics["l1"] - expected) < 1e-6


def test_akd_counts_frame_pairs_not_rows():
    videos = load_videos(carphone_path(), 128, max_frames=4)
    r = evaluate(no_motion, videos, "reconstruction", 0, fid=False, face_metrics=True)
    assert r.extra["akd_pairs"] + r.extra["akd_skipped"] == 3
    assert r.extra["akd_pairs"] >= 1 and r.metrics["akd"] > 0  # the head moves between frame 0 and later ones


def test_animation_needs_two_videos_and_reports_csim(tmp_path, tiny_ckpt):
    res = _odecam("eval", "--checkpoint", str(tiny_ckpt), "--data", str(carphone_path()), "--protocol", "animation",
                  "--max-frames", "4")
    assert res.returncode == 2 and "two videos" in res.stderr


def test_reference_indices_spread_over_video():
    assert reference_indices(120, 3) == [30, 60, 90]
    assert reference_indices(120, 0) == []
    assert all(0 < i < 120 for i in reference_indices(10, 6))


def test_bad_data_path(tmp_path, tiny_ckpt):
    res = _odecam("eval", "--checkpoint", str(tiny_ckpt), "--data", str(tmp_path / "nothing"))
    assert res.returncode == 2 and "does not exist" in res.stderr and "Traceback" not in res.stderr

"""odecam eval: protocols, JSON keys, saved frame pairs, the no-motion baseline, bad input."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from odecam.checkpoint import save_checkpoint
from odecam.config import preset
from odecam.evaluation.protocols import evaluate, load_videos, no_motion, reference_indices
from odecam.model import MotionTransferModel

from conftest import carphone_path

EXPRESSION_KEYS = ("mouth_corr", "eyes_corr", "roll_corr", "yaw_corr", "pitch_corr", "motion_range", "face_rate",
                   "expression_pairs", "expression_frames", "driver_faces", "avatar_faces")


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
    for key in EXPRESSION_KEYS:
        assert key in m and key in nm
    assert m["expression_frames"] == 5 and 0 <= m["expression_pairs"] <= 5
    assert set(m["motion_range"]) == {"mouth", "eyes", "roll", "yaw", "pitch"}
    assert m["akd_pairs"] + m["akd_skipped"] == 5 and "CSIM ↑" in res.stdout
    assert m["not_applicable"]["csim"].startswith("CSIM is identity preservation")
    assert "Frame pairs measured / skipped" in res.stdout and "face rate" in res.stdout


def test_photo_animation_end_to_end(tmp_path, tiny_ckpt):
    out = tmp_path / "a.json"
    frames = tmp_path / "frames"
    res = _odecam("eval", "--checkpoint", str(tiny_ckpt), "--data", str(carphone_path()), "--protocol", "animation",
                  "--source", "astronaut", "--max-frames", "5", "--json", str(out), "--save-frames", str(frames))
    assert res.returncode == 0, res.stderr
    assert "source astronaut: face found" in res.stdout
    m = json.loads(out.read_text())
    assert m["protocol"] == "animation" and m["source"] == "astronaut" and m["frames"] == 5 and m["refs"] == 0
    for key in EXPRESSION_KEYS:
        assert key in m
    assert m["driver_faces"] >= 4  # carphone framed like live: the driver's face is found
    assert m["l1"] is None and m["fid"] is None and m["akd"] is None and m["csim_pairs"] + m["csim_skipped"] == 5
    assert "no ground-truth frame" in m["not_applicable"]["l1"] and "FID" in m["not_applicable"]["fid"]
    nm = m["baselines"]["no motion (output = source)"]
    assert nm["face_rate"] == 1.0 and nm["mouth_corr"] is None and nm["motion_range"]["roll"] == 0.0
    assert "—¹" in res.stdout and "¹ animation: the driver is another person" in res.stdout
    assert len(list(frames.glob("*_real.png"))) == 5 and len(list(frames.glob("*_fake.png"))) == 5
    real0 = cv2.imread(str(frames / "00000_real.png"))
    assert real0.shape == (64, 64, 3) and 0 < m["source_crop"][2] < 512  # the photo was framed, not centre-cropped


def test_photo_animation_in_process_is_the_photo_for_no_motion(tmp_path):
    from odecam.evaluation.animation import load_framed_videos, load_source_photo

    photo = load_source_photo("astronaut", 128)
    videos = load_framed_videos(carphone_path(), 128, max_frames=4)
    r = evaluate(no_motion, videos, "animation", 0, fid=False, source=photo.tensor, save_frames=tmp_path)
    assert r.frames == 4 and r.metrics["csim"] > 0.99 and r.expression["driver_faces"] == 4
    fake = cv2.cvtColor(cv2.imread(str(tmp_path / "00003_fake.png")), cv2.COLOR_BGR2RGB)
    assert abs(fake.astype(float) / 255 - photo.tensor[0].permute(1, 2, 0).numpy()).max() < 1 / 255 + 1e-6


def test_photo_animation_levels_the_leaning_driver_for_fk_only(tmp_path):
    """carphone leans ~14 degrees: the model gets (levelled frame, roll) items, the scored frames are unturned."""
    from odecam.evaluation.animation import load_framed_videos

    videos = load_framed_videos(carphone_path(), 128, max_frames=4)
    plain = load_framed_videos(carphone_path(), 128, max_frames=4, level=False)
    assert torch.equal(videos[0].frames, plain[0].frames) and plain[0].levelled == {}
    assert sorted(videos[0].levelled) == [0, 1, 2, 3]
    items = list(videos[0].driving_inputs())
    assert all(isinstance(it, tuple) and 8 < it[1] < 20 and it[0].shape == (3, 128, 128) for it in items)
    assert not torch.equal(items[0][0], videos[0].frames[0])
    seen = []

    def method(views, driving, relative):
        for d in driving:
            seen.append(d)
            yield views[:, 0]

    evaluate(method, videos, "animation", 0, fid=False, face_metrics=False, source=videos[0].frames[:1],
             save_frames=tmp_path)
    assert len(seen) == 4 and all(isinstance(d, tuple) for d in seen)
    real = cv2.cvtColor(cv2.imread(str(tmp_path / "00000_real.png")), cv2.COLOR_BGR2RGB)
    from odecam.engine.images import to_image

    assert np.array_equal(real, to_image(videos[0].frames[0]))  # the driver is scored and saved unturned


@pytest.mark.parametrize("args, phrase", [
    (("--protocol", "reconstruction", "--source", "astronaut"), "use it with --protocol animation"),
    (("--protocol", "animation", "--source", "astronaut", "--refs", "2"), "drop --refs 2"),
    (("--protocol", "animation", "--source", "no/such/photo.png"), "does not exist"),
])
def test_photo_animation_mistakes(tiny_ckpt, args, phrase):
    res = _odecam("eval", "--checkpoint", str(tiny_ckpt), "--data", str(carphone_path()), *args, "--max-frames", "3")
    assert res.returncode == 2 and phrase in res.stderr and "Traceback" not in res.stderr


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
    assert "'carphone' (the built-in clip)" in res.stderr


def test_carphone_names_the_built_in_clip(tmp_path):
    from pathlib import Path

    from odecam.assets import default_driving_path, video_path
    from odecam.evaluation.protocols import list_videos

    assert video_path("carphone") == default_driving_path() == Path(carphone_path())
    assert list_videos("carphone") == [default_driving_path()]  # odecam eval --data carphone
    assert video_path(tmp_path / "carphone") == tmp_path / "carphone"  # a path is a path, even one named so
    (tmp_path / "carphone").write_bytes(b"")
    with pytest.MonkeyPatch.context() as mp:  # a file called carphone in the working folder wins
        mp.chdir(tmp_path)
        assert video_path("carphone") == Path("carphone")

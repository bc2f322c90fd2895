"""scripts/ship_default.py: install a run's weights as the default, optionally at another image size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from odecam.assets import DEFAULT_WEIGHTS
from odecam.checkpoint import load_checkpoint, read_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_ship_at_another_size_keeps_weights_and_map_sizes(tmp_path):
    out = tmp_path / "shipped.safetensors"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "ship_default.py"), str(DEFAULT_WEIGHTS), "a test run",
                        "--image-size", "128", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    src_cfg, _, _ = read_checkpoint(DEFAULT_WEIGHTS)
    cfg, _, meta = read_checkpoint(out)
    assert cfg.image_size == 128
    ratio = src_cfg.image_size / 128
    # F_K's and F_C's maps keep their sizes: input side x scale factor is unchanged
    assert cfg.keypoints.scale_factor * 128 == src_cfg.keypoints.scale_factor * src_cfg.image_size
    assert cfg.motion.scale_factor == src_cfg.motion.scale_factor * ratio
    assert meta["trained_on"].startswith("a test run")
    step = read_checkpoint(DEFAULT_WEIGHTS)[2]["step"]
    assert meta["trained_on"].count(f"{step} steps") == 1  # the step count said once
    a, b = load_file(str(DEFAULT_WEIGHTS)), load_file(str(out))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    model = load_checkpoint(out).eval()
    assert model.keypoint_roles == load_checkpoint(DEFAULT_WEIGHTS).keypoint_roles != ()  # lip retargeting kept
    with torch.no_grad():
        kp = model.kp_detector(torch.rand(1, 3, 128, 128))["value"]
    assert kp.shape == (1, cfg.keypoints.num_kp, 2) and torch.isfinite(kp).all()


def test_landmark_roles_flag_records_them_for_an_older_checkpoint(tmp_path):
    from odecam.checkpoint import save_checkpoint
    from odecam.training.landmark_loss import LANDMARK_GROUPS

    old = load_checkpoint(DEFAULT_WEIGHTS)
    old.keypoint_roles = ()  # as runs trained before the roles were recorded
    src = save_checkpoint(old, tmp_path / "old.safetensors")
    assert load_checkpoint(src).keypoint_roles == ()
    out = tmp_path / "shipped.safetensors"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "ship_default.py"), str(src), "a test run",
                        "--landmark-roles", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(out).keypoint_roles == tuple(name for name, _ in LANDMARK_GROUPS)
    # shipped again from its own metadata: no step was ever recorded, so the note says none
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "ship_default.py"), str(out), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    note = read_checkpoint(out)[2]["trained_on"]
    assert note == "a test run", note  # no step recorded: none invented

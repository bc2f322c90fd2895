"""Training: runs end to end, resumes after an interruption, scales out with DDP, refuses bad data."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from odecam.training.trainer import TrainConfig, Trainer, plot_losses, weights_digest

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "model": "tiny", "num_refs": 1, "random_refs": True, "batch_size": 2, "steps": 4, "checkpoint_every": 2, "log_every": 1,
    "data": ["procedural:20"],
    "loss": {"perceptual": 0.003, "perceptual_scales": [0.5], "l1": 10.0},
}


def _odecam(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "odecam.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_train_then_resume_after_interruption(tmp_path):
    cfg = TrainConfig.from_dict(TINY)
    run = tmp_path / "run"
    t = Trainer(cfg, run, progress=False)
    t.train(max_steps=3)  # "interrupted" after step 3: the last checkpoint is step 2
    state = torch.load(run / "trainer_state.pt", weights_only=True)
    assert state["step"] in (2, 3)
    resumed = Trainer(TrainConfig.from_dict(TINY), run, progress=False)
    assert resumed.step == state["step"]  # picks up where the last checkpoint left off
    last = resumed.train()
    assert resumed.step == 4 and last["total"] > 0
    rows = (run / "losses.csv").read_text().strip().splitlines()
    assert rows[0].startswith("step,total,perceptual") and len(rows) >= 5
    assert (run / "losses.png").stat().st_size > 1000
    assert (run / "last.safetensors").exists() and (run / "last.json").exists()


def test_weight_average_follows_its_formula_and_resumes(tmp_path):
    """ema_decay d: after each step ema <- d * ema + (1 - d) * weights, starting from the initial weights;
    ema.safetensors loads as a checkpoint, and a resumed run continues the same average."""
    from odecam.checkpoint import load_checkpoint, read_checkpoint

    d = 0.5
    cfg = TrainConfig.from_dict(TINY | {"ema_decay": d, "checkpoint_every": 1, "steps": 2})
    run = tmp_path / "run"
    t = Trainer(cfg, run, progress=False)
    w0 = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.train(max_steps=1)
    w1 = {k: v.clone() for k, v in t.model.state_dict().items()}
    _, ema1, meta = read_checkpoint(run / "ema.safetensors")
    assert meta["ema_decay"] == "0.5" and meta["step"] == "1"
    name = next(k for k in w0 if w0[k].is_floating_point() and not torch.equal(w0[k], w1[k]))
    torch.testing.assert_close(ema1[name], d * w0[name] + (1 - d) * w1[name])
    resumed = Trainer(cfg, run, progress=False)
    resumed.train()
    w2 = resumed.model.state_dict()
    _, ema2, _ = read_checkpoint(run / "ema.safetensors")
    torch.testing.assert_close(ema2[name], d * ema1[name] + (1 - d) * w2[name])
    assert not torch.equal(ema2[name], w2[name])
    model = load_checkpoint(run / "ema.safetensors")
    assert model.cfg == resumed.model_cfg


def test_train_only_changes_just_the_named_parts_and_keeps_keypoint_roles(tmp_path):
    """train_only: the named parts move, every other weight and batch-norm statistic stays bit for bit, and a
    fine-tune of a checkpoint with keypoint roles keeps them (lip retargeting needs them)."""
    from odecam.checkpoint import load_checkpoint, save_checkpoint
    from odecam.config import preset
    from odecam.model import MotionTransferModel

    start = MotionTransferModel(preset("tiny"))
    start.keypoint_roles = ("upper_eyelid_right", "upper_eyelid_left")
    save_checkpoint(start, tmp_path / "start.safetensors")
    parts = ["generator.up_blocks", "generator.final"]
    cfg = TrainConfig.from_dict(TINY | {"steps": 3, "init_checkpoint": str(tmp_path / "start.safetensors"),
                                        "train_only": parts})
    t = Trainer(cfg, tmp_path / "run", progress=False)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.train()
    after = t.model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith(tuple(parts)) for k in moved), sorted(moved)[:5]
    assert any(k.startswith("generator.final") for k in moved)
    assert load_checkpoint(tmp_path / "run" / "last.safetensors").keypoint_roles == start.keypoint_roles


def test_model_init_takes_the_start_checkpoints_architecture(tmp_path):
    from odecam.checkpoint import save_checkpoint
    from odecam.config import preset
    from odecam.errors import OdecamError
    from odecam.model import MotionTransferModel

    narrow = preset("tiny").replace(**{"generator.block_expansion": 4, "appearance.hidden": 4})
    save_checkpoint(MotionTransferModel(narrow), tmp_path / "start.safetensors")
    cfg = TrainConfig.from_dict(TINY | {"model": "init", "init_checkpoint": str(tmp_path / "start.safetensors"),
                                        "model_overrides": {"evolution.steps": 2}})
    got = cfg.model_config()
    assert got.generator.block_expansion == 4 and got.appearance.hidden == 4 and got.evolution.steps == 2
    with pytest.raises(OdecamError, match="set init_checkpoint too"):
        TrainConfig.from_dict(TINY | {"model": "init"}).model_config()


def test_train_only_with_an_unknown_part_is_refused(tmp_path):
    from odecam.errors import OdecamError

    with pytest.raises(OdecamError, match="train_only names \\['generator.decoder'\\]"):
        Trainer(TrainConfig.from_dict(TINY | {"train_only": "generator.decoder"}), tmp_path / "run", progress=False)


def test_bad_ema_decay_is_refused(tmp_path):
    from odecam.errors import OdecamError

    with pytest.raises(OdecamError, match="ema_decay 1.5 is out of range"):
        Trainer(TrainConfig.from_dict(TINY | {"ema_decay": 1.5}), tmp_path / "run", progress=False)


def test_cli_train_with_ablation_switch(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(TINY | {"steps": 2}))
    res = _odecam("train", "--config", str(cfg), "--out", str(tmp_path / "run"), "--set", "evolution.enabled=false")
    assert res.returncode == 0, res.stderr
    saved = json.loads((tmp_path / "run" / "last.json").read_text())
    assert saved["evolution"]["enabled"] is False


@pytest.mark.parametrize("make,match", [
    (lambda p: p.mkdir(), "empty|no video|No video|no readable"),
    (lambda p: (p.mkdir(), (p / "a.mp4").write_bytes(b"junk")), "readable|decod|empty|No video|no video"),
])
def test_bad_dataset_is_refused_before_training(tmp_path, make, match):
    data = tmp_path / "data"
    make(data)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(TINY))
    res = _odecam("train", "--config", str(cfg), "--data", str(data), "--out", str(tmp_path / "run"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert str(data.name) in res.stderr or "data" in res.stderr
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_unknown_config_key_is_refused(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": "tiny", "stepz": 3}))
    res = _odecam("train", "--config", str(cfg), "--out", str(tmp_path / "run"))
    assert res.returncode == 2 and "stepz" in res.stderr


def test_two_process_ddp_replicas_hold_identical_weights(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(TINY | {"steps": 3, "batch_size": 1}))
    run = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
                          "-m", "odecam.cli", "train", "--config", str(cfg), "--out", str(run), "--device", "cpu"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    d0 = (run / "weights_rank0.sha256").read_text()
    d1 = (run / "weights_rank1.sha256").read_text()
    assert d0 == d1
    assert "2 process(es)" in res.stdout


def test_plot_handles_empty_csv(tmp_path):
    (tmp_path / "losses.csv").write_text("step,total\n")
    plot_losses(tmp_path / "losses.csv", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.json")),
                         ids=lambda p: p.name)
def test_shipped_training_configs_load_and_build_their_model(path):
    """Every recipe under configs/ parses, and its model config (preset + overrides) validates."""
    cfg = TrainConfig.load(str(path))
    model_cfg = cfg.model_config()
    assert model_cfg.image_size in (64, 128, 256)
    assert cfg.steps > 0 and cfg.lr > 0


@pytest.mark.parametrize("path", [p for p in sorted((ROOT / "configs").glob("*.json"))
                                  if (ROOT / (json.loads(p.read_text()).get("init_checkpoint") or "-")).is_file()],
                         ids=lambda p: p.name)
def test_shipped_configs_fit_the_checkpoint_they_start_from(path, monkeypatch):
    """A recipe that fine-tunes a checkpoint in the repository (the shipped default) builds a model its weights
    load into: ``odecam train --config`` would otherwise stop at its first line."""
    from odecam.checkpoint import check_state_dict, read_checkpoint
    from odecam.model import MotionTransferModel

    monkeypatch.chdir(ROOT)
    cfg = TrainConfig.load(str(path))
    model = MotionTransferModel(cfg.model_config())
    check_state_dict(model, read_checkpoint(cfg.init_checkpoint)[1], cfg.init_checkpoint)

"""Model configs from outside (checkpoint metadata or .json, training configs, --set) are validated field
by field before anything is built: hostile values get one sentence naming the field, never a hang."""

import dataclasses
import json
import random
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from odecam.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from odecam.cli import main
from odecam.config import PRESETS, RULES, ModelConfig, preset, validate_config
from odecam.errors import CheckpointError, ConfigError
from odecam.model import MotionTransferModel


def _with(field: str, value) -> dict:
    d = preset("tiny").to_dict()
    node = d
    *sections, name = field.split(".")
    for s in sections:
        node = node[s]
    node[name] = value
    return d


def test_presets_are_valid_and_every_field_has_a_rule():
    for name in PRESETS:
        validate_config(preset(name))
    cfg = preset("tiny")
    top = {f.name for f in dataclasses.fields(cfg) if f.name not in RULES}
    assert top == set(RULES[""])
    for section in RULES:
        if section:
            assert {f.name for f in dataclasses.fields(getattr(cfg, section))} == set(RULES[section]), section


@pytest.mark.parametrize("field,value,match", [
    ("evolution.steps", 10 ** 9, r"evolution\.steps = 1000000000 is out of range; use a whole number from 1 to 64"),
    ("evolution.steps", 0, "from 1 to 64"),
    ("evolution.steps", 4.0, "must be a whole number from 1 to 64, not a fraction"),
    ("evolution.steps", True, "not true/false"),
    ("keypoints.num_kp", 10 ** 6, r"keypoints\.num_kp = 1000000 is out of range; use a whole number from 1 to 64"),
    ("image_size", -64, "from 64 to 1024 in multiples of 32"),
    ("image_size", 0, "image_size = 0 is out of range"),
    ("image_size", 100, "in multiples of 32"),
    ("image_size", "256", "image_size = '256' must be a whole number .* not a string"),
    ("image_size", None, "not null"),
    ("evolution.method", "dopri5", "evolution.method = 'dopri5' is not a known ODE method; use one of euler, "
                                   "midpoint, rk4"),
    ("motion.mode", "third_order", "not a known motion mode"),
    ("generator.block_expansion", -8, "from 1 to 128"),
    ("generator.max_features", 0, "generator.max_features = 0 is out of range"),
    ("generator.mask_blur", -1.0, "generator.mask_blur = -1.0 is out of range"),
    ("keypoints.scale_factor", 0, "keypoints.scale_factor = 0 is out of range"),
    ("keypoints.scale_factor", 1.5, "out of range"),
    ("keypoints.scale_factor", 0.3, "must be 1/n"),
    ("keypoints.temperature", float("nan"), "out of range"),
    ("keypoints.temperature", "hot", "must be a number"),
    ("keypoints.head_kernel", 4, "odd kernel size"),
    ("keypoints.estimate_jacobian", "yes", "must be true or false, not a string"),
    ("appearance.enabled", 1, "must be true or false, not a whole number"),
    ("num_refs", 7, "num_refs = 7 is out of range; use a whole number from 0 to 6"),
    ("num_channels", 4, "from 3 to 3"),
    ("name", "x" * 1000, "printable string"),
    ("keypoints.num_blocks", 5, r"keypoints\.num_blocks = 5: the keypoint input .* is 16 px, which cannot be "
                                r"halved 5 times; use keypoints\.num_blocks <= 4"),
    ("generator.max_features", 4, "below generator.block_expansion"),
    ("keypoints", [1, 2], "section 'keypoints' must be a JSON object"),
])
def test_bad_field_is_refused_with_one_sentence(field, value, match):
    with pytest.raises(ConfigError, match=match) as err:
        ModelConfig.from_dict(_with(field, value))
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


@pytest.mark.parametrize("text,match", [
    ("[" * 30000 + "]" * 30000, "not valid JSON"),  # nesting deeper than the parser's recursion limit
    ('{"image_size": ' + "9" * 5000 + "}", "not valid JSON"),  # an integer over Python's digit limit
    (" " * 70000 + "{}", "over the 65536-byte limit"),
    ("[1, 2]", "must be a JSON object"),
    ('{"bogus": 1}', "unknown model config key"),
    ('{"keypoints": {"bogus": 1}}', "unknown keys"),
])
def test_bad_json_is_refused(text, match):
    with pytest.raises(ConfigError, match=match):
        ModelConfig.from_json(text)


def test_replace_is_validated_and_refuses_unknown_fields():
    cfg = preset("tiny")
    assert cfg.replace(**{"evolution.steps": 8}).evolution.steps == 8
    with pytest.raises(ConfigError, match="out of range"):
        cfg.replace(**{"evolution.steps": 10 ** 9})
    for bad in ("bogus", "evolution.bogus", "bogus.steps", "image_size.x", "keypoints", "evolution.steps.x"):
        with pytest.raises(ConfigError, match="unknown config field"):
            cfg.replace(**{bad: 1})


def test_valid_configs_build_and_run():
    """What validation accepts, the model can build and run: drawn configs within the rules (small
    channel counts, so it is quick) and the bounds themselves."""
    rng = random.Random(0)
    accepted = 0
    for _ in range(24):
        d = preset("tiny").to_dict()
        for section in ("keypoints", "motion"):
            d[section].update(scale_factor=rng.choice([1, 0.5, 0.25, 0.125]), num_blocks=rng.randint(1, 4),
                              block_expansion=rng.randint(1, 6), antialias=rng.random() < 0.5,
                              depthwise=rng.random() < 0.5)
            d[section]["max_features"] = d[section]["block_expansion"] + rng.randint(0, 6)
        d["keypoints"].update(num_kp=rng.randint(1, 12), head_kernel=rng.choice([1, 3, 5]),
                              estimate_jacobian=rng.random() < 0.5)
        d["keypoints"]["head_padding"] = rng.randint(0, d["keypoints"]["head_kernel"] // 2)
        d["motion"]["mode"] = rng.choice(["zero_order", "first_order"])
        d["evolution"].update(method=rng.choice(["euler", "midpoint", "rk4"]), steps=rng.randint(1, 3),
                              num_layers=rng.randint(1, 3), context_channels=rng.randint(0, 4))
        d["appearance"].update(num_blocks=rng.randint(1, 3), enabled=rng.random() < 0.5)
        d["generator"].update(num_down_blocks=rng.randint(0, 4), num_bottleneck_blocks=rng.randint(0, 2),
                              estimate_occlusion=rng.random() < 0.5, image_skip=rng.random() < 0.5)
        d.update(image_size=rng.choice([64, 96]), num_refs=rng.randint(0, 2))
        try:
            cfg = ModelConfig.from_dict(d)
        except ConfigError:
            continue
        accepted += 1
        _run(cfg)
    assert accepted >= 8
    _run(preset("tiny").replace(**{"keypoints.num_kp": 64, "evolution.steps": 64, "num_refs": 1}))
    _run(preset("tiny").replace(**{"evolution.method": "rk4", "num_refs": 6}))


def _run(cfg: ModelConfig) -> None:
    model = MotionTransferModel(cfg).eval()
    s = cfg.image_size
    refs = torch.rand(1, cfg.num_refs, 3, s, s) if cfg.num_refs else None
    with torch.no_grad():
        out = model(torch.rand(1, 3, s, s), torch.rand(1, 3, s, s), refs)["prediction"]
    assert out.shape == (1, 3, s, s) and torch.isfinite(out).all(), cfg


def _checkpoint_with_json(tmp_path, field, value, name="bad"):
    """Weights without config metadata and a hostile .json beside them (the config the loader uses)."""
    model = MotionTransferModel(preset("tiny"))
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    path.with_suffix(".json").write_text(json.dumps(_with(field, value)))
    return path


@pytest.mark.parametrize("field,value", [
    ("evolution.steps", 10 ** 9), ("keypoints.num_kp", 10 ** 6), ("image_size", -256), ("image_size", 0),
    ("image_size", "256"), ("evolution.method", "dopri5"), ("generator.num_down_blocks", -1),
])
def test_checkpoint_with_hostile_json_config_is_refused(tmp_path, field, value):
    path = _checkpoint_with_json(tmp_path, field, value)
    with pytest.raises(CheckpointError, match=rf"has an invalid config \(config 'bad.json'\): {field}"):
        read_checkpoint(path)


def test_checkpoint_with_hostile_metadata_config_is_refused(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    tensors = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    save_file(tensors, str(path), metadata={"odecam_config": json.dumps(_with("evolution.steps", 10 ** 9))})
    with pytest.raises(CheckpointError, match=r"\(metadata\): evolution\.steps = 1000000000 is out of range"):
        load_checkpoint(path)
    with pytest.raises(ConfigError, match="evolution.steps"):
        load_checkpoint(save_checkpoint(tiny_model, tmp_path / "ok.safetensors"),
                        cfg=dataclasses.replace(preset("tiny"), evolution=dataclasses.replace(
                            preset("tiny").evolution, steps=0)))


def test_cli_demo_refuses_hostile_checkpoint_config(tmp_path):
    """The reported hang: evolution.steps = 10**9 in the .json beside the weights. Now: one line, exit 2."""
    path = _checkpoint_with_json(tmp_path, "evolution.steps", 10 ** 9)
    res = subprocess.run([sys.executable, "-m", "odecam.cli", "demo", "--checkpoint", str(path), "--max-frames", "1",
                          "-o", str(tmp_path / "x.mp4")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "evolution.steps = 1000000000" in lines[0] and "1 to 64" in lines[0]
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize("field,value", [("keypoints.num_kp", 10 ** 6), ("image_size", "256"),
                                         ("evolution.method", "dopri5")])
def test_cli_demo_refuses_other_hostile_configs(tmp_path, capsys, field, value):
    path = _checkpoint_with_json(tmp_path, field, value)
    assert main(["demo", "--checkpoint", str(path), "-o", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0]


def test_cli_train_refuses_bad_model_settings(tmp_path, capsys):
    cfg = tmp_path / "train.json"
    cfg.write_text(json.dumps({"model": _with("keypoints.num_kp", 10 ** 6), "data": ["procedural:4"]}))
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert "keypoints.num_kp = 1000000" in capsys.readouterr().err
    assert main(["train", "--config", "tiny", "--out", str(tmp_path / "run"), "--set", "evolution.steps=1000000000"]) == 2
    assert "evolution.steps = 1000000000 is out of range" in capsys.readouterr().err
    assert main(["train", "--config", "tiny", "--out", str(tmp_path / "run"), "--set", "bogus.x=1"]) == 2
    assert "unknown config field 'bogus.x'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()

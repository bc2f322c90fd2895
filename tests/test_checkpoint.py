"""Checkpoints: safetensors round trip, refusing other architectures, FOMM import, malicious pickles."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from odecam.checkpoint import check_state_dict, convert_fomm, load_checkpoint, read_checkpoint, save_checkpoint
from odecam.config import preset
from odecam.errors import CheckpointError
from odecam.model import MotionTransferModel

from conftest import DATA


def reference_fomm_checkpoint(path: Path) -> dict:
    """A FOMM vox-cpk-shaped checkpoint: exactly the reference names and shapes, random values."""
    sd = {"kp_detector": {}, "generator": {}}
    g = torch.Generator().manual_seed(0)
    for line in (DATA / "fomm-vox256-state-dict.tsv").read_text().splitlines():
        key, shape = line.split("\t")
        shape = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
        part, rest = key.split(".", 1)
        if rest.endswith("num_batches_tracked"):
            t = torch.tensor(1000)
        elif rest.endswith("running_var"):
            t = torch.rand(shape, generator=g) + 0.5
        else:
            t = torch.randn(shape, generator=g) * 0.02
        sd[part][rest] = t
    ckpt = {**sd, "discriminator": {}, "epoch": 99}
    torch.save(ckpt, path)
    return sd


def test_roundtrip(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    assert path.with_suffix(".json").exists()
    loaded = load_checkpoint(path)
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    assert loaded.cfg == tiny_model.cfg


def test_other_architecture_is_refused_and_nothing_half_loaded(tmp_path, tiny_model):
    other = MotionTransferModel(preset("tiny").replace(**{"keypoints.num_kp": 7}))
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"8 with other shapes: generator\.dense_motion_network"):
        check_state_dict(tiny_model, other.state_dict(), "checkpoint 'x'")
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, before[k])
    # a checkpoint whose config says one thing and weights another
    path = save_checkpoint(other, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="missing|other shapes"):
        load_checkpoint(path, cfg=tiny_model.cfg)


def test_corrupt_safetensors_is_refused(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(bad)


def test_fomm_reference_names_convert_with_no_missing_or_unexpected(tmp_path):
    src = tmp_path / "vox-cpk.pth.tar"
    fomm = reference_fomm_checkpoint(src)
    out, new_keys = convert_fomm(src, tmp_path / "vox256.safetensors")
    model = load_checkpoint(out)
    sd = model.state_dict()
    n = 0
    for part, tensors in fomm.items():
        for k, v in tensors.items():
            assert torch.equal(sd[f"{part}.{k}"], v), k
            n += 1
    assert n == 271
    assert all(k.startswith(("generator.evolution", "generator.appearance", "generator.dense_motion_network.confidence"))
               for k in new_keys)


def test_imported_model_computes_what_fomm_computes(tmp_path):
    """With the new parts at identity, F_E, F_A and fusion change nothing: switching them off (FOMM) gives
    the same output."""
    src = tmp_path / "vox-cpk.pth.tar"
    reference_fomm_checkpoint(src)
    out, _ = convert_fomm(src, tmp_path / "vox256.safetensors")
    full = load_checkpoint(out)
    fomm_like = MotionTransferModel(full.cfg.replace(**{"evolution.enabled": False, "appearance.enabled": False}))
    fomm_like.load_state_dict(full.state_dict())
    fomm_like.eval()
    x, d = torch.rand(1, 3, 256, 256), torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        a = full(x, d, solver="unrolled")["prediction"]
        b = fomm_like(x, d, solver="unrolled")["prediction"]
    assert torch.allclose(a, b, atol=1e-6)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/odecam-pwned",))


def test_cli_convert_fomm_accepts_reference_and_refuses_malicious_pickle(tmp_path):
    src = tmp_path / "vox-cpk.pth.tar"
    reference_fomm_checkpoint(src)
    ok = subprocess.run([sys.executable, "-m", "odecam.cli", "convert-fomm", str(src), "-o", str(tmp_path / "v.safetensors")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "v.safetensors").exists() and (tmp_path / "v.json").exists()

    evil = tmp_path / "evil.pth.tar"
    with open(evil, "wb") as f:
        pickle.dump({"kp_detector": _Evil(), "generator": {}}, f)
    if os.path.exists("/tmp/odecam-pwned"):
        os.remove("/tmp/odecam-pwned")
    bad = subprocess.run([sys.executable, "-m", "odecam.cli", "convert-fomm", str(evil), "-o", str(tmp_path / "e.safetensors")],
                         capture_output=True, text=True)
    assert bad.returncode != 0
    assert "weights_only" in bad.stderr and "Traceback" not in bad.stderr
    assert not os.path.exists("/tmp/odecam-pwned")
    assert not (tmp_path / "e.safetensors").exists()


def test_convert_refuses_non_fomm_checkpoint(tmp_path):
    src = tmp_path / "other.pth"
    torch.save({"state_dict": {"a": torch.zeros(1)}}, src)
    with pytest.raises(CheckpointError, match="kp_detector"):
        convert_fomm(src, tmp_path / "x.safetensors")


def _resave(path: Path, tensors: dict, model) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"odecam_config": model.cfg.to_json()})
    return path


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int32, torch.int64, torch.bool])
def test_non_float_weights_are_refused_naming_the_tensor(tmp_path, tiny_model, dtype):
    sd = dict(tiny_model.state_dict())
    key = "kp_detector.kp.weight"
    sd[key] = (sd[key] * 100).to(dtype)
    path = _resave(tmp_path / "w.safetensors", sd, tiny_model)
    with pytest.raises(CheckpointError, match=rf"tensor {key} is {str(dtype).split('.')[1]}, not a float32/float16"):
        load_checkpoint(path)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_are_cast_to_the_model_dtype(tmp_path, tiny_model, dtype, caplog):
    sd = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tiny_model.state_dict().items()}
    path = _resave(tmp_path / "w.safetensors", sd, tiny_model)
    with caplog.at_level("INFO", logger="odecam.checkpoint"):
        model = load_checkpoint(path)
    assert f"{str(dtype).split('.')[1]} tensor(s) to float32" in caplog.text
    for k, v in model.state_dict().items():
        assert v.dtype == tiny_model.state_dict()[k].dtype
        assert torch.equal(v, sd[k].to(v.dtype)), k


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, tiny_model, bad):
    sd = dict(tiny_model.state_dict())
    key = "generator.final.weight"
    sd[key] = sd[key].clone()
    sd[key].view(-1)[3] = bad
    path = _resave(tmp_path / "w.safetensors", sd, tiny_model)
    with pytest.raises(CheckpointError, match=rf"tensor {key} holds 1 NaN or infinite value\(s\)"):
        load_checkpoint(path)


def test_float64_overflowing_float32_is_refused(tmp_path, tiny_model):
    sd = {k: (v.double() if v.is_floating_point() else v) for k, v in tiny_model.state_dict().items()}
    sd["generator.final.bias"][0] = 1e300
    with pytest.raises(CheckpointError, match="generator.final.bias holds 1 NaN or infinite"):
        load_checkpoint(_resave(tmp_path / "w.safetensors", sd, tiny_model))


def test_convert_fomm_refuses_non_finite_and_integer_weights(tmp_path):
    src = tmp_path / "vox-cpk.pth.tar"
    sd = reference_fomm_checkpoint(src)
    sd["generator"]["final.bias"] = torch.full_like(sd["generator"]["final.bias"], float("nan"))
    torch.save(sd, src)
    with pytest.raises(CheckpointError, match="generator.final.bias holds 3 NaN"):
        convert_fomm(src, tmp_path / "x.safetensors")
    sd["generator"]["final.bias"] = torch.zeros(3, dtype=torch.int16)
    torch.save(sd, src)
    with pytest.raises(CheckpointError, match="generator.final.bias is int16"):
        convert_fomm(src, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_extra_metadata_never_replaces_the_models_own_config(tmp_path, tiny_model):
    """Metadata copied from another checkpoint (``extra``) keeps its notes but not its config."""
    other = MotionTransferModel(preset("tiny").replace(**{"generator.pixel_shuffle": 2}))
    _, _, meta = read_checkpoint(save_checkpoint(other, tmp_path / "other.safetensors", extra={"trained_on": "x"}))
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors", extra=meta)
    cfg, _, got = read_checkpoint(path)
    assert cfg == tiny_model.cfg and got["trained_on"] == "x"
    load_checkpoint(path)

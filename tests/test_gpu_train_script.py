"""scripts/gpu_train.sh device --dry-run: the config it would train on the device, without a device."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _dry_run(*args: str) -> dict:
    out = subprocess.run(["bash", "scripts/gpu_train.sh", "device", "--dry-run", *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin",
                                                                         "PYTHON": sys.executable})
    assert out.returncode == 0, out.stderr
    text = out.stdout
    return json.loads(text[text.index("{"): text.rindex("}") + 1])


def test_packed_faces_replace_the_folder_but_keep_its_options():
    cfg = _dry_run("--config", "configs/lite-faces-256.json")
    assert cfg["data"] == ["faces:/tmp/faces,rotate=30"]
    assert cfg["init_checkpoint"] == "odecam/assets/default.safetensors"
    assert cfg["batch_size"] == 32 and cfg["device"] == "cuda"


def test_a_config_without_options_gets_the_plain_folder():
    cfg = _dry_run("--config", "configs/lite-faces-128.json")
    assert cfg["data"] == ["faces:/tmp/faces"]

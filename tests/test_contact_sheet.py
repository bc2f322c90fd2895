"""scripts/contact_sheet.py: driver | avatar sheets for one checkpoint, and one avatar column per checkpoint."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from odecam.assets import DEFAULT_WEIGHTS
from odecam.checkpoint import load_checkpoint, save_checkpoint
from odecam.model import MotionTransferModel

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "contact_sheet.py"
T = 32  # tile side


def _run(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--driving", "carphone", "--max-frames", "6", "--frames", "2",
                                      "--tile", str(T), *args])
    runpy.run_path(str(SCRIPT), run_name="__main__")


def test_one_checkpoint_keeps_the_row_layout(tmp_path, monkeypatch):
    out = tmp_path / "one.png"
    _run(monkeypatch, "-o", str(out))
    sheet = cv2.imread(str(out))
    assert sheet.shape == (18 + T, 2 * 2 * T, 3)  # title strip over 2 frames x (driver | avatar)
    assert sheet[18:].std() > 10  # pictures, not blank tiles


def test_several_checkpoints_get_one_labelled_column_each(tmp_path, monkeypatch):
    model = load_checkpoint(DEFAULT_WEIGHTS)
    no_evo = MotionTransferModel(model.cfg.replace(**{"evolution.enabled": False}))
    no_evo.load_state_dict(model.state_dict())
    no_evo_path = save_checkpoint(no_evo, tmp_path / "no-evo.safetensors")
    out = tmp_path / "three.png"
    _run(monkeypatch, "--checkpoint", str(DEFAULT_WEIGHTS), "--label", "full", "--checkpoint", str(DEFAULT_WEIGHTS),
         "--label", "full again", "--checkpoint", str(no_evo_path), "--label", "w/o F_E", "-o", str(out))
    sheet = cv2.imread(str(out))
    assert sheet.shape == (18 + 18 + 2 * T, 4 * T, 3)  # title, column labels, 2 frames x 4 columns
    grid = sheet[36:].astype(np.int16)
    driver, full, again, no_evolution = (grid[:, i * T:(i + 1) * T] for i in range(4))
    assert np.array_equal(full, again)  # same weights, same column
    assert np.abs(full - driver).mean() > 5  # the avatar is the astronaut, not the driver
    assert full.std() > 10 and no_evolution.std() > 10


def test_labels_must_match_checkpoints(monkeypatch, capsys):
    with pytest.raises(SystemExit) as e:
        _run(monkeypatch, "--checkpoint", str(DEFAULT_WEIGHTS), "--label", "a", "--label", "b", "-o", "x.png")
    assert e.value.code == 2
    assert "one label per checkpoint" in capsys.readouterr().err


def test_a_tilted_photo_gets_a_kept_and_an_upright_column(tmp_path, monkeypatch):
    from PIL import Image
    from skimage import data

    from odecam.rotation import rotate_image

    tilted = tmp_path / "tilted.png"
    Image.fromarray(rotate_image(data.astronaut(), 20)).save(tilted)
    out = tmp_path / "tilt.png"
    _run(monkeypatch, "--source", str(tilted), "--checkpoint", str(DEFAULT_WEIGHTS), "--keep-tilt", "yes",
         "--checkpoint", str(DEFAULT_WEIGHTS), "--keep-tilt", "no", "-o", str(out))
    grid = cv2.imread(str(out))[36:].astype(np.int16)
    kept, upright = grid[:, T:2 * T], grid[:, 2 * T:3 * T]
    assert np.abs(kept - upright).mean() > 5  # the same weights on two framings of the photo


def test_keep_tilt_must_match_checkpoints(monkeypatch, capsys):
    with pytest.raises(SystemExit) as e:
        _run(monkeypatch, "--keep-tilt", "yes", "--keep-tilt", "no", "-o", "x.png")
    assert e.value.code == 2
    assert "give one per checkpoint" in capsys.readouterr().err

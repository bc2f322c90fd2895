"""scripts/keypoint_field_gain.py: the least-squares gain of field against keypoint motion has known answers,
and the script measures the shipped default on a real video."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "keypoint_field_gain.py"


@pytest.fixture(scope="module")
def script():
    return runpy.run_path(str(SCRIPT))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gain_of_a_scaled_field_is_the_scale(script, dtype):
    rng = np.random.default_rng(0)
    deltas = rng.normal(0, 0.1, (20, 10, 2)).astype(dtype)
    r = script["field_gain"](deltas, 0.6 * deltas, side=256)
    assert r["gain"] == pytest.approx(0.6)
    assert r["residual_px"] == pytest.approx(0.4 * r["delta_px"], rel=1e-5)
    still = script["field_gain"](deltas, np.zeros_like(deltas))
    assert still["gain"] == 0.0 and still["residual_px"] == pytest.approx(still["delta_px"])
    exact = script["field_gain"](deltas, deltas)
    assert exact["gain"] == pytest.approx(1.0) and exact["residual_px"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"\(N, K, 2\)"):
        script["field_gain"](deltas, deltas[:, :5])


def test_script_measures_the_default_on_carphone(tmp_path, monkeypatch):
    out = tmp_path / "gain.json"
    monkeypatch.setattr(sys, "argv", ["keypoint_field_gain.py"])
    assert runpy.run_path(str(SCRIPT))["main"](["--max-frames", "6", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["frames"] == 5  # frame 0 is the source
    for name in ("coarse", "refined"):
        assert 0.2 < r[name]["gain"] < 1.5 and r[name]["residual_px"] >= 0 and r[name]["delta_px"] > 0

"""benchmarks/spin_ab.py: the default model with and without spin-waiting threads, interleaved, to JSON."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "spin_ab.py"


def test_both_settings_are_timed_and_compared(tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "spin.json"
    assert runpy.run_path(str(SCRIPT))["main"](["--refs", "0", "--frames", "3", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    case = res["cases"]["N0"]
    for side in ("spin", "no_spin"):
        assert 0 < case[side]["p50_ms"] <= case[side]["p95_ms"]
    assert case["speedup_p50"] == pytest.approx(case["no_spin"]["p50_ms"] / case["spin"]["p50_ms"])
    assert res["busy"] == 0 and res["frames"] == 3

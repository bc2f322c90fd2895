"""benchmarks/arch_speed.py: times lite variants (config overrides) through onnxruntime and writes JSON."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "arch_speed.py"


def test_a_narrower_decoder_has_fewer_parameters_and_is_timed(tmp_path):
    mod = runpy.run_path(str(SCRIPT))
    out = tmp_path / "arch.json"
    assert mod["main"](["--variants", "lite", "gen_be8", "--refs", "0", "--frames", "2", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    lite, narrow = res["rows"]
    assert (lite["variant"], narrow["variant"]) == ("lite", "gen_be8")
    assert narrow["overrides"] == {"generator.block_expansion": 8}
    assert 0.12 < narrow["params_m"] < lite["params_m"] < 0.2
    for row in res["rows"]:
        t = row["N0"]
        assert t["keypoints_ms"] > 0 and t["frame_ms"] > 0
        assert abs(t["total_ms"] - t["keypoints_ms"] - t["frame_ms"]) < 1e-9
    assert res["threads"] == 1 and "cpu" in json.dumps(res["machine"]).lower()

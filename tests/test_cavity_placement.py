"""scripts/cavity_placement.py: the painted mouth cavity scored against dlib's inner lips (the built-in astronaut)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


def test_the_astronauts_cavity_lies_inside_her_mouth(tmp_path):
    import cavity_placement

    out = tmp_path / "placement.json"
    result = cavity_placement.main(["--json", str(out)])
    assert json.loads(out.read_text())["summary"] == result["summary"]
    (row,) = result["portraits"]
    assert row["portrait"] == "astronaut.png" and row["painted"] > 100 and row["teeth"] > 100
    assert row["outside"] < 0.05  # the previous painter put 39% of its cavity on her lips and skin
    assert 0.3 < row["covered"] < 0.8  # the upper teeth stay

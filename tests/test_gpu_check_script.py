"""benchmarks/gpu_check.sh, the one device call of the GPU checks, runs end to end here too: without CUDA it does
its CPU smoke check (tiny, eager; the cuda-graph backend's refusal) and writes its JSON, so a session lent a GPU
does not spend its minutes on a broken script."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the script runs the real checks (minutes)")
def test_gpu_check_runs_its_cpu_smoke_check_and_writes_json(tmp_path):
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "OUT": str(tmp_path),
           "HOME": os.environ.get("HOME", str(tmp_path))}
    res = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                         timeout=300, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-2000:]
    assert "no CUDA device" in res.stdout and "gpu_check.py (budget" in res.stdout
    data = json.loads(next(tmp_path.glob("gpu-*.json")).read_text())
    assert data["machine"]["cuda_available"] is False
    run = data["runs"][0]
    assert (run["preset"], run["engine"], run["precision"]) == ("tiny", "eager", "fp32") and run["p50_ms"] > 0
    assert any("cuda-graph without CUDA: BackendError" in n for n in data["notes"])
    assert (tmp_path / "gpu_check.log").read_text().count("== done (rc=0)") == 1

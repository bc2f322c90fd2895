"""The backend choice and thread policy (odecam.engine.threads) with real measurements of this machine."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from odecam.engine.backends import BackendError
from odecam.engine.threads import (ENV_THREADS, apply_thread_policy, backend_options, busy_cores, choose_backend,
                                   cpu_cores, plan_threads)


def test_auto_is_onnxruntime_on_a_cpu_and_names_pass_through():
    want = "torch" if torch.cuda.is_available() or importlib.util.find_spec("onnxruntime") is None else "onnxruntime"
    assert choose_backend("auto") == choose_backend(None) == choose_backend("AUTO") == want
    assert choose_backend("ort") == "onnxruntime" and choose_backend("torch") == "torch"
    with pytest.raises(BackendError, match="unknown backend 'coreml'"):
        choose_backend("coreml")


def test_plan_uses_the_free_cores_at_least_one(monkeypatch):
    monkeypatch.delenv(ENV_THREADS, raising=False)
    cores = cpu_cores()
    assert cores == len(os.sched_getaffinity(0))
    busy = busy_cores(0.1)
    assert 0.0 <= busy <= cores
    plan = plan_threads("torch", sample_s=0.1)
    assert 1 <= plan.threads <= cores and plan.source == "measured"
    assert f"{plan.threads} model thread" in plan.describe() and "busy with other programs" in plan.describe()
    ort = plan_threads("onnxruntime", sample_s=0.1)
    assert ort.torch_threads == 1  # beside onnxruntime torch only converts frames


def test_env_override_and_apply(monkeypatch):
    monkeypatch.setenv(ENV_THREADS, "3")
    n = torch.get_num_threads()
    try:
        plan = apply_thread_policy("onnxruntime")
        assert plan.threads == 3 and plan.source == ENV_THREADS and torch.get_num_threads() == 1
        assert backend_options("onnxruntime") == {"threads": 3} and backend_options("torch") == {}
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        plan = apply_thread_policy("torch")
        assert plan.torch_threads == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(n)


def test_spin_setting_from_the_environment(monkeypatch):
    """ODECAM_SPIN reaches onnxruntime's options in the rendering commands; a bad value is one sentence naming it."""
    from odecam.engine.threads import ENV_SPIN, backend_options
    from odecam.errors import OdecamError

    monkeypatch.delenv(ENV_SPIN, raising=False)
    assert "spin" not in backend_options("onnxruntime")  # the backend's default: auto
    monkeypatch.setenv(ENV_SPIN, "off")
    assert backend_options("onnxruntime")["spin"] == "off" and backend_options("torch") == {}
    monkeypatch.setenv(ENV_SPIN, "fast")
    with pytest.raises(OdecamError, match="ODECAM_SPIN='fast' is not a spin-waiting setting; use one of off, on, auto"):
        backend_options("onnxruntime")

"""odecam.engine.spin: spin-waiting chosen at run time from measured run times, on known timing sequences and on
real onnxruntime sessions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from odecam.engine.spin import AdaptiveSpinSession, SpinChooser, spin_mode


def drive(chooser: SpinChooser, ms: dict[bool, float], runs: int) -> list[bool]:
    """Run ``runs`` times with fixed run times per setting; returns the settings used."""
    used = []
    for _ in range(runs):
        spin = chooser.next()
        chooser.record(spin, ms[spin] / 1000.0)
        used.append(spin)
    return used


def test_settles_on_the_faster_setting_and_probes_the_other_rarely():
    """Idle machine (spinning 9.4 ms, sleeping 10.8 ms): after the first probes it spins, and sleeps only on
    every probe_every-th run."""
    c = SpinChooser()
    used = drive(c, {True: 9.4, False: 10.8}, 480)
    assert c.spinning is True
    assert sum(not u for u in used[10:]) == pytest.approx(470 / c.probe_every, abs=2)
    assert c.median_ms() == pytest.approx({"spin": 9.4, "sleep": 10.8})


def test_follows_a_change_of_load_both_ways():
    """A busy program starts (spinning 24 ms, sleeping 16 ms), then stops: each change is followed within
    probe_every + keep runs, and the runs in between mostly use the faster setting."""
    c = SpinChooser()
    drive(c, {True: 9.4, False: 10.8}, 200)
    busy = drive(c, {True: 24.0, False: 16.0}, 300)
    assert c.spinning is False
    switched = busy.index(False, 1)  # the first run after the change that sleeps, not counting probes
    assert all(not u for u in busy[switched:switched + 10])
    assert switched <= c.keep
    assert sum(busy[switched:]) <= (300 - switched) / c.probe_every + 2
    idle = drive(c, {True: 9.4, False: 10.8}, 300)
    assert c.spinning is True
    assert idle.index(True) < c.probe_every and sum(not u for u in idle[c.probe_every + c.keep:]) <= 300 / c.probe_every


def test_noise_does_not_make_it_flap():
    """Run times with 15% noise around a 13% difference: it stays on the faster setting nearly always."""
    rng = np.random.default_rng(0)
    c = SpinChooser()
    used = []
    for _ in range(2000):
        spin = c.next()
        base = 9.4 if spin else 10.8
        c.record(spin, base * rng.lognormal(0.0, 0.15) / 1000.0)
        used.append(spin)
    assert np.mean(used[100:]) > 0.9


@pytest.mark.parametrize("bad", ["yes", 2, "ON"])
def test_spin_mode_names_the_choices(bad):
    assert [spin_mode(v) for v in (False, None, True, "off", "on", "auto")] == ["off", "off", "on", "off", "on", "auto"]
    with pytest.raises(ValueError, match="auto"):
        spin_mode(bad)


def test_chooser_refuses_settings_that_cannot_work():
    with pytest.raises(ValueError):
        SpinChooser(probe_every=1)
    with pytest.raises(ValueError):
        SpinChooser(keep=2)


def test_auto_backend_renders_the_frames_of_the_sleeping_one(tiny_model):
    """spin='auto' runs two onnxruntime sessions per graph; the frames equal spin='off' exactly, the device line says
    so and the share of spinning runs is counted. A bad setting is one BackendError sentence."""
    pytest.importorskip("onnxruntime")
    from odecam.engine import Animator, Avatar
    from odecam.engine.backends import BackendError, get_backend

    rng = np.random.default_rng(1)
    s = tiny_model.cfg.image_size
    source = rng.integers(0, 256, (s, s, 3), dtype=np.uint8)
    frames = [rng.integers(0, 256, (s, s, 3), dtype=np.uint8) for _ in range(6)]
    out = {}
    for spin in ("off", "auto"):
        backend = get_backend("onnxruntime", tiny_model, threads=2, spin=spin, cache=False)
        animator = Animator(tiny_model, Avatar(tiny_model, source, []), backend=backend)
        out[spin] = [animator(f) for f in frames]
        if spin == "auto":
            assert isinstance(backend._kp_graph, AdaptiveSpinSession)
            assert backend._kp_graph.chooser.runs == len(frames)
            assert 0.0 < backend.spin_share() < 1.0  # the first runs try both settings
            assert "spin-waiting when faster" in backend.describe()
        else:
            assert backend.spin_share() is None and "spin" not in backend.describe()
    for a, b in zip(out["off"], out["auto"]):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(BackendError, match="spin must be one of off, on, auto"):
        get_backend("onnxruntime", tiny_model, spin="sometimes")

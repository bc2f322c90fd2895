"""Tests of the One Euro filter: jitter removal, low lag on fast motion, passthrough."""
from __future__ import annotations

import numpy as np
import pytest

from odecam.realtime.one_euro import OneEuroConfig, OneEuroFilter

FPS = 30.0


def _run(f: OneEuroFilter, xs: np.ndarray, ts: np.ndarray) -> np.ndarray:
    return np.stack([f(x, t) for x, t in zip(xs, ts)])


def test_noisy_constant_jitter_cut_at_least_4x() -> None:
    rng = np.random.default_rng(0)
    n = 300
    ts = np.arange(n) / FPS
    xs = 0.3 + rng.normal(0.0, 0.01, (n, 10, 2))  # 10 keypoints, normalised coordinates
    ys = _run(OneEuroFilter(), xs, ts)
    assert ys.shape == xs.shape
    settle = 60
    raw_std = xs[settle:].std(axis=0).mean()
    out_std = ys[settle:].std(axis=0).mean()
    assert raw_std / out_std >= 4.0, (raw_std, out_std)
    assert abs(ys[settle:].mean() - 0.3) < 0.005


def test_fast_step_and_ramp_lag_small_vs_plain_lowpass() -> None:
    rng = np.random.default_rng(1)
    n = 120
    ts = np.arange(n) / FPS
    step = np.where(ts >= 1.0, 0.5, 0.0)[:, None] + rng.normal(0.0, 0.005, (n, 1))
    ramp = np.clip((ts - 1.0) * 2.0, 0.0, None)[:, None]  # 2 units/s: a quick head turn
    i_step = int(1.0 * FPS)
    settle = 6  # 0.2 s after the step

    one_euro = OneEuroFilter(min_cutoff=0.5, beta=1.0)
    plain = OneEuroFilter(min_cutoff=0.5, beta=0.0)  # beta=0: a fixed first-order low-pass
    err_step = abs(_run(one_euro, step, ts)[i_step + settle, 0] - 0.5)
    err_step_plain = abs(_run(plain, step, ts)[i_step + settle, 0] - 0.5)
    assert err_step < 0.05, err_step  # within 10% of the jump after 0.2 s
    assert err_step < err_step_plain / 5, (err_step, err_step_plain)

    one_euro.reset()
    plain.reset()
    k = 60  # 1 s into the ramp
    lag = abs(_run(one_euro, ramp, ts)[k, 0] - ramp[k, 0])
    lag_plain = abs(_run(plain, ramp, ts)[k, 0] - ramp[k, 0])
    assert lag < 0.1, lag  # < 50 ms of motion behind
    assert lag < lag_plain / 5, (lag, lag_plain)


def test_disabled_is_passthrough_and_reset() -> None:
    rng = np.random.default_rng(2)
    xs = rng.normal(size=(20, 5, 2)).astype(np.float32)
    f = OneEuroFilter(enabled=False)
    for i, x in enumerate(xs):
        y = f(x, i / FPS)
        np.testing.assert_array_equal(y, x)
        assert y.dtype == np.float32 and y is not x

    f.enabled = True
    first = f(xs[0], 0.0)
    np.testing.assert_array_equal(first, xs[0])  # the first sample starts the track
    f(xs[1], 1 / FPS)
    f.reset()
    np.testing.assert_array_equal(f(xs[2], 2 / FPS), xs[2])


def test_irregular_and_repeated_timestamps() -> None:
    f = OneEuroFilter()
    a = f(np.zeros(3), 0.0)
    b = f(np.ones(3), 0.0)  # same timestamp: no new information, output unchanged
    np.testing.assert_array_equal(a, b)
    c = f(np.ones(3), 0.5)  # a long gap (stalled frame) moves further than a short one
    g = OneEuroFilter()
    g(np.zeros(3), 0.0)
    d = g(np.ones(3), 1 / FPS)
    assert np.all(c > d)


def test_shape_change_and_bad_config_are_clear() -> None:
    f = OneEuroFilter()
    f(np.zeros((10, 2)), 0.0)
    with pytest.raises(ValueError, match="reset"):
        f(np.zeros((5, 2)), 0.1)
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroConfig(min_cutoff=0.0)
    assert OneEuroFilter.from_config(OneEuroConfig(beta=0.2)).config.beta == 0.2

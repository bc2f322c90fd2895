"""Tests of the preview overlay (FPS and per-stage latency text)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from odecam.realtime.overlay import OverlayStyle, draw_stats, format_stats


def test_format_stats_lines() -> None:
    lines = format_stats(29.84, {"capture": 1.25, "model": 35.0, "sink": math.nan})
    assert lines == ["29.8 fps", "capture   1.2 ms", "model    35.0 ms", "sink        - ms", "total    36.2 ms"]
    assert format_stats(None, {"model": 3.0}) == ["model   3.0 ms"]


def test_draw_stats_draws_top_left_only() -> None:
    frame = np.full((360, 640, 3), 128, np.uint8)
    out = draw_stats(frame, 30.0, {"capture": 1.0, "model": 30.0}, inplace=False)
    assert out is not frame and np.all(frame == 128)
    changed = np.any(out != frame, axis=2)
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 500  # text and its shaded box
    assert xs.max() < 320 and ys.max() < 180
    assert np.any(out[changed][:, 1] > 200)  # green text
    same = draw_stats(frame, 30.0, {"model": 30.0}, style=OverlayStyle(shadow_alpha=0.0))
    assert same is frame and np.any(frame != 128)
    # scales with the frame: a 720p frame gets bigger text
    big = np.zeros((720, 1280, 3), np.uint8)
    small = np.zeros((360, 640, 3), np.uint8)
    draw_stats(big, 30.0, {"model": 30.0})
    draw_stats(small, 30.0, {"model": 30.0})
    assert np.any(big, axis=2).sum() > 3 * np.any(small, axis=2).sum()
    with pytest.raises(ValueError, match="BGR uint8"):
        draw_stats(np.zeros((10, 10), np.uint8), 1.0, {})

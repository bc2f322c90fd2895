"""The engine: the avatar cache, the per-frame path, relative motion, calibration, timings, errors."""

import numpy as np
import pytest
import torch

from odecam.engine import STAGES, Animator, Avatar
from odecam.errors import InputImageError

from conftest import randomize_new_parts


def test_no_avatar_work_is_repeated_per_frame(tiny_model, carphone_frames):
    calls = {"encode": 0, "prepare_view": 0, "kp": 0}
    g = tiny_model.generator
    orig_encode, orig_prep, orig_kp = g.encode, g.dense_motion_network.prepare_view, tiny_model.kp_detector.forward

    def count(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapped

    g.encode = count("encode", orig_encode)
    g.dense_motion_network.prepare_view = count("prepare_view", orig_prep)
    tiny_model.kp_detector.forward = count("kp", orig_kp)
    avatar = Avatar(tiny_model, carphone_frames[0], [carphone_frames[10]])
    animator = Animator(tiny_model, avatar)
    for i in range(100):
        animator(carphone_frames[i % len(carphone_frames)])
    assert calls["encode"] == 1 and calls["prepare_view"] == 1  # the avatar is encoded once
    assert calls["kp"] == 1 + 100  # F_K runs once for the avatar, then once per driving frame


def test_recalibrate_takes_current_pose_as_neutral(tiny_model, carphone_frames):
    randomize_new_parts(tiny_model)
    avatar = Avatar(tiny_model, carphone_frames[0])
    animator = Animator(tiny_model, avatar)
    animator(carphone_frames[5])  # first frame is neutral by default
    moved = animator(carphone_frames[25])
    animator.recalibrate()  # frame 25 is now neutral
    again = animator(carphone_frames[25])
    neutral = Animator(tiny_model, avatar)(carphone_frames[0])  # the avatar at its own pose
    assert np.abs(again.astype(int) - neutral.astype(int)).max() <= 1
    assert np.abs(moved.astype(int) - again.astype(int)).max() >= 0


def test_keypoint_path_equals_frame_path(tiny_model, carphone_frames):
    avatar = Avatar(tiny_model, carphone_frames[0])
    a, b = Animator(tiny_model, avatar), Animator(tiny_model, avatar)
    for frame in carphone_frames[:5]:
        out_frame = a(frame)
        value, jac = b.keypoints(frame)
        out_kp = b.animate_keypoints(value[0].numpy())
        assert np.array_equal(out_frame, out_kp)


def test_output_changes_with_driving_motion(tiny_model, carphone_frames):
    randomize_new_parts(tiny_model)
    avatar = Avatar(tiny_model, carphone_frames[0])
    animator = Animator(tiny_model, avatar, relative=False)
    still = animator.render_tensor(avatar.kp_source, None)
    moved = animator.render_tensor(avatar.kp_source + 0.3, None)
    assert (still - moved).abs().max() > 1e-3


def test_timings_cover_every_stage(tiny_model, carphone_frames):
    animator = Animator(tiny_model, Avatar(tiny_model, carphone_frames[0]))
    for f in carphone_frames[:10]:
        animator(f)
    pct = animator.timings.percentiles()
    for stage in STAGES + ("total",):
        assert pct[stage]["n"] == 10 and pct[stage]["p50"] >= 0
    line = animator.timings.summary()
    assert line.startswith("latency p50: total ") and "fps" not in line and "keypoints" in line


def test_nan_in_ode_is_reported_and_stream_continues(tiny_model, carphone_frames, caplog):
    animator = Animator(tiny_model, Avatar(tiny_model, carphone_frames[0]))
    good = animator(carphone_frames[1])
    saved = tiny_model.generator.evolution.field.out.bias.clone()
    with torch.no_grad():
        tiny_model.generator.evolution.field.out.bias.fill_(float("inf"))
    bad = animator(carphone_frames[1])
    assert animator.ode_fallbacks == 1 and "NaN/Inf" in caplog.text
    assert np.array_equal(good, bad)  # untrained F_E is identity, so the coarse field is the same frame
    with torch.no_grad():
        tiny_model.generator.evolution.field.out.bias.copy_(saved)
    animator(carphone_frames[2])
    assert animator.ode_fallbacks == 1


@pytest.mark.parametrize("frame,match", [
    (np.zeros((64, 64), np.uint8), "RGB"),
    (np.zeros((64, 64, 4), np.uint8), "RGB"),
    (np.zeros((64, 64, 3), np.float32), "uint8"),
    (np.zeros((8, 8, 3), np.uint8), "at least"),
])
def test_bad_driving_frames(tiny_model, carphone_frames, frame, match):
    animator = Animator(tiny_model, Avatar(tiny_model, carphone_frames[0]))
    with pytest.raises(InputImageError, match=match):
        animator(frame)


def test_wrong_keypoint_shape(tiny_model, carphone_frames):
    animator = Animator(tiny_model, Avatar(tiny_model, carphone_frames[0]))
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        animator.animate_keypoints(np.zeros((10, 2)))

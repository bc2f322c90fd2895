"""Blink retargeting (odecam.engine.blink): the eye reader, the tracker, the closed-eye avatar, the backends' blend
of the open and closed avatar states, and the whole path: a driver who closes the eyes makes the avatar close its."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from odecam.engine import Animator, Avatar
from odecam.engine.backends import get_backend
from odecam.engine.blink import (BLEND_STEPS, BLENDED_KEYS, BlinkTracker, EyeReader, _eye_net_onnx, close_eyes,
                                 closed_eye_state, eyelid_indices, load_eye_net)
from odecam.engine.images import to_image, to_tensor
from odecam.errors import OdecamError
from odecam.evaluation.expression import face_signals
from odecam.model.eye_openness import EYE_CROP, EyeOpennessNet, eye_crops


def _face_and_eyes(model, rgb: np.ndarray):
    import cv2

    from odecam.realtime.face_detection import detect_faces, eye_corners

    face = detect_faces(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[0]
    return eye_corners(rgb, face)


# -- the network and its crops ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_eye_network_reads_a_batch_and_refuses_other_shapes(dtype):
    net = EyeOpennessNet().to(dtype)
    assert net(torch.rand(5, 1, EYE_CROP[1], EYE_CROP[0], dtype=dtype)).shape == (5,)
    with pytest.raises(ValueError, match=r"eye crops must be \(B, 1, 20, 32\)"):
        net(torch.rand(5, 3, 20, 32, dtype=dtype))


def test_the_onnx_graph_computes_the_network():
    import onnxruntime as ort

    net = load_eye_net()
    assert sum(p.numel() for p in net.parameters()) == 8905
    session = ort.InferenceSession(_eye_net_onnx(net), providers=["CPUExecutionProvider"])
    crops = torch.rand(2, 1, EYE_CROP[1], EYE_CROP[0])
    got = session.run(None, {"crops": crops.numpy()})[0][0]
    with torch.no_grad():
        want = net(crops).numpy()
    assert np.abs(got - want).max() < 1e-5


def test_the_eye_graph_is_cached_and_a_warm_start_does_not_import_onnx(tmp_path):
    """The reader's graph is written once to the ONNX cache; a new process reads it back without importing onnx
    (0.8 s of start-up); a damaged cache file is built again and the reader reads as before."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ODECAM_CACHE_DIR": str(tmp_path)}
    probe = ("import sys, numpy as np; from odecam.engine.blink import EyeReader; r = EyeReader((0, 1)); "
             "out = r.session.run(None, {'crops': np.full((2, 1, 20, 32), 0.5, np.float32)})[0]; "
             "print('onnx' in sys.modules, float(out.sum()))")
    def start() -> list[str]:
        return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                              check=True).stdout.split()

    runs = [start(), start()]
    cached = list(tmp_path.glob("eye-openness-*.onnx"))
    assert len(cached) == 1
    assert runs[0][0] == "True" and runs[1][0] == "False"  # the first built it, the second only read it
    cached[0].write_bytes(b"not a graph")
    again = start()
    assert again[1] == runs[0][1] == runs[1][1]
    assert cached[0].read_bytes() != b"not a graph"


def test_rgb_crops_equal_grey_crops_to_the_uint8_rounding():
    import cv2

    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), (0, 0), 2)
    lids = np.array([[100.3, 110.2], [160.7, 105.1]])
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    a, b = eye_crops(grey, lids), eye_crops(frame, lids)
    assert a.shape == b.shape == (2, 20, 32)
    assert np.abs(a - b).max() <= 1.5 / 255.0


# -- the tracker ----------------------------------------------------------------------------------------
def test_tracker_waits_for_a_median_then_maps_the_ratio_to_a_blink_amount():
    tracker = BlinkTracker(window=50, warmup=10, open_ratio=0.8, closed_ratio=0.6)
    assert [tracker.update(0.1) for _ in range(9)] == [0.0] * 9  # a closed eye before any median: nothing shown
    for _ in range(40):
        tracker.update(0.3)
    assert tracker.median == pytest.approx(0.3)
    assert tracker.update(0.3) == 0.0  # open
    assert tracker.update(0.3 * 0.85) == 0.0  # above the open ratio
    assert tracker.update(0.3 * 0.6) == 1.0  # at the closed ratio
    assert tracker.update(0.0) == 1.0
    assert tracker.update(0.3 * 0.7) == 0.5  # half way
    b = tracker.update(0.3 * 0.73)
    assert b * BLEND_STEPS == int(b * BLEND_STEPS) and 0.25 <= b <= 0.375  # rounded to the blend steps
    assert tracker.update(float("nan")) == 0.0
    tracker.reset()
    assert tracker.median is None and tracker.update(0.0) == 0.0


def test_tracker_refuses_ratios_out_of_order():
    with pytest.raises(ValueError, match="closed_ratio < open_ratio"):
        BlinkTracker(open_ratio=0.5, closed_ratio=0.7)


# -- the avatar's closed eyes, read back by the reader ----------------------------------------------------
def test_painted_closed_eyes_read_as_closed_and_the_rest_of_the_face_is_kept(default_model, astronaut256):
    lids = eyelid_indices(default_model.keypoint_roles)
    assert lids is not None
    corners = _face_and_eyes(default_model, astronaut256)
    closed = close_eyes(astronaut256, corners)
    assert closed.shape == astronaut256.shape and closed.dtype == np.uint8
    changed = np.abs(closed.astype(int) - astronaut256.astype(int)).max(-1) > 8
    ys, xs = np.nonzero(changed)
    eyes_y = corners[..., 1].mean()
    assert 0 < changed.mean() < 0.02  # two eye-sized patches
    assert np.abs(ys - eyes_y).max() < 20 and xs.min() > corners[..., 0].min() - 8
    reader = EyeReader(lids)
    read, lid_gap = {}, {}
    for name, img in (("open", astronaut256), ("closed", closed)):
        kp = default_model.kp_detector(to_tensor(img, 256))["value"]
        read[name] = reader(img, kp)
        lid_gap[name] = face_signals(img)["eyes"]  # the eval's eye signal: dlib's 68 points, evaluation only
    # the built-in avatar framed as find_portrait frames her (167 px of the photo): the network reads 0.37 -> 0.25
    # (0.35 -> 0.19 on the older 190 px square), dlib's eye signal 0.097 -> 0.059 (0.100 -> 0.062)
    assert read["closed"] < 0.75 * read["open"]
    assert lid_gap["closed"] < 0.7 * lid_gap["open"]


def test_closed_eye_state_keeps_the_motion_and_changes_the_appearance(default_model, astronaut256):
    avatar = Avatar(default_model, astronaut256)
    closed = closed_eye_state(default_model, avatar.state, avatar.views)
    assert closed is not None
    for key in ("kp", "jacobian", "heat_view", "grid"):
        if key in avatar.state:
            assert torch.equal(closed[key], avatar.state[key])
    for key in BLENDED_KEYS:
        assert closed[key].shape == avatar.state[key].shape
        assert (closed[key] - avatar.state[key]).abs().max() > 1e-2


def test_no_face_no_blink(default_model):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    animator = Animator(default_model, Avatar(default_model, noise))
    assert not animator.blink_active
    animator(noise)
    assert animator.blink_amount == 0.0 and "eyes" not in animator.timings.percentiles()


def test_blink_switch_and_a_model_without_eyelid_keypoints(default_model, tiny_model, astronaut256):
    assert Animator(default_model, Avatar(default_model, astronaut256)).blink_active
    assert not Animator(default_model, Avatar(default_model, astronaut256), blink=False).blink_active
    assert not Animator(tiny_model, Avatar(tiny_model, astronaut256)).blink_active  # None: off where it cannot be
    with pytest.raises(OdecamError, match="--blink needs a model whose keypoints are tied to the upper eyelids"):
        Animator(tiny_model, Avatar(tiny_model, astronaut256), blink=True)
    animator = Animator(default_model, Avatar(default_model, astronaut256))
    with pytest.raises(OdecamError, match="out of range"):
        animator.set_blink(1.5)


# -- the backends' blend ----------------------------------------------------------------------------------
@pytest.mark.parametrize("amount, refs", [(0.0, 0), (0.5, 0), (1.0, 0), (0.5, 1)])
def test_backends_render_the_blended_state(default_model, astronaut256, amount, refs):
    """onnxruntime's in-place blend = the eager model on lerp(open, closed, b) = the torch backend's blend; with a
    reference view (the photo mirrored) too, whose eyes are closed as well."""
    avatar = Avatar(default_model, astronaut256, [np.ascontiguousarray(astronaut256[:, ::-1])] * refs)
    closed = avatar.closed_eye_state(default_model)
    for key in BLENDED_KEYS:  # every view's eyes were closed
        change = (closed[key] - avatar.state[key]).abs().flatten(1).amax(1)
        assert change.shape == (1 + refs,) and bool((change > 1e-2).all())
    kp, jac = avatar.kp_source + 0.02, avatar.jac_source
    blended = {k: torch.lerp(v, closed[k], amount) if k in BLENDED_KEYS else v for k, v in avatar.state.items()}
    with torch.no_grad():
        want = default_model.animate(blended, kp, jac, num_views=1 + refs)["prediction"]
    for name in ("torch", "onnxruntime"):
        backend = get_backend(name, default_model)
        backend.prepare(avatar.state)
        backend.set_blend_targets(avatar.state, {"eyes": closed})
        backend.blend_views({"eyes": 0.25})  # another amount first: the blend is recomputed, not accumulated
        backend.blend_views({"eyes": amount})
        got, ok = backend.run_frame(kp, jac)
        assert ok and (got - want).abs().max() < 2e-4, name


# -- the whole path ----------------------------------------------------------------------------------------
def test_the_avatar_closes_its_eyes_when_the_driver_does(default_model, astronaut256):
    """Driven by the avatar's own photo, then by the same photo with its eyes shut: the blink amount goes from 0
    to 1 and the avatar's eyes change while its mouth does not."""
    corners = _face_and_eyes(default_model, astronaut256)
    closed_driver = close_eyes(astronaut256, corners)
    animator = Animator(default_model, Avatar(default_model, astronaut256), backend="onnxruntime")
    for _ in range(20):
        open_frame = animator(astronaut256)
    assert animator.blink_amount == 0.0
    shut_frame = animator(closed_driver)
    # the photo's painted lids read 0.69 of its open eyes to the network at this framing (0.55 on the older 190 px
    # square, a full 1.0 then): 5/8 of the way shut; a driver's real blink reads 0.46-0.68 (EVALUATION.md)
    assert animator.blink_amount >= 0.5
    assert "eyes" in animator.timings.percentiles()
    diff = np.abs(shut_frame.astype(float) - open_frame.astype(float)).mean(-1)
    ey = int(corners[..., 1].mean())
    x0, x1 = int(corners[..., 0].min()), int(corners[..., 0].max())
    eyes = diff[ey - 6:ey + 7, x0:x1 + 1].mean()
    mouth = diff[ey + 60:ey + 90, x0:x1 + 1].mean()
    assert eyes > 15.0 and mouth < 3.0
    animator(astronaut256)
    assert animator.blink_amount == 0.0  # open again


@pytest.mark.parametrize("command", ["demo", "live", "eval"])
def test_blink_switch_on_the_rendering_commands(command):
    from odecam.cli import build_parser

    parser = build_parser()
    base = [command] + (["--data", "carphone"] if command == "eval" else [])
    assert parser.parse_args(base).blink is None  # on where it can be
    assert parser.parse_args(base + ["--no-blink"]).blink is False
    assert parser.parse_args(base + ["--blink"]).blink is True


def test_demo_without_blink_runs_and_says_nothing_about_it(tmp_path, capsys):
    from odecam.cli import main

    assert main(["demo", "--no-blink", "--max-frames", "3", "-o", str(tmp_path / "d.mp4")]) == 0
    out = capsys.readouterr().out
    assert "eyes=" not in out and "blink retargeting on" not in out and (tmp_path / "d.mp4").exists()


def test_missing_or_broken_eye_weights_switch_blinks_off_with_one_sentence(default_model, astronaut256, tmp_path,
                                                                          monkeypatch, caplog):
    import odecam.engine.blink as blink_mod

    broken = tmp_path / "eye_openness.safetensors"
    broken.write_bytes(b"not a safetensors file")
    for path in (broken, tmp_path / "missing.safetensors"):
        monkeypatch.setattr(blink_mod, "EYE_WEIGHTS", path)
        monkeypatch.setattr(blink_mod.load_eye_net, "__defaults__", (path,))
        with caplog.at_level("WARNING", logger="odecam.engine.animator"):
            animator = Animator(default_model, Avatar(default_model, astronaut256))
        assert not animator.blink_active and "blink retargeting is off" in caplog.text
        with pytest.raises(OdecamError, match="eye-openness weights .* are missing or broken.*--no-blink"):
            Animator(default_model, Avatar(default_model, astronaut256), blink=True)

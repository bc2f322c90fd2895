"""Nobody in view (odecam.realtime.presence): the avatar glides to rest instead of following F_K on an empty room."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from odecam.realtime.presence import Presence

from _realtime_media import carphone_path


@pytest.mark.parametrize("fade", [0.2, 0.4])
def test_the_weight_glides_out_and_back_over_fade_seconds(fade):
    """Known answers at 30 fps: from 1 to 0 in fade x 30 frames once the face is gone, and back as fast."""
    p = Presence(fade)
    assert p.update(True, 0.0) == 1.0  # the first frame starts where it is
    p.hold(torch.zeros(1, 2, 2), None)
    steps = round(fade * 30)
    ws = [p.update(False, (i + 1) / 30) for i in range(steps + 3)]
    assert np.allclose(ws[:steps], [1 - (i + 1) / steps for i in range(steps)], atol=1e-9)
    assert ws[steps - 1:] == [0.0] * 4 and p.held == (None, None)  # at rest nothing is held
    t0 = (steps + 3) / 30
    back = [p.update(True, t0 + (i + 1) / 30) for i in range(steps + 1)]
    assert np.allclose(back[:steps], [(i + 1) / steps for i in range(steps)], atol=1e-9) and back[-1] == 1.0
    assert Presence(0.0).update(False, 0.0) == 0.0 and Presence(fade).update(False, 5.0) == 0.0
    import types

    seen = types.SimpleNamespace(face=(0, 0, 9, 9), missed=15)
    assert p.in_view(seen) and not p.in_view(types.SimpleNamespace(face=(0, 0, 9, 9), missed=18))
    assert not p.in_view(types.SimpleNamespace(face=None, missed=0))
    assert p.in_view(types.SimpleNamespace(face=None, missed=0), following=False)  # a fixed crop: always
    with pytest.raises(ValueError, match="fade must be"):
        Presence(-1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_pose_moves_towards_the_neutral_pose_by_one_minus_the_weight(dtype):
    from odecam.engine.relative_motion import RelativeMotion

    source = torch.tensor([[[0.1, 0.2], [-0.3, 0.4]]], dtype=dtype)
    motion = RelativeMotion(source, adapt_scale=False)
    p = Presence(0.4)
    p.update(True, 0.0)
    pose = torch.tensor([[[0.5, 0.5], [0.0, -0.5]]], dtype=dtype)
    assert p.towards_neutral(pose, None, motion)[0] is pose and torch.equal(motion.neutral, pose)  # taken from it
    moved = torch.tensor([[[0.9, 0.1], [0.4, -0.1]]], dtype=dtype)
    p.update(False, 0.3)  # w = 1 - 0.3 / 0.4 = 0.25
    value, _ = p.towards_neutral(moved, None, motion)
    assert value.dtype == dtype and torch.allclose(value, pose + 0.25 * (moved - pose))
    assert torch.allclose(motion(value)[0], source + 0.25 * (moved - pose))  # a quarter of the way from rest
    own = torch.tensor([[[0.0, 0.1], [0.2, 0.3]]], dtype=dtype)  # absolute keypoints: glide to the avatar's own
    assert torch.allclose(p.towards_neutral(moved, None, motion, rest=own)[0], own + 0.25 * (moved - own))


def _clip_with_an_empty_room(path, face_frames: int = 30, empty: int = 90) -> int:
    """carphone's first ``face_frames`` frames, ``empty`` frames of a grey room with nobody in it, then carphone's
    next frames again: an H.264 file at 30 fps; returns its frame count."""
    from odecam.engine.video import H264Writer, read_frames

    frames = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in read_frames(carphone_path())]
    room = np.full_like(frames[0], 118)
    room[90:] = 60  # a dark desk under a grey wall
    clip = frames[:face_frames] + [room] * empty + frames[face_frames:face_frames + 30]
    with H264Writer(path, 30.0, channels="bgr") as w:
        for f in clip:
            w.write(f)
    return len(clip)


def test_nobody_in_view_the_avatar_rests_and_stays_a_face(tmp_path):
    """The default model driven by a clip whose person leaves for 3 s: without rest the avatar melts (its frames
    47 grey levels from its rest pose on average while nobody is there); with it, once the detector has missed the
    face for 18 frames F_K stops, the avatar glides to rest in 0.4 s and stays there (the same frame, no model
    run), and when the person is back it follows them again."""
    import dlib

    from odecam.engine import Animator, Avatar
    from odecam.engine.images import to_image
    from odecam.engine.weights import load_model
    from odecam.evaluation.animation import load_source_photo
    from odecam.realtime.live import LiveConfig, LiveSession

    torch.set_num_threads(1)
    clip = tmp_path / "leaves.mp4"
    n = _clip_with_an_empty_room(clip)
    model = load_model(None).model.eval()
    avatar = Avatar(model, load_source_photo("astronaut", model.cfg.image_size).image)
    detector = dlib.get_frontal_face_detector()
    runs = {}
    for rest in (True, False):
        frames = []
        cfg = LiveConfig(video=str(clip), canvas=(256, 256), record=str(tmp_path / f"rec{rest}.mp4"), rest=rest)
        animator = Animator(model, avatar, backend="onnxruntime", blink=False)
        session = LiveSession(cfg, animator, [avatar], on_frame=frames.append)
        session.run()
        assert len(frames) == n
        faces = [len(detector(cv2.cvtColor(f.avatar, cv2.COLOR_BGR2GRAY), 0)) > 0 for f in frames]
        runs[rest] = (frames, faces, animator, session.messages)
    frames, faces, animator, messages = runs[True]
    said = [m for m in messages if "nobody in view" in m or "a face is back" in m]
    assert len(said) == 2 and "nobody in view" in said[0] and "a face is back" in said[1], messages
    gone = next(i for i in range(30, n) if "keypoints" not in frames[i].stages)  # F_K stops: nobody in view ...
    assert 30 + 15 <= gone <= 30 + 21  # (Presence.absent_after: 18 frames of the detector not finding the face)
    nobody = range(gone + 12, 120)  # ... and after the 0.4 s glide the avatar rests
    rest = cv2.cvtColor(to_image(animator.render_rest()), cv2.COLOR_RGB2BGR)
    assert all(frames[i].avatar is frames[nobody[0]].avatar for i in nobody)  # one frame, repeated
    assert np.abs(frames[nobody[0]].avatar.astype(int) - rest.astype(int)).max() <= 1
    assert all("keypoints" not in frames[i].stages for i in range(gone, 120))  # no F_K on the room
    assert [f.present for f in frames[gone:120]] == [False] * (120 - gone) and all(f.present for f in frames[:gone])
    fading = [frames[i].avatar for i in range(gone, gone + 11)]
    assert any(np.abs(a.astype(int) - frames[nobody[0]].avatar.astype(int)).mean() > 0.5 for a in fading)
    assert all("keypoints" in frames[i].stages for i in range(0, 30))
    assert sum("keypoints" in frames[i].stages for i in range(123, n)) >= n - 126  # back: followed again
    assert all(faces[i] for i in nobody)
    # without rest F_K's keypoints of the grey room pull the avatar apart: 47 grey levels from rest on average
    melted = [float(np.abs(runs[False][0][i].avatar.astype(int) - rest.astype(int)).mean()) for i in nobody]
    assert min(melted) > 20.0, melted


def test_the_keypoint_sender_sends_nothing_before_a_face_and_the_first_faces_pose_when_nobody_is_there():
    """odecam send --framing face (FramedExtractor): an empty room before anyone came sends nothing (the receiver
    keeps its still portrait); a face sends F_K's keypoints; once the detector has missed the face for 18 frames
    (until then F_K still runs, on whatever the crop holds) the keypoints glide to the first face's (the
    receiver's neutral pose: its avatar at rest) and stay there, with F_K not run on the room."""
    from odecam.config import preset
    from odecam.engine import Animator, Avatar
    from odecam.evaluation.animation import load_source_photo
    from odecam.model import MotionTransferModel
    from odecam.realtime.call.sender import FramedExtractor
    from odecam.realtime.framing import FramingConfig

    torch.manual_seed(0)
    model = MotionTransferModel(preset("tiny")).eval()
    animator = Animator(model, Avatar(model, load_source_photo("astronaut", model.cfg.image_size).image))
    calls = []
    keypoints = animator.keypoints
    animator.keypoints = lambda rgb, roll=0.0: calls.append(len(sent)) or keypoints(rgb, roll)
    extract = FramedExtractor(animator, FramingConfig(output_size=model.cfg.image_size), rest_fade=0.4)
    from odecam.engine.video import read_frames

    faces = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in read_frames(carphone_path(), max_frames=30)]
    room = np.full_like(faces[0], 118)
    sent = []
    clock = [0.0]
    import odecam.realtime.call.sender as sender_module

    real_time = sender_module.time.monotonic
    sender_module.time.monotonic = lambda: clock[0]
    try:
        for i, frame in enumerate([room] * 6 + faces + [room] * 75):
            clock[0] = i / 30
            sent.append(extract(extract.prepare(frame)))
            extract.after_frame()
    finally:
        sender_module.time.monotonic = real_time
    k = calls[0]  # the first face is found on frame 6 (its detection runs after that frame): present from 7
    assert k in (6, 7) and sent[:k] == [None] * k  # nothing before the first face, F_K from it on
    first = sent[k][0]
    assert all(s is not None for s in sent[k:])
    gone = calls[-1] + 1  # the first frame without F_K: the detector missed the face for 18 frames ...
    assert 36 + 15 <= gone <= 36 + 21 and calls == list(range(k, gone))
    assert all(np.array_equal(s[0], first) for s in sent[gone + 12:])  # ... then a 12-frame glide to rest
    glide = [float(np.abs(s[0] - first).max()) for s in sent[gone - 1:gone + 13]]
    assert glide[0] > 0 and glide[-1] == 0 and all(a >= b - 1e-7 for a, b in zip(glide, glide[1:])), glide
    animator.blink_amount = 0.75  # the sender passes the driver's blink on (with --framing face too)
    assert extract.blink() == 0.75

"""Tests of FaceFramer on real talking-head clips: face inside the crop, no jitter, fallbacks."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from odecam.realtime.framing import CropBox, FaceFramer, FramingConfig, detect_faces

try:
    from _realtime_media import carphone_path, wolfgang_path
except ImportError:  # tests/ imported as a package
    from tests._realtime_media import carphone_path, wolfgang_path


def _frames(path: str, limit: int | None = None) -> list[np.ndarray]:
    cap = cv2.VideoCapture(path)
    out = []
    while limit is None or len(out) < limit:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    assert out, f"could not decode {path}"
    return out


def _clip_to_frame(box, shape):
    h, w = shape[:2]
    return (max(box[0], 0.0), max(box[1], 0.0), min(box[2], w), min(box[3], h))


def _check_clip(frames: list[np.ndarray], config: FramingConfig, ref_every: int, ref_height: int) -> None:
    framer = FaceFramer(config)
    results = [framer.process(f) for f in frames]
    n = config.output_size
    assert all(r.image.shape == (n, n, 3) and r.image.dtype == np.uint8 for r in results)
    # the detector runs on every Nth frame only
    assert sum(r.detected for r in results) == -(-len(frames) // config.detect_every)

    # 1) the crop contains the face found by an independent detection on the full frame
    checked = inside = 0
    refs: dict[int, tuple[float, float]] = {}
    for i in range(0, len(frames), ref_every):
        faces = detect_faces(frames[i], detect_height=ref_height)
        if not faces:
            continue
        face = _clip_to_frame(faces[0], frames[i].shape)
        refs[i] = ((face[0] + face[2]) / 2, (face[1] + face[3]) / 2)
        box = results[i].box
        checked += 1
        inside += box.contains(face, tolerance=0.05 * box.size)
    assert checked >= 0.8 * len(range(0, len(frames), ref_every)), "the clip should show a face"
    assert inside >= 0.95 * checked, (inside, checked)

    # 2) where the head has been still-ish for a while (settle time), the crop does not move at all
    settle, span = 24, 12
    best = None
    for a in range(settle, len(frames) - span + 1):
        sel = [i for i in range(a - settle, a + span) if i in refs]
        if len(sel) < 0.6 * (settle + span) / ref_every:
            continue
        c = np.array([refs[i] for i in sel])
        spread = float(np.ptp(c, axis=0).max())
        if best is None or spread < best[0]:
            best = (spread, a)
    assert best is not None
    spread, a = best
    boxes = np.array([[r.box.x, r.box.y, r.box.size] for r in results[a:a + span]], dtype=float)
    assert boxes.std(axis=0).max() <= 0.5, (spread, a, boxes)  # ~0 px jitter
    # and over the whole clip the crop stands still most of the time
    all_boxes = np.array([[r.box.x, r.box.y, r.box.size] for r in results])
    moved = np.abs(np.diff(all_boxes, axis=0)).max(axis=1) > 0
    assert moved.mean() < 0.5, moved.mean()


def test_carphone_crop_follows_face_without_jitter() -> None:
    _check_clip(_frames(carphone_path()), FramingConfig(output_size=256), ref_every=1, ref_height=432)


def test_wolfgang_crop_follows_face_without_jitter() -> None:
    frames = _frames(wolfgang_path(), limit=240)
    # a tighter framing than the default so the crop is smaller than the frame and must move
    cfg = FramingConfig(output_size=128, face_scale=1.25, face_offset_y=0.0)
    _check_clip(frames, cfg, ref_every=4, ref_height=320)


def test_still_head_with_sensor_noise_gives_a_still_crop() -> None:
    """A real frame held still-ish (camera shake of +-1.5 px, sensor noise): detections jump, the crop must not."""
    rng = np.random.default_rng(0)
    base = _frames(carphone_path(), limit=100)[99]
    h, w = base.shape[:2]
    framer = FaceFramer(FramingConfig(detect_every=1))
    boxes, faces = [], []
    for _ in range(45):
        dx, dy = rng.uniform(-1.5, 1.5, 2)
        shaken = cv2.warpAffine(base, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), borderMode=cv2.BORDER_REFLECT)
        noisy = np.clip(shaken + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
        out = framer.process(noisy)
        boxes.append((out.box.x, out.box.y, out.box.size))
        found = detect_faces(noisy)
        if found:
            faces.append(found[0])
    assert len(faces) > 30
    assert np.ptp(np.array(faces), axis=0).max() >= 3, "the detector itself jumps by several pixels"
    assert len(set(boxes)) == 1, set(boxes)


def test_no_face_falls_back_to_centre_square() -> None:
    rng = np.random.default_rng(0)
    blank = np.full((360, 640, 3), 90, np.uint8)
    framer = FaceFramer(FramingConfig(output_size=64))
    out = framer.process(blank)
    assert out.box == CropBox(140, 0, 360) and out.face is None
    assert out.image.shape == (64, 64, 3)

    # a face that disappears: after lost_after frames the crop glides back to the centre
    cfg = FramingConfig(output_size=64, lost_after=6, detect_every=2)
    framer = FaceFramer(cfg)
    face_frames = _frames(carphone_path(), limit=10)
    for f in face_frames:
        out = framer.process(f)
    assert out.face is not None and out.box.size < 144
    noise = rng.integers(0, 255, face_frames[0].shape, dtype=np.uint8)
    for _ in range(40):
        out = framer.process(noise)
    assert out.face is None
    assert out.box == CropBox(16, 0, 144)


def test_manual_zoom_and_pan_override() -> None:
    frame = _frames(carphone_path(), limit=1)[0]
    framer = FaceFramer(FramingConfig(output_size=32, follow_face=False, zoom=2.0, pan_x=0.25))
    out = framer.process(frame)
    assert out.box == CropBox(88 - 36 + 18, 72 - 36, 72)  # centred 72 px square, shifted right by 18 px
    assert not out.detected

    # changed while running: the crop glides to the new framing (no dead zone for user input)
    framer.set_manual(zoom=1.0, pan_x=0.0)
    boxes = [framer.process(frame).box for _ in range(40)]
    assert boxes[-1] == CropBox(16, 0, 144)
    assert boxes[0] != boxes[-1]  # it glided rather than jumped
    # zooming in on a followed face gives a smaller crop around it
    framer.set_manual(follow_face=True, zoom=1.0)
    base = [framer.process(frame) for _ in range(40)][-1]
    framer.set_manual(zoom=1.5)
    zoomed = [framer.process(frame) for _ in range(40)][-1]
    assert zoomed.box.size == pytest.approx(base.box.size / 1.5, abs=2)
    assert zoomed.face is not None and zoomed.box.contains(zoomed.face, tolerance=0.1 * zoomed.box.size)


def test_user_mistakes_get_one_sentence() -> None:
    with pytest.raises(ValueError, match="zoom must be a positive factor"):
        FramingConfig(zoom=0)
    with pytest.raises(ValueError, match="zoom must be a positive factor"):
        FaceFramer().set_manual(zoom=-1.0)
    with pytest.raises(ValueError, match="expects an image"):
        FaceFramer().process(np.zeros(10, np.uint8))

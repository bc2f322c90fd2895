"""Expression and head-pose transfer signals (dlib 68 landmarks) on real faces, and the report's footnotes."""

import cv2
import numpy as np
import pytest
from skimage import data

from odecam import assets
from odecam.engine.video import read_frames
from odecam.evaluation.expression import (SIGNALS, ExpressionAccumulator, face_signals, landmarks68, pearson,
                                          score_expression)
from odecam.evaluation.protocols import EvalResult
from odecam.evaluation.report import markdown_table

from conftest import carphone_path


def _astronaut_face(size=256):
    crop = assets.AVATAR_CROP.apply(data.astronaut())
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR if size > crop.shape[0] else cv2.INTER_AREA)


def _rotate(img, degrees):
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)  # positive: counter-clockwise on screen
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)


@pytest.fixture(scope="module")
def carphone_faces():
    """Eight carphone frames spread over the clip, cropped to the face (96 px: the detector needs the upscale)."""
    frames = list(read_frames(carphone_path()))
    return [assets.DRIVING_CROP.apply(f) for f in frames[::15][:8]]


def test_landmarks_on_small_faces_in_image_pixels():
    face = _astronaut_face(96)  # smaller than dlib's HOG minimum: found only through the upscale
    pts = landmarks68(face)
    assert pts is not None and pts.shape == (68, 2)
    assert pts[:, 0].min() > 0 and pts[:, 0].max() < 96 and pts[:, 1].max() < 96
    big = landmarks68(_astronaut_face(384))
    assert np.abs(pts * 4 - big).mean() < 4.0  # the same points at 4x the size (in 384-px pixels)


def test_identical_sequences_score_one(carphone_faces):
    res = score_expression((f, f) for f in carphone_faces)
    assert res.frames == 8 and res.pairs >= 6 and res.face_rate >= 0.75
    for s in SIGNALS:
        assert res.corr[s] == pytest.approx(1.0, abs=1e-9), s
        assert res.motion_range[s] == pytest.approx(1.0, abs=1e-9), s
    d = res.as_dict()
    assert {f"{s}_corr" for s in SIGNALS} <= d.keys() and d["expression_pairs"] == res.pairs
    # the driver really moves: the scores are not 1.0 by a degenerate series
    assert np.std(res.series["driver"]["yaw"]) > 1.0 and np.std(res.series["driver"]["mouth"]) > 0.005


def test_still_avatar_has_no_correlation_and_zero_range(carphone_faces):
    acc = ExpressionAccumulator()
    for f in carphone_faces:
        acc.add(f, carphone_faces[0])
    res = acc.compute()
    assert all(res.corr[s] is None for s in SIGNALS)
    assert all(res.motion_range[s] == 0.0 for s in SIGNALS)
    assert res.notes()["roll_corr"] == "the avatar's signal is constant (it does not move)"


def test_roll_follows_a_known_rotation_with_its_sign():
    face = _astronaut_face(256)
    angles = [0, 8, -6, 14, -12, 4, -2, 10]
    frames = [_rotate(face, a) for a in angles]
    rolls = np.array([face_signals(f)["roll"] for f in frames])
    # counter-clockwise on screen is positive roll; the photo's own tilt is the offset
    assert np.abs((rolls - rolls[0]) - np.array(angles)).max() < 1.5
    assert pearson(angles, rolls) > 0.995
    same = score_expression(zip(frames, frames))
    assert same.corr["roll"] == pytest.approx(1.0) and same.motion_range["roll"] == pytest.approx(1.0)
    mirrored = score_expression(zip(frames, [_rotate(face, -a) for a in angles]))  # avatar tilts the other way
    assert mirrored.corr["roll"] < -0.99 and mirrored.motion_range["roll"] == pytest.approx(1.0, abs=0.1)
    # an in-plane rotation is no expression: mouth and eyes ratios stay put
    sig = [face_signals(f) for f in frames]
    assert np.ptp([s["mouth"] for s in sig]) < 0.02 and np.ptp([s["eyes"] for s in sig]) < 0.02


def test_yaw_changes_sign_in_a_mirror(carphone_faces):
    turned = max(carphone_faces, key=lambda f: abs((face_signals(f) or {"yaw": 0})["yaw"]))
    yaw = face_signals(turned)["yaw"]
    assert abs(yaw) > 5
    assert face_signals(np.ascontiguousarray(turned[:, ::-1]))["yaw"] * yaw < 0


def test_no_face_is_counted_not_scored():
    grey = np.full((128, 128, 3), 127, np.uint8)
    face = _astronaut_face(128)
    res = score_expression([(face, grey), (face, face), (grey, face)])
    assert (res.frames, res.pairs, res.driver_faces, res.avatar_faces) == (3, 1, 2, 2)
    assert res.face_rate == pytest.approx(2 / 3) and res.corr["mouth"] is None
    assert "only 1 frame(s)" in res.notes()["mouth_corr"]


def test_pearson_edge_cases():
    assert pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert pearson([1, 2, 3, 4], [8, 6, 4, 2]) == pytest.approx(-1.0)
    assert pearson([1, 2], [1, 2]) is None and pearson([1, 2, 3], [5, 5, 5]) is None


def test_report_explains_every_dash_and_counts_pairs():
    notes = {"l1": "animation: no ground truth", "psnr": "animation: no ground truth", "fid": "FID was skipped"}
    expr = {"mouth_corr": 0.5, "eyes_corr": None, "roll_corr": -0.25, "yaw_corr": 0.75, "pitch_corr": 0.1,
            "motion_range": {"mouth": 0.3, "eyes": 0.0, "roll": 0.1, "yaw": 1.2, "pitch": 0.9}, "face_rate": 0.9,
            "expression_frames": 10, "expression_pairs": 8, "driver_faces": 10, "avatar_faces": 9}
    r = EvalResult({"l1": None, "psnr": None, "ssim": 0.5, "ms_ssim": 0.5, "fid": None, "akd": 3.0, "csim": None},
                   10, {"akd_pairs": 7, "akd_skipped": 3}, expr, dict(notes, eyes_corr="the avatar's signal is constant"))
    text = markdown_table({"m": r})
    assert "| m | 10 | —¹ | —¹ | 0.500 | 0.500 | —² | 3.00 | — |" in text
    assert "¹ animation: no ground truth." in text and "² FID was skipped." in text
    assert "| m | 90% | 8/10 | 0.50 | —³ | -0.25 | 0.75 | 0.10 | 0.30 | 0.00 | 0.10 | 1.20 | 0.90 |" in text
    assert "³ the avatar's signal is constant." in text
    assert "- m: AKD 7 measured, 3 skipped; expression 8 measured, 2 skipped" in text

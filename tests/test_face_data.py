"""Tests of the face data: odecam prepare-faces, 68-landmark utilities, faces:DIR, landmark-guided motion.

The talking clip is made here from scikit-image's astronaut (a real photo): her mouth is opened and
closed by the landmark-guided warp under test and the crop drifts in a larger frame; dlib must find
her face in every frame.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from odecam.cli import main
from odecam.data.landmarks import (
    FLIP_PERMUTATION, LEFT_EYE, RIGHT_EYE, expression_signals, flip_landmarks, normalised_to_pixels,
    pixels_to_normalised,
)
from odecam.data.prepare import detect_landmarks
from odecam.training.datasets import AugmentConfig, FaceCropDataset, MotionParams, build_dataset, synthesize, write_video
from odecam.training.datasets.faces import resize_landmarks

S = 128  # prepared crop size in these tests


def _astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())  # (512, 512, 3) uint8 RGB


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's face crop (256 px) and its landmarks in [-1, 1]."""
    img = _astronaut()[20:276, 110:366]  # a square around her face
    px = detect_landmarks(img)
    assert px is not None
    return np.ascontiguousarray(img), pixels_to_normalised(px, 0, 0, 256, 256)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, face) -> Path:
    """A 16-frame talking clip (mouth opening and closing, drifting in a 320x400 frame) and the
    astronaut still, prepared by ``odecam prepare-faces`` at 128 px."""
    tmp = tmp_path_factory.mktemp("faces")
    img, lm = face
    frames = []
    for t in range(16):
        opening = 0.45 * (0.5 - 0.5 * np.cos(2 * np.pi * t / 8))
        f, _ = synthesize(img, lm, MotionParams(mouth=opening))
        canvas = np.full((320, 400, 3), 90, np.uint8)
        x, y = 60 + 2 * t, 30 + t
        canvas[y:y + 256, x:x + 256] = f
        frames.append(canvas)
    clip = write_video(tmp / "talking.mp4", frames, fps=25)
    still = tmp / "astronaut.png"
    cv2.imwrite(str(still), cv2.cvtColor(_astronaut(), cv2.COLOR_RGB2BGR))
    out = tmp / "prepared"
    assert main(["prepare-faces", str(clip), str(still), "--out", str(out), "--size", str(S), "--no-progress"]) == 0
    return out


# -- prepare-faces ------------------------------------------------------------------------------


def test_prepare_faces_writes_crops_and_landmarks(prepared):
    d = prepared / "videos" / "talking"
    jpgs = sorted(d.glob("*.jpg"))
    lm = np.load(d / "landmarks.npy")
    assert len(jpgs) == 16 and lm.shape == (16, 68, 2) and lm.dtype == np.float32
    assert np.isfinite(lm).all() and np.abs(lm).max() < 1.0
    assert cv2.imread(str(jpgs[0])).shape == (S, S, 3)
    # the stored landmarks are where dlib finds them again on the written crops
    for k in (0, 4, 8):
        again = detect_landmarks(cv2.cvtColor(cv2.imread(str(jpgs[k])), cv2.COLOR_BGR2RGB))
        assert again is not None
        err = np.abs(pixels_to_normalised(again, 0, 0, S, S) - lm[k]).mean()
        assert err < 0.03, err
    # the mouth opens and closes with the clip (frame 4 is the widest)
    mouth = expression_signals(lm)[:, 0]
    assert mouth[4] > mouth[0] + 0.05 and mouth[4] > mouth[8] + 0.05
    # one crop for the whole clip: the face drifts inside it (2 px right per frame in the source)
    nose_x = lm[:, 30, 0]
    assert nose_x[-1] > nose_x[0] + 0.05
    still = np.load(prepared / "stills" / "astronaut.npy")
    assert still.shape == (68, 2) and np.isfinite(still).all()
    assert cv2.imread(str(prepared / "stills" / "astronaut.jpg")).shape == (S, S, 3)


def test_prepare_faces_refuses_the_evaluation_clip(tmp_path, capsys):
    bad = tmp_path / "carphone_pristine.mp4"
    bad.write_bytes(b"\x00" * 16)  # refused by name, before any decoding
    assert main(["prepare-faces", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "evaluation-only" in err and "Traceback" not in err
    assert main(["prepare-faces", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "o")]) == 2


def test_prepare_faces_leaves_out_excluded_files(tmp_path):
    from odecam.data.prepare import list_sources

    for name in ("a__driving__d6.mp4", "a__driving__d60.mp4", "b.mp4", "d19.jpg", "d9.jpg"):
        (tmp_path / name).write_bytes(b"")
    videos, stills = list_sources([tmp_path], exclude=["*driving__d6.mp4", "d19.jpg"])
    assert [p.name for p in videos] == ["a__driving__d60.mp4", "b.mp4"] and [p.name for p in stills] == ["d9.jpg"]
    # everything excluded: nothing to prepare, said in one line
    assert main(["prepare-faces", str(tmp_path / "b.mp4"), "--exclude", "b.*", "--out", str(tmp_path / "o")]) == 2


# -- landmark utilities -------------------------------------------------------------------------


def test_flip_permutation_is_an_involution_that_swaps_the_eyes(face):
    assert (FLIP_PERMUTATION[FLIP_PERMUTATION] == np.arange(68)).all()
    img, lm = face
    np.testing.assert_allclose(flip_landmarks(flip_landmarks(lm)), lm, atol=1e-6)
    flipped = flip_landmarks(lm)
    # after a flip, the face's right eye (36-41) sits where the left eye (42-47) was, mirrored
    np.testing.assert_allclose(flipped[RIGHT_EYE].mean(0) * [-1, 1], lm[LEFT_EYE].mean(0), atol=1e-6)
    # and it is what dlib finds on the mirrored photo
    again = detect_landmarks(np.ascontiguousarray(img[:, ::-1]))
    err = np.abs(pixels_to_normalised(again, 0, 0, 256, 256) - flipped).mean()
    assert err < 0.02, err


def test_resize_landmarks_matches_a_resized_image(face):
    img, lm = face
    small = cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA)
    again = pixels_to_normalised(detect_landmarks(cv2.resize(small, (256, 256))), 0, 0, 256, 256)
    err = np.abs(resize_landmarks(lm, 256, 128) - again).mean()
    assert err < 0.02, err
    np.testing.assert_allclose(normalised_to_pixels(pixels_to_normalised(np.array([[0.0, 127.0]]), 0, 0, 128, 128), 128),
                               [[0.0, 127.0]], atol=1e-4)


# -- landmark-guided motion ---------------------------------------------------------------------


def _dlib_signals(img: np.ndarray) -> np.ndarray:
    px = detect_landmarks(img)
    assert px is not None
    return expression_signals(px)


def test_synthetic_motion_moves_the_face_as_its_landmarks_say(face):
    img, lm = face
    base = expression_signals(lm)
    out, moved = synthesize(img, lm, MotionParams(mouth=0.4))
    assert expression_signals(moved)[0] > base[0] + 0.18  # returned landmarks: inner-lip gap opened
    assert _dlib_signals(out)[0] > _dlib_signals(img)[0] + 0.15  # and dlib sees the open mouth in the image
    mouth_px = normalised_to_pixels(moved[[62, 66]].mean(0, keepdims=True), 256)[0].round().astype(int)
    assert out[mouth_px[1], mouth_px[0]].mean() < 90  # a dark mouth interior is painted between the lips
    out, moved = synthesize(img, lm, MotionParams(blink=1.0))
    assert expression_signals(moved)[1] < 0.3 * base[1]
    out, moved = synthesize(img, lm, MotionParams(roll=0.2))
    assert expression_signals(moved)[2] == pytest.approx(base[2] + 0.2, abs=0.03)
    assert _dlib_signals(out)[2] == pytest.approx(_dlib_signals(img)[2] + 0.2, abs=0.06)
    for yaw in (-0.3, 0.3):  # the nose swings the way the head turns, in the landmarks and the image
        out, moved = synthesize(img, lm, MotionParams(yaw=yaw))
        assert np.sign(expression_signals(moved)[3] - base[3]) == np.sign(yaw)
        assert np.sign(_dlib_signals(out)[3] - _dlib_signals(img)[3]) == np.sign(yaw)
    out, moved = synthesize(img, lm, MotionParams())
    np.testing.assert_allclose(moved, lm, atol=1e-5)
    assert np.abs(out.astype(int) - img).mean() < 2.0


# -- faces:DIR ----------------------------------------------------------------------------------


def test_faces_items_shapes_and_flip(prepared):
    ds = build_dataset(f"faces:{prepared}", image_size=64, num_refs=2, augment=False)
    assert isinstance(ds, FaceCropDataset) and len(ds) == 2  # one clip, one still
    for i in range(len(ds)):
        item = ds[i]
        assert item["source"].shape == (3, 64, 64) and item["refs"].shape == (2, 3, 64, 64)
        assert item["source_landmarks"].shape == (68, 2) and item["refs_landmarks"].shape == (2, 68, 2)
        assert item["driving_landmarks"].dtype == torch.float32
        assert torch.isfinite(item["source_landmarks"]).all()
    flip = FaceCropDataset(prepared, "test", 64, 2, augment=AugmentConfig(1.0, 0, 0, 0, 0), synthetic_prob=0.0)
    plain = FaceCropDataset(prepared, "test", 64, 2, augment=False, synthetic_prob=0.0)
    a, b = flip[0], plain[0]
    torch.testing.assert_close(a["source"], b["source"].flip(-1))
    torch.testing.assert_close(a["source_landmarks"], torch.from_numpy(flip_landmarks(b["source_landmarks"].numpy())))


def test_far_sampling_picks_driving_frames_that_differ_more(prepared):
    ds = FaceCropDataset(prepared, "train", 64, 1, use_stills=False)
    clip = ds.clips[0]
    rng = np.random.default_rng(0)

    def mean_gap(far: bool) -> float:
        gaps = []
        for _ in range(300):
            idx = ds.sample_indices(clip, rng, far=far)
            gaps.append(np.abs(clip.signals[idx[-1], 0] - clip.signals[idx[0], 0]))
            assert len(set(idx.tolist())) == len(idx)
        return float(np.mean(gaps))

    assert mean_gap(True) > 1.5 * mean_gap(False)


def test_mixed_datasets_collate(prepared):
    ds = build_dataset([f"faces:{prepared}", "procedural:3"], image_size=32, num_refs=1)
    batch = next(iter(DataLoader(ds, batch_size=len(ds), shuffle=False)))
    assert batch["source"].shape == (5, 3, 32, 32)
    assert batch["source_landmarks"].shape == (5, 68, 2) and batch["refs_landmarks"].shape == (5, 1, 68, 2)
    known = torch.isfinite(batch["source_landmarks"]).all(dim=(1, 2))
    assert known.tolist() == [True, True, False, False, False]


def test_faces_spec_options_and_errors(prepared, tmp_path):
    from odecam.training.datasets import DatasetError

    ds = build_dataset(f"faces:{prepared},synthetic=0.5,far=1,stills=0.5,candidates=4", image_size=32, num_refs=1)
    assert (ds.synthetic_prob, ds.far_prob, ds.stills_share, ds.far_candidates) == (0.5, 1.0, 0.5, 4)
    with pytest.raises(DatasetError, match="Unknown option"):
        build_dataset(f"faces:{prepared},fast=1")
    with pytest.raises(DatasetError, match="prepare-faces"):
        build_dataset(f"faces:{tmp_path / 'nothing'}")
    with pytest.raises(DatasetError, match="prepare-faces"):
        build_dataset(f"faces:{tmp_path}")  # exists, but holds no videos/ or stills/


def test_faces_skips_a_corrupt_crop(prepared, tmp_path):
    import shutil

    copy = tmp_path / "p"
    shutil.copytree(prepared, copy)
    for f in (copy / "videos" / "talking").glob("*.jpg"):
        f.write_bytes(b"not a jpeg")
    ds = FaceCropDataset(copy, "test", 32, 1)
    item = ds[0]  # the clip fails, the portrait stands in
    assert item["source"].shape == (3, 32, 32) and ds.skipped == 1 and "clip:0" in ds.bad

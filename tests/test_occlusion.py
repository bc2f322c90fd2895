"""Occluders over a face (odecam.training.occluders), the drawn hand of scripts/hand_over_face.py, and the F_K
fine-tune of scripts/occlusion_fk.py: on the astronaut (a real photo) and the built-in carphone clip."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from odecam.assets import DEFAULT_WEIGHTS, video_path
from odecam.checkpoint import read_checkpoint
from odecam.data.landmarks import pixels_to_normalised
from odecam.data.prepare import detect_landmarks
from odecam.training.occluders import random_occluder

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's face crop (256x256 uint8 RGB) and its dlib landmarks (68, 2) in pixels."""
    from skimage import data

    img = np.ascontiguousarray(data.astronaut()[20:276, 110:366])
    lm = detect_landmarks(img)
    assert lm is not None
    return img, lm


def test_occluders_cover_part_of_the_face_and_nothing_far_from_it(face):
    crop, lm0 = face
    img = np.zeros((768, 768, 3), np.uint8)  # the face in the middle of a large canvas
    img[256:512, 256:512] = crop
    lm = lm0 + 256.0
    donor = np.ascontiguousarray(img[::-1])
    x0, y0 = lm.min(0)
    x1, y1 = lm.max(0)
    face_w = x1 - x0
    yy, xx = np.mgrid[0:768, 0:768]
    far = (xx < x0 - 1.5 * face_w) | (xx > x1 + 1.5 * face_w) | (yy < y0 - 1.5 * face_w) | (yy > y1 + 1.5 * face_w)
    covered = []
    for seed in range(40):
        occ, mask = random_occluder(np.random.default_rng(seed), img, lm, donor)
        assert occ.shape == img.shape and occ.dtype == np.uint8 and mask.shape == img.shape[:2]
        assert 0.0 <= mask.min() and mask.max() <= 1.0
        inside = mask[int(y0):int(y1), int(x0):int(x1)].mean()
        covered.append(inside)
        changed = np.abs(occ.astype(int) - img.astype(int)).max(axis=2) > 0
        assert not (changed & far).any()  # nothing farther than 1.5 face widths from the face
        assert not (changed & (mask == 0)).any()  # it changes pixels under its mask only
    covered = np.array(covered)
    assert (covered > 0.02).mean() > 0.9 and 0.05 < np.median(covered) < 0.5, covered
    a, _ = random_occluder(np.random.default_rng(7), img, lm, donor)
    b, _ = random_occluder(np.random.default_rng(7), img, lm, donor)
    assert np.array_equal(a, b)  # the generator decides everything


def test_drawn_hand_covers_mouth_and_chin_and_leaves_the_rest(tmp_path):
    out = tmp_path / "hand.mp4"
    main = runpy.run_path(str(SCRIPTS / "hand_over_face.py"))["main"]
    assert main(["carphone", "-o", str(out), "--start", "20", "--stop", "50"]) == 0

    def read(path):
        cap = cv2.VideoCapture(str(path))
        frames = []
        while (f := cap.read())[0]:
            frames.append(f[1].astype(np.int16))
        return frames

    src, hand = read(video_path("carphone")), read(out)
    assert len(src) == len(hand) == 120
    from odecam.evaluation.expression import landmarks68

    lm = landmarks68(cv2.cvtColor(src[35].astype(np.uint8), cv2.COLOR_BGR2RGB))
    mx, my = lm[48:68].mean(0).round().astype(int)
    for i in (5, 19, 50, 90):  # outside the cover: the clip as it was (up to the codec)
        assert np.abs(hand[i] - src[i]).mean() < 4
    for i in (35, 40):  # fully in: the mouth is under a skin-toned hand
        patch = hand[i][my - 3:my + 4, mx - 3:mx + 4].reshape(-1, 3).mean(0)
        assert np.abs(patch - np.array([120, 150, 205])).max() < 40, patch
    rc = runpy.run_path(str(SCRIPTS / "hand_over_face.py"))["main"]
    with pytest.raises(SystemExit):
        rc(["carphone", "-o", str(out), "--start", "90", "--stop", "200"])


def test_fine_tune_moves_only_f_k_resumes_and_measures(tmp_path, face):
    """Three steps, then a resume to five: only F_K's tensors differ from the teacher's, the losses are logged and
    plotted, and --measure reports the drift under the hand on carphone."""
    img, lm = face
    data = tmp_path / "faces"
    (data / "stills").mkdir(parents=True)
    cv2.imwrite(str(data / "stills" / "astronaut.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    np.save(data / "stills" / "astronaut.npy", pixels_to_normalised(lm, 0, 0, img.shape[0], img.shape[0]).astype(np.float32))
    run = tmp_path / "run"
    main = runpy.run_path(str(SCRIPTS / "occlusion_fk.py"))["main"]
    threads = torch.get_num_threads()
    try:
        common = ["--data", str(data), "--run", str(run), "--batch", "2", "--log-every", "1", "--save-every", "2"]
        assert main(common + ["--steps", "3"]) == 0
        assert main(common + ["--steps", "5", "--resume"]) == 0
        state = torch.load(run / "state.pt", weights_only=True)
        assert state["step"] == 5
        rows = (run / "losses.csv").read_text().splitlines()
        assert rows[0] == "step,occluded,clean" and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4", "5"]
        assert all(float(v) >= 0 for r in rows[1:] for v in r.split(",")[1:])
        assert (run / "losses.png").stat().st_size > 1000
        _, teacher, _ = read_checkpoint(DEFAULT_WEIGHTS)
        _, student, meta = read_checkpoint(run / "student.safetensors")
        assert set(student) == set(teacher)
        moved = {k for k in teacher if not torch.equal(teacher[k], student[k])}
        assert moved and all(k.startswith("kp_detector.") for k in moved)
        assert "fine-tuned for 5 steps" in meta["trained_on"] and "keypoint_roles" in meta
        out = tmp_path / "drift.json"
        assert main(["--measure", str(run / "student.safetensors"), "--clips", "carphone", "--max-frames", "6",
                     "--json", str(out)]) == 0
        row = json.loads(out.read_text())["clips"]["carphone_pristine"]
        assert row["frames"] >= 5 and row["teacher"]["clean_px"] == 0.0
        assert row["teacher"]["under_hand_px"] > 1.0  # the hand moves the shipped F_K's keypoints
        assert len(row[str(run / "student.safetensors")]["per_keypoint_under_hand_px"]) == 10
    finally:
        torch.set_num_threads(threads)

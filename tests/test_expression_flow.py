"""Expression-flow supervision: the exact backward field of landmark-guided synthetic motion.

``synthesize_with_field`` returns the field that carries the portrait onto its synthetic frame; face-crop
items hand it on as ``driving_field`` (flipped with the frames); ``expression_flow_loss`` compares the
model's fields with it where it is known.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from odecam.data.landmarks import pixels_to_normalised
from odecam.data.prepare import detect_landmarks
from odecam.model.geometry import make_coordinate_grid
from odecam.training.datasets import AugmentConfig, MotionParams
from odecam.training.datasets.common import FIELD_GRID
from odecam.training.datasets.faces import FaceCropDataset
from odecam.training.datasets.landmark_motion import synthesize, synthesize_with_field
from odecam.training.warp_supervision import expression_flow_loss


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, np.ndarray]:
    from skimage import data

    img = np.ascontiguousarray(data.astronaut()[20:276, 110:366])
    px = detect_landmarks(img)
    assert px is not None
    return img, pixels_to_normalised(px, 0, 0, 256, 256)


def _warp(img: np.ndarray, field: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``img`` (S, S, 3) uint8 at p + field(p); -> (warped (3, S, S), known (S, S) bool)."""
    s = img.shape[0]
    f = torch.from_numpy(np.moveaxis(field, -1, 0).copy())[None]
    up = F.interpolate(torch.nan_to_num(f), size=(s, s), mode="bilinear", align_corners=True)
    known = F.interpolate(torch.isfinite(f).all(1, keepdim=True).float(), size=(s, s), mode="bilinear",
                          align_corners=True)[0, 0] > 0.999
    grid = make_coordinate_grid(s, s, torch.float32, torch.device("cpu")).view(1, s, s, 2) + up.permute(0, 2, 3, 1)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)[0], known


@pytest.mark.parametrize("motion", [MotionParams(mouth=0.4), MotionParams(blink=1.0, yaw=0.3),
                                    MotionParams(mouth=0.3, roll=0.2, pitch=0.1, teeth=True)])
def test_field_reproduces_the_synthetic_frame(face, motion):
    img, lm = face
    out, lm_out, field = synthesize_with_field(img, lm, motion)
    assert field.shape == (FIELD_GRID, FIELD_GRID, 2) and field.dtype == np.float32
    plain, lm_plain = synthesize(img, lm, motion)
    np.testing.assert_array_equal(out, plain)  # the same frame as synthesize
    np.testing.assert_array_equal(lm_out, lm_plain)
    warped, known = _warp(img, field)
    target = torch.from_numpy(out).permute(2, 0, 1).float() / 255
    source = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    err = (warped - target).abs().mean(0)[known].mean().item()
    still = (source - target).abs().mean(0)[known].mean().item()
    assert err < 0.004 and err < 0.1 * still, (err, still)
    assert 0.7 < known.float().mean().item() < 1.0  # the painted mouth / eyes are left out, nothing else


def test_painted_mouth_is_unknown(face):
    img, lm = face
    _, lm_out, field = synthesize_with_field(img, lm, MotionParams(mouth=0.5))
    g = FIELD_GRID
    mouth = lm_out[60:68].mean(0)  # the opened inner mouth's centre, [-1, 1]
    i, j = (np.round((mouth[::-1] + 1) / 2 * (g - 1))).astype(int)
    assert np.isnan(field[i, j]).all()
    chin = lm_out[8]  # the chin moved down with the jaw: a known, downward field (sample above it)
    ci, cj = (np.round((chin[::-1] + 1) / 2 * (g - 1))).astype(int)
    assert np.isfinite(field[ci - 1, cj]).all() and field[ci - 1, cj, 1] < -0.02


def test_identity_motion_has_a_zero_field(face):
    img, lm = face
    _, _, field = synthesize_with_field(img, lm, MotionParams())
    assert np.abs(field).max() < 1e-5


def _prepared_still(tmp_path, face) -> None:
    """The face as one portrait of a folder prepared like `odecam prepare-faces` writes it: tmp_path/prepared."""
    import cv2

    img, lm = face
    still = tmp_path / "prepared" / "stills"
    still.mkdir(parents=True)
    cv2.imwrite(str(still / "a.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 98])
    np.save(still / "a.npy", lm.astype(np.float32))


def test_face_items_carry_the_field_and_flip_it(tmp_path, face):
    _prepared_still(tmp_path, face)
    seen = 0
    for flip in (0.0, 1.0):
        ds = FaceCropDataset(tmp_path / "prepared", "test", 128, 0, augment=AugmentConfig(flip, 0, 0, 0, 0))
        for k in range(6):
            ds.seed = k
            item = ds[0]
            f = item["driving_field"]
            assert f.shape == (2, FIELD_GRID, FIELD_GRID)
            if not torch.isfinite(f).any():  # the source itself was moved: unknown
                continue
            seen += 1
            src = (item["source"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            warped, known = _warp(src, f.permute(1, 2, 0).numpy())
            err = (warped - item["driving"]).abs().mean(0)[known].mean().item()
            still_err = (item["source"] - item["driving"]).abs().mean(0)[known].mean().item()
            assert err < 0.5 * still_err + 0.002, (flip, k, err, still_err)
    assert seen >= 2


def test_expression_flow_loss_known_answers():
    target = torch.zeros(2, 2, FIELD_GRID, FIELD_GRID)
    target[:, 1] = 0.1  # everything moves down by 0.1
    pred = torch.zeros(2, 2, 16, 16, requires_grad=True)
    loss = expression_flow_loss(pred, target)
    assert loss.item() == pytest.approx(0.05)  # |0 - 0| and |0 - 0.1| averaged over (x, y)
    loss.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    target[1] = float("nan")  # the second item is unknown: only the first counts
    target[0, :, :24] = float("nan")  # and the top half of the first
    pred2 = torch.zeros(2, 2, 16, 16)
    pred2[1] = 5.0
    assert expression_flow_loss(pred2, target).item() == pytest.approx(0.05)
    assert expression_flow_loss(pred2, torch.full_like(target, float("nan"))).item() == 0.0


def test_training_logs_the_expression_flow_loss(tmp_path, face):
    import cv2

    from odecam.training.trainer import TrainConfig, Trainer

    img, lm = face
    still = tmp_path / "prepared" / "stills"
    still.mkdir(parents=True)
    cv2.imwrite(str(still / "a.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    np.save(still / "a.npy", lm.astype(np.float32))
    cfg = TrainConfig.from_dict({
        "model": "tiny", "num_refs": 0, "batch_size": 4, "steps": 2, "checkpoint_every": 100, "log_every": 1,
        "data": [f"faces:{tmp_path / 'prepared'}"], "image_size": 64, "seed": 3,
        "loss": {"perceptual": 0.0, "l1": 1.0, "expression_flow": 10.0},
    })
    last = Trainer(cfg, tmp_path / "run", progress=False).train()
    assert last["expression_flow"] > 0 and math.isfinite(last["total"])
    rows = list(csv.DictReader(open(tmp_path / "run" / "losses.csv")))
    assert float(rows[-1]["expression_flow"]) > 0


def test_rotate_item_moves_a_marked_pixel_to_its_rotated_landmark():
    """A quarter turn is exact: the bright pixel at a landmark lands where the rotated landmark says."""
    from odecam.data.landmarks import pixels_to_normalised
    from odecam.training.datasets.common import rotate_item

    s = 65
    frames = np.zeros((2, s, s, 3), np.uint8)
    px = np.full((68, 2), 32.0)
    px[0] = (50.0, 12.0)  # (x, y) in pixels
    frames[:, 12, 50] = 255
    lm = np.repeat(pixels_to_normalised(px, 0, 0, s, s)[None], 2, 0).astype(np.float32)
    for deg in (90.0, -90.0, 180.0):
        out, lm_r, _ = rotate_item(frames, lm, None, deg)
        y, x = np.unravel_index(out[1, :, :, 0].argmax(), (s, s))
        got = (lm_r[1, 0] + 1) / 2 * (s - 1)
        assert np.allclose(got, (x, y), atol=1e-3), (deg, got, (x, y))
        assert np.allclose(lm_r[1, 1], 0.0, atol=1e-6)  # the centre stays


@pytest.mark.parametrize("deg", [25.0, -40.0])
def test_rotated_field_still_reproduces_the_rotated_frame(face, deg):
    """Frames and field turned together: warping the turned source by the turned field gives the turned
    synthetic frame as closely as before the turn, and far better than no motion."""
    from odecam.training.datasets.common import rotate_item

    img, lm = face
    out, _, field = synthesize_with_field(img, lm, MotionParams(mouth=0.5, yaw=0.3, roll=0.1))
    (src_r, drv_r), _, field_r = rotate_item(np.stack([img, out]), None, field, deg)
    warped, known = _warp(src_r, field_r)
    target = torch.from_numpy(drv_r).permute(2, 0, 1).float() / 255
    err = (warped - target).abs().mean(0)[known].mean().item()
    still = (torch.from_numpy(src_r).permute(2, 0, 1).float() / 255 - target).abs().mean(0)[known].mean().item()
    assert known.float().mean() > 0.3
    assert err < 0.006 and err < 0.25 * still, (err, still)


def test_faces_spec_rotate_option_turns_items(tmp_path, face):
    from odecam.training.datasets import DatasetError, build_dataset

    _prepared_still(tmp_path, face)
    ds = build_dataset(f"faces:{tmp_path / 'prepared'},rotate=30", split="train", image_size=128, num_refs=0)
    assert ds.augment.rotation == 30.0
    rolls = []
    for _ in range(8):
        item = ds[0]
        p = item["source_landmarks"].numpy()
        if np.isfinite(p).all():
            d = p[45] - p[36]
            rolls.append(np.degrees(np.arctan2(d[1], d[0])))
    assert len(rolls) >= 4 and np.ptp(rolls) > 10  # tilted by different angles
    with pytest.raises(DatasetError, match="rotate=DEG"):
        build_dataset(f"faces:{tmp_path / 'prepared'},turn=30", split="train", image_size=128, num_refs=0)

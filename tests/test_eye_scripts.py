"""scripts/eye_openness_crops.py: eye openness labels and the eye crops placed by the eyelid keypoints."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import torch

MOD = runpy.run_path(str(Path(__file__).resolve().parents[1] / "scripts" / "eye_openness_crops.py"))


def _landmarks(gap: float) -> np.ndarray:
    """68 points with two eyes 30 px wide whose lids are ``gap`` px apart."""
    lm = np.zeros((68, 2))
    for corner_a, corner_b, up, low, x0 in ((36, 39, (37, 38), (41, 40), 70.0), (42, 45, (43, 44), (47, 46), 150.0)):
        lm[corner_a], lm[corner_b] = (x0, 100.0), (x0 + 30.0, 100.0)
        for k, (u, lo) in enumerate(zip(up, low)):
            lm[u] = (x0 + 10.0 * (k + 1), 100.0 - gap / 2)
            lm[lo] = (x0 + 10.0 * (k + 1), 100.0 + gap / 2)
    return lm


def test_openness_is_the_lid_gap_over_the_eye_width_per_eye():
    got = MOD["eye_openness"](np.stack([_landmarks(9.0), _landmarks(0.0)]))
    assert got.shape == (2, 2)
    assert np.allclose(got[0], 0.3) and np.allclose(got[1], 0.0)


def test_crops_are_fixed_size_and_the_left_eye_is_mirrored():
    """A frame symmetric about its middle column gives the same crop for the right eye and the mirrored left."""
    rng = np.random.default_rng(0)
    half = rng.integers(0, 256, (256, 128, 3), dtype=np.uint8)
    frame = np.ascontiguousarray(np.concatenate([half, half[:, ::-1]], axis=1))
    lids = np.array([[100.0, 110.0], [255.0 - 100.0, 110.0]])  # mirror images of each other
    crops = MOD["eye_crops"](frame, lids, 0.15, (1.6, 1.0))
    assert crops.shape == (2, 20, 32) and crops.dtype == np.float32
    assert float(np.abs(crops[0] - crops[1]).mean()) < 0.02
    assert float(np.abs(crops[0] - crops[0][:, ::-1]).mean()) > 0.05  # not symmetric by itself: mirroring did it


def test_the_eye_network_reads_a_batch_of_crops():
    net = MOD["EyeNet"]()
    out = net(torch.rand(5, 1, 20, 32))
    assert out.shape == (5,)
    assert sum(p.numel() for p in net.parameters()) < 20_000


def test_training_degradation_blurs_half_the_crops_and_keeps_their_mean():
    gen = torch.Generator().manual_seed(0)
    crops = torch.zeros(64, 1, 20, 32)
    crops[..., 10, 16] = 1.0  # one bright pixel in the middle of each crop
    out = MOD["degrade"](crops, 2.0, 0.0, gen)
    assert torch.allclose(out.sum((1, 2, 3)), torch.ones(64), atol=1e-5)  # normalised kernels: nothing gained or lost
    spread = (out[..., 10, 16] < 0.9).float().mean()
    assert 0.3 < spread < 0.7  # about half of them blurred
    noisy = MOD["degrade"](torch.full((256, 1, 20, 32), 0.5), 0.0, 0.04, gen)
    assert 0.01 < float((noisy - 0.5).std()) < 0.04  # std U(0, 0.04): about 0.023 over the batch

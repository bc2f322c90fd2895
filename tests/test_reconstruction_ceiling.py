"""scripts/reconstruction_ceiling.py: no motion, one camera affine and dense flow, on videos with known motion."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import cv2
import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "reconstruction_ceiling.py"


def _texture(size: int = 160, seed: int = 0) -> np.ndarray:
    """Smooth random colour texture (S, S, 3) uint8: flow can lock onto it everywhere."""
    rng = np.random.default_rng(seed)
    noise = rng.random((size // 8, size // 8, 3)).astype(np.float32)
    return (cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)


def _write_video(path: Path, frames: list[np.ndarray]) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def _camera_pan(n: int = 6) -> list[np.ndarray]:
    """A still scene under a camera that turns and slides: every frame one global affine of the first."""
    scene = _texture(192)
    frames = []
    for i in range(n):
        m = cv2.getRotationMatrix2D((96, 96), 2.0 * i, 1.0)
        m[:, 2] += (1.5 * i, -1.0 * i)
        frames.append(cv2.warpAffine(scene, m, (192, 192), borderMode=cv2.BORDER_REFLECT)[16:176, 16:176].copy())
    return frames


def test_a_camera_pan_is_undone_by_one_affine(tmp_path):
    video, out = tmp_path / "pan.mp4", tmp_path / "ceiling.json"
    _write_video(video, _camera_pan())
    mod = runpy.run_path(str(SCRIPT))
    assert mod["main"](["--data", str(video), "--size", "128", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["frames"] == 5
    assert res["no_motion"] > 0.04
    assert res["camera_affine"] < 0.35 * res["no_motion"]
    assert res["dense_flow"] < 0.5 * res["no_motion"]


def test_a_moving_object_is_not_a_camera_motion(tmp_path):
    """Half the frame slides, half stays: no single affine fits, the dense flow still does."""
    scene, patch = _texture(160, 1), _texture(160, 2)
    frames = []
    for i in range(6):
        f = scene.copy()
        f[:, 80:] = np.roll(patch, 4 * i, axis=0)[:, 80:]
        frames.append(f)
    mod = runpy.run_path(str(SCRIPT))
    res = mod["measure"](frames)
    assert res["frames"] == 5
    assert res["dense_flow"] < 0.6 * res["no_motion"]
    assert res["camera_affine"] > 0.8 * res["no_motion"]


def test_a_missing_video_is_one_sentence(tmp_path):
    mod = runpy.run_path(str(SCRIPT))
    with pytest.raises(SystemExit) as exc:
        mod["main"](["--data", str(tmp_path / "nope.mp4")])
    assert "does not exist" in str(exc.value)


def test_reference_views_lower_the_ceiling_when_they_show_what_the_source_hides():
    """The scene changes halfway: the source cannot show the second half, a reference view from it can."""
    first, second = _texture(128, 3), _texture(128, 4)
    frames = [first] * 5 + [second] * 6
    res = runpy.run_path(str(SCRIPT))["measure"](frames, refs=1)
    assert res["refs"] == 1 and res["frames"] == 10
    assert res["best_view"] < 0.6 * res["no_motion"]
    assert res["dense_flow_views"] < 0.6 * res["dense_flow"]

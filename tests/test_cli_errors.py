"""Bad input gets one sentence naming the file and the fix, never a traceback; the demo writes a video."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from odecam.engine.images import load_image
from odecam.errors import InputImageError


def _odecam(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "odecam.cli", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def bad_images(tmp_path):
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "grey.png")
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "tiny.png")
    Image.fromarray(np.zeros((40, 9000, 3), np.uint8)).save(tmp_path / "huge.png")
    Image.fromarray(np.zeros((64, 64), np.uint16)).save(tmp_path / "deep.png")
    (tmp_path / "text.jpg").write_text("not an image")
    return tmp_path


@pytest.mark.parametrize("name,match", [
    ("missing.jpg", "does not exist"),
    ("grey.png", "greyscale"),
    ("tiny.png", "only 12x10 pixels"),
    ("huge.png", "too large"),
    ("deep.png", "not 8-bit RGB"),
    ("text.jpg", "not a readable image"),
])
def test_bad_images_one_sentence(bad_images, name, match):
    with pytest.raises(InputImageError, match=match) as err:
        load_image(bad_images / name, "source image")
    assert name in str(err.value)


def test_cli_bad_source_no_traceback(bad_images, tmp_path):
    res = _odecam("demo", "--preset", "tiny", "--source", str(bad_images / "grey.png"), "-o", str(tmp_path / "x.mp4"))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "grey.png" in res.stderr and "RGB" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_cli_bad_driving_no_traceback(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"\x00garbage" * 10)
    res = _odecam("demo", "--preset", "tiny", "--driving", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "x.mp4"))
    assert res.returncode == 2 and "Traceback" not in res.stderr and "clip.mp4" in res.stderr


def test_demo_writes_playable_side_by_side_video(tmp_path):
    out = tmp_path / "demo.mp4"
    res = _odecam("demo", "--max-frames", "12", "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert "weights:" in res.stdout and "latency:" in res.stdout and "p95" in res.stdout
    cap = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    assert len(frames) == 12
    assert frames[0].shape[1] == 2 * frames[0].shape[0]  # driving | output
    assert frames[0].std() > 5  # real picture content, not a blank frame

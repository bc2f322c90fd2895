"""Avatar photo framing (odecam.engine.portrait) on real images: the astronaut, the astronaut pasted
off-centre into a wide canvas, and an image with no face."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from odecam.engine.portrait import describe_portrait, find_portrait, frame_portrait, load_portrait
from odecam.realtime.framing import FramingConfig


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


def _wide(astronaut: np.ndarray, x: int = 900, y: int = 50) -> np.ndarray:
    canvas = np.full((600, 1400, 3), 200, np.uint8)
    h, w = astronaut.shape[:2]
    w = min(w, 1400 - x)
    canvas[y:y + h, x:x + w] = astronaut[:, :w]
    return canvas


def _inside(face, box) -> bool:
    x0, y0, x1, y1 = face
    return box.x <= x0 and box.y <= y0 and x1 <= box.x + box.size and y1 <= box.y + box.size


def test_astronaut_face_is_framed_with_live_margins(astronaut):
    found = find_portrait(astronaut)
    assert found.box is not None and found.face is not None
    x0, y0, x1, y1 = found.face
    # the astronaut's face (Eileen Collins) is at about x 180-270, y 80-175 of the 512x512 photo
    assert 160 < x0 < 200 and 250 < x1 < 290 and 60 < y0 < 100 and 160 < y1 < 200
    side = (x1 - x0 + y1 - y0) / 2
    assert found.box.size == pytest.approx(FramingConfig().face_scale * side, abs=2)
    assert _inside(found.face, found.box)
    assert found.image.shape == (found.box.size, found.box.size, 3)
    crop, box = frame_portrait(astronaut)
    assert box == found.box and np.array_equal(crop, found.image)
    line = describe_portrait(found, "source image astronaut.png")
    assert "face found at" in line and f"cropped to {box.size}x{box.size}" in line


def test_wide_canvas_keeps_the_off_centre_face(astronaut):
    wide = _wide(astronaut)
    crop, box = frame_portrait(wide)
    assert box is not None
    # the face sits at x about 1080-1170 of 1400: a centre square (x 400-1000) would miss it entirely
    assert box.x > 1000 and box.x + box.size <= 1400
    # the crop holds the same pixels as the astronaut's own crop (shifted by the paste offset, within the detector's few pixels)
    own = find_portrait(astronaut)
    assert abs(box.x - (own.box.x + 900)) <= 8 and abs(box.y - (own.box.y + 50)) <= 8
    assert crop.shape[0] == crop.shape[1] == box.size


def test_face_near_the_edge_is_shifted_inside(astronaut):
    # face close to the right edge: the square is shifted to stay inside the image, never padded
    wide = _wide(astronaut, x=1400 - 280, y=0)
    crop, box = frame_portrait(wide)
    assert box is not None and box.x + box.size == 1400 and crop.shape[:2] == (box.size, box.size)


def test_no_face_keeps_the_whole_image():
    rng = np.random.default_rng(0)
    noise = (rng.random((240, 400, 3)) * 255).astype(np.uint8)
    found = find_portrait(noise)
    assert found.box is None and found.image is noise
    assert "no face found" in describe_portrait(found)


def test_no_crop_takes_the_image_as_it_is(astronaut, tmp_path):
    from PIL import Image

    path = tmp_path / "wide.png"
    Image.fromarray(_wide(astronaut)).save(path)
    lines: list[str] = []
    image = load_portrait(path, "source image", crop=False, log=lines.append)
    assert image.shape == (600, 1400, 3) and "--no-crop" in lines[0]
    lines.clear()
    image = load_portrait(path, "source image", log=lines.append)
    assert image.shape[0] == image.shape[1] < 600 and "face found at" in lines[0] and "wide.png" in lines[0]

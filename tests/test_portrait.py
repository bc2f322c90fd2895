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


def _demo(args, capsys):
    import torch

    from odecam.cli import main

    n = torch.get_num_threads()
    try:
        rc = main(["demo", "--preset", "tiny", "--backend", "torch", "--max-frames", "3", *args])
    finally:
        torch.set_num_threads(n)
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def test_demo_frames_the_photo_and_the_driving_face(astronaut, tmp_path, capsys):
    from PIL import Image

    from odecam import assets
    from odecam.engine.video import probe_codec, read_frames
    from odecam.realtime.framing import FaceFramer

    wide = tmp_path / "wide.png"
    Image.fromarray(_wide(astronaut)).save(wide)
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 300, 3), 90, np.uint8)).save(blank)
    out = _demo(["--source", str(wide), "-o", str(tmp_path / "a.mp4")], capsys)
    assert "source image wide.png: face found at x 10" in out and "cropped to" in out
    assert "fps (frames over wall time" in out and "p50" in out and "p95" in out and "p99" in out
    out = _demo(["--source", str(wide), "--no-crop", "-o", str(tmp_path / "b.mp4")], capsys)
    assert "taken as it is (1400x600, --no-crop)" in out
    out = _demo(["--source", str(blank), "-o", str(tmp_path / "c.mp4")], capsys)
    assert "no face found in the 300x200 image; using the whole image" in out
    # the driving half of the output is the clip framed as live frames the webcam (FaceFramer)
    assert probe_codec(tmp_path / "a.mp4") == ("h264", "yuv420p", 3)
    written = next(read_frames(tmp_path / "a.mp4"))
    size = written.shape[0]
    framed = FaceFramer(FramingConfig(output_size=size)).process(next(read_frames(assets.default_driving_path())))
    assert np.abs(written[:, :size].astype(int) - framed.image.astype(int)).mean() < 6


def test_send_frames_the_avatar_before_sending(astronaut, capsys):
    import cv2

    from odecam.commands.send import _frame_avatar

    wide = _wide(astronaut)
    ok, png = cv2.imencode(".png", cv2.cvtColor(wide, cv2.COLOR_RGB2BGR))
    image, sent = _frame_avatar(wide, png.tobytes(), "wide.png", crop=True)
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(sent, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    own = find_portrait(wide)
    assert decoded.shape == image.shape == (own.box.size, own.box.size, 3)
    assert np.abs(decoded.astype(int) - own.image.astype(int)).mean() < 3  # the JPEG of the face crop
    assert "face found at" in capsys.readouterr().out
    same_image, same_bytes = _frame_avatar(wide, png.tobytes(), "wide.png", crop=False)
    assert same_bytes == png.tobytes() and same_image is wide


@pytest.mark.parametrize("degrees", [20.0, -20.0])
def test_a_tilted_photo_is_turned_upright(astronaut, degrees):
    from odecam.realtime.framing import face_roll
    from odecam.rotation import rotate_image

    own_roll = face_roll(astronaut, find_portrait(astronaut).face)  # about -2.7 degrees: upright enough
    tilted = rotate_image(astronaut, degrees)
    found = find_portrait(tilted)
    assert found.roll == pytest.approx(degrees + own_roll, abs=3)
    # the crop's eye line is level now, and it holds the same face as the upright photo's crop
    from odecam.realtime.framing import detect_faces

    face = detect_faces(found.image, detect_height=found.image.shape[0])[0]
    assert abs(face_roll(found.image, face)) < 4
    upright = find_portrait(astronaut)
    assert abs(found.box.size - upright.box.size) <= 8
    line = describe_portrait(found, "source image tilted.png")
    assert f"tilted {abs(found.roll):.0f} degrees, turned upright (--keep-tilt keeps it)" in line
    # level=False (--keep-tilt) takes the tilt as it is
    kept = find_portrait(tilted, level=False)
    assert kept.roll == 0.0 and "turned upright" not in describe_portrait(kept)
    assert abs(face_roll(kept.image, detect_faces(kept.image, detect_height=kept.image.shape[0])[0])) > 12


def test_an_upright_photo_is_not_turned(astronaut):
    found = find_portrait(astronaut)
    assert found.roll == 0.0
    assert np.array_equal(found.image, find_portrait(astronaut, level=False).image)


@pytest.mark.parametrize("command", ["demo", "live", "serve", "receive", "send", "eval"])
def test_every_command_taking_an_avatar_photo_has_keep_tilt(command):
    from odecam.cli import build_parser

    parser = build_parser()
    required = {"eval": ["--data", "x.mp4"], "send": ["--to", "127.0.0.1:9000"]}.get(command, [])
    args = parser.parse_args([command, *required, "--keep-tilt"])
    assert args.keep_tilt is True
    assert parser.parse_args([command, *required]).keep_tilt is False

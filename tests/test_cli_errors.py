"""Bad input gets one sentence naming the file and the fix, never a traceback; the demo writes a video."""

import re
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
    res = _odecam("demo", "--preset", "tiny", "--backend", "torch", "--driving", str(tmp_path / "clip.mp4"), "-o",
                  str(tmp_path / "x.mp4"))
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


# -- mistakes on the command line: one sentence, exit status 2, no traceback or library noise -------------
from odecam.cli import build_parser, main  # noqa: E402

def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    return action.choices


def _required(parser) -> list[str]:
    """The least a subcommand needs to get past argparse: a value for each positional and required option."""
    argv = []
    for a in parser._actions:
        if not a.option_strings and a.dest not in ("help",):
            argv.append("x")
        elif a.required:
            argv += [a.option_strings[0], "tiny" if a.dest == "config" else "x"]
    return argv


REQUIRED = {name: _required(p) for name, p in _subparsers().items()}


def test_every_numeric_flag_is_range_checked():
    """No command takes a bare int/float: each number goes through a shared, range-checked type."""
    bare = [f"{name} {a.option_strings[0]}" for name, p in _subparsers().items() for a in p._actions
            if a.type in (int, float)]
    assert not bare, f"flags without a range: {bare}"


@pytest.mark.parametrize("argv,match", [
    (["demo", "--ode-steps", "-3"], "argument --ode-steps: -3 is out of range; use a whole number from 1 to 64"),
    (["demo", "--max-frames", "0"], "argument --max-frames: 0 is out of range; use a whole number of at least 1"),
    (["demo", "--max-frames", "ten"], "'ten' is not a whole number"),
    (["live", "--ode-steps", "1000"], "from 1 to 64"),
    (["live", "--fps", "0"], "argument --fps: 0 is out of range"),
    (["live", "--zoom", "inf"], "argument --zoom: inf is out of range"),
    (["live", "--pan-x", "nan"], "finite"),
    (["live", "--rest-fade", "-1"], "argument --rest-fade: -1 is out of range; use a number at least 0 and at most 60"),
    (["live", "--rest-fade", "61"], "argument --rest-fade: 61 is out of range"),
    (["live", "--background", "mauve"], "argument --background: 'mauve' is not a colour; use black, blue, gray, "
                                        "green, grey, white or #RRGGBB"),
    (["live", "--background", "#12345"], "argument --background: '#12345' is not a colour"),
    (["send", "--to", "x", "--rest-fade", "nan"], "argument --rest-fade"),
    (["serve", "--port", "70000"], "not a port number"),
    (["serve", "--ode-steps", "0"], "from 1 to 64"),
    (["receive", "--fps", "-1"], "argument --fps"),
    (["send", "--to", "x", "--threads", "0"], "argument --threads"),
    (["export", "-o", "x", "--num-refs", "7"], "argument --num-refs: 7 is out of range; use a whole number from 0 to 6"),
    (["export", "-o", "x", "--ode-steps", "-3"], "argument --ode-steps"),
    (["eval", "--data", "x", "--refs", "-1"], "argument --refs"),
    (["demo", "--lip-gain", "9"], "argument --lip-gain: 9 is out of range; use a number at least 0 and at most 4"),
    (["live", "--lip-gain", "-1"], "argument --lip-gain"),
    (["bench", "--frames", "0"], "argument --frames"),
    (["bench", "--ode-steps", "4", "0"], "argument --ode-steps"),
    (["train", "--config", "tiny", "--out", "x", "--image-size", "100"], "in multiples of 32"),
    (["train", "--config", "tiny", "--out", "x", "--lr", "0"], "argument --lr"),
])
def test_flags_out_of_range_get_usage_and_one_sentence(capsys, argv, match):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert f"usage: odecam {argv[0]}" in err and "Traceback" not in err
    assert re.search(match, err.strip().splitlines()[-1]), err


@pytest.mark.parametrize("command", sorted(REQUIRED))
def test_unknown_flag_shows_that_subcommands_usage(capsys, command):
    assert main([command, *REQUIRED.get(command, []), "--bogus-flag"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"usage: odecam {command} ")
    assert err[-1] == (f"odecam {command}: error: unknown option --bogus-flag; run 'odecam {command} --help' for the "
                       "options it takes.")


def test_unknown_flag_subprocess_suggests_the_near_one():
    res = _odecam("demo", "--max-framez", "3", timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith("usage: odecam demo ")
    assert res.stderr.strip().splitlines()[-1] == ("odecam demo: error: unknown option --max-framez; did you mean "
                                                   "--max-frames? run 'odecam demo --help' for the options it takes.")


def _backend_commands():
    return [name for name, p in _subparsers().items() if "--backend" in p._option_string_actions]


@pytest.mark.parametrize("command", _backend_commands())
def test_unknown_backend_on_any_command(capsys, command):
    try:
        rc = main([command, *REQUIRED.get(command, []), "--backend", "nosuch"])
    except SystemExit as done:  # a command whose --backend has argparse choices
        rc = done.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "nosuch" in err[-1] and "onnxruntime" in err[-1]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_tensorrt_without_cuda_names_the_cpu_backends(capsys, tmp_path):
    assert main(["demo", "--backend", "tensorrt", "-o", str(tmp_path / "x.mp4")]) == 2
    out = capsys.readouterr()
    err = out.err.strip().splitlines()
    assert len(err) == 1 and "needs a CUDA GPU" in err[0] and "--backend onnxruntime" in err[0]
    assert "--format" not in err[0] and "export" not in err[0]
    assert out.out == "" and not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize("command,flag", [("demo", "--driving"), ("live", "--video"), ("send", "--video")])
def test_still_image_as_driving_video(capsys, tmp_path, command, flag):
    photo = tmp_path / "me.jpg"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(photo)
    assert main([command, *REQUIRED.get(command, []), flag, str(photo)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"{flag} '{photo}' is a still JPEG image, not a video; pass a video file" in err[0]
    assert ("--avatar" if command == "send" else "--source") + f" {photo}" in err[0]


def test_live_without_camera_names_video_and_no_opencv_noise(tmp_path):
    res = _odecam("live", "--preset", "tiny", "--backend", "torch", "--camera", "63", "--record", str(tmp_path / "r.mp4"),
                  "--max-frames", "1", timeout=180)
    assert res.returncode == 2, res.stderr
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in res.stderr, res.stderr
    assert err[0].startswith("odecam live: error: Could not open camera 63") and "--video FILE" in err[0]


def _not_checkpoints(folder):
    import tarfile
    import zipfile

    import torch

    (folder / "notes.pth").write_text("not a checkpoint\n")
    (folder / "empty.pth").write_bytes(b"")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(folder / "photo.pth", format="PNG")
    np.save(folder / "array.npy", np.zeros(3))
    with zipfile.ZipFile(folder / "archive.pth", "w") as z:
        z.writestr("a.txt", "hi")
    with tarfile.open(folder / "real.tar", "w") as t:
        t.add(folder / "notes.pth", arcname="notes.pth")
    torch.save({"state_dict": {"a": torch.zeros(1)}}, folder / "other.pth")
    torch.save({1: 2, "x": 3}, folder / "odd-keys.pth")
    torch.save({"kp_detector": [1, 2], "generator": {}}, folder / "list-part.pth")
    torch.save({"kp_detector": {3: torch.zeros(1)}, "generator": {}}, folder / "int-key.pth")
    torch.save([torch.zeros(2)], folder / "list.pth")
    (folder / "dir.pth").mkdir()
    return ["notes.pth", "empty.pth", "photo.pth", "array.npy", "archive.pth", "real.tar", "other.pth", "odd-keys.pth",
            "list-part.pth", "int-key.pth", "list.pth", "dir.pth", "missing.pth"]


def test_convert_fomm_on_files_that_are_not_checkpoints(tmp_path, capsys):
    for name in _not_checkpoints(tmp_path):
        assert main(["convert-fomm", str(tmp_path / name), "-o", str(tmp_path / "out.safetensors")]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and name in err[0] and "Traceback" not in err[0], (name, err)
        assert "code" not in err[0] or name == "missing.pth", err  # no hint of a hostile pickle for plain junk
    assert not (tmp_path / "out.safetensors").exists()


def test_convert_fomm_on_a_text_file_subprocess(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    res = _odecam("convert-fomm", str(tmp_path / "notes.txt"), "-o", str(tmp_path / "o.safetensors"), timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        f"odecam convert-fomm: error: '{tmp_path / 'notes.txt'}' is not a PyTorch checkpoint of plain tensors "
        "(torch.load(weights_only=True) cannot read it); pass FOMM's vox-cpk.pth.tar or vox-adv-cpk.pth.tar."]


@pytest.mark.parametrize("command,flag", [("demo", "--driving"), ("send", "--video")])
def test_missing_or_folder_driving_video_before_loading_anything(capsys, tmp_path, command, flag):
    assert main([command, *REQUIRED.get(command, []), flag, str(tmp_path / "nope.mp4")]) == 2
    assert capsys.readouterr().err.strip() == f"odecam {command}: error: {flag} file '{tmp_path / 'nope.mp4'}' does not exist; check the path."
    assert main([command, *REQUIRED.get(command, []), flag, str(tmp_path)]) == 2
    assert "is a folder; pass a video file" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["demo", "--driving", "carphone"], ["live", "--video", "carphone"]])
def test_carphone_names_the_built_in_clip_on_the_command_line(argv):
    from odecam.assets import default_driving_path
    from odecam.cli import preflight

    args = build_parser().parse_args(argv)
    preflight(args)
    assert getattr(args, argv[1].lstrip("-")) == str(default_driving_path())

"""Paste-back (odecam.engine.paste_back): the model's square blended back into the avatar's photo.

Known answers: the square the model is given, pasted back unchanged, gives the photo again (upright and tilted
photos, at the photo's size and fitted to a 1280x720 canvas); a flat frame fills the square's middle and fades
into the photo over the feather; the commands that take ``--paste-back`` write the photo.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from odecam.engine.images import to_image, to_tensor
from odecam.engine.paste_back import DEFAULT_FEATHER, PasteBack, Placement
from odecam.engine.portrait import avatar_photo, find_portrait
from odecam.realtime.virtual_camera import letterbox
from odecam.rotation import rotate_image

SIZE = 256


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def _wide_photo(roll: float) -> np.ndarray:
    """The astronaut off-centre in a wide grey photo (1400 x 600), its face turned by ``roll`` degrees."""
    photo = np.full((600, 1400, 3), 200, np.uint8)
    astronaut = data.astronaut()
    photo[50:562, 700:1212] = rotate_image(astronaut, roll) if roll else astronaut
    return photo


@pytest.mark.parametrize("roll", [0.0, 20.0])
@pytest.mark.parametrize("canvas", [None, (1280, 720)])
def test_the_square_the_model_sees_pasted_back_is_the_photo(roll, canvas):
    photo = _wide_photo(roll)
    found = find_portrait(photo)
    assert found.box is not None
    if roll:
        assert abs(found.roll) > 10  # the tilted face was turned upright before cropping: the paste turns it back
    square = to_image(to_tensor(found.image, SIZE))  # what the model is given (and renders at rest)
    paste = PasteBack(Placement.of_portrait(photo, found, SIZE), canvas)
    out = paste(square)
    expected = photo if canvas is None else letterbox(photo, *canvas)
    assert out.shape == expected.shape
    x0, y0, x1, y1 = paste.roi
    outside = np.ones(out.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    if canvas is None:
        assert np.array_equal(out[outside], photo[outside])  # nothing outside the square's box is touched
    else:
        assert _psnr(out[outside], expected[outside]) > 40
        assert out[:80].max() == 0 and out[-80:].max() == 0  # the wide photo letterboxed on black
    inside = paste._alpha > 0.99  # where the square alone is shown: the same picture, resampled twice
    assert inside.mean() > 0.3
    assert _psnr(out[y0:y1, x0:x1][inside], expected[y0:y1, x0:x1][inside]) > 30
    assert _psnr(out, expected) > 40


def test_a_flat_frame_fills_the_square_and_fades_into_the_photo():
    photo = np.full((300, 400, 3), 100, np.uint8)
    paste = PasteBack(Placement.of_square(photo, 100, 50, 200, SIZE))  # the square x 100-300, y 50-250
    out = paste(np.full((SIZE, SIZE, 3), 250, np.uint8))
    assert paste.roi == (99, 49, 301, 251)
    assert np.all(out[:, :99] == 100) and np.all(out[:49] == 100) and np.all(out[251:] == 100)
    assert np.all(out[100:200, 150:250] == 250)  # the middle: the frame alone
    row = out[150, 100:200, 0].astype(int)  # from the square's left edge to its centre
    share = (row - 100) / 150.0
    assert share[0] < 0.02 and share[-1] == 1.0
    assert np.all(np.diff(share) >= -1 / 150)  # rises (to rounding) ...
    ramp = DEFAULT_FEATHER * 200  # ... over the feather: 12% of the square's side
    assert share[int(ramp * 0.5)] == pytest.approx(0.5, abs=0.1) and share[int(ramp) + 2] == 1.0


def test_frames_come_in_a_ring_of_buffers_and_bad_frames_are_refused():
    photo = np.full((120, 160, 3), 50, np.uint8)
    paste = PasteBack(Placement.of_square(photo, 40, 20, 80, 64), buffers=3)
    frame = np.zeros((64, 64, 3), np.uint8)
    outs = [paste(frame) for _ in range(4)]
    assert len({id(o) for o in outs[:3]}) == 3 and outs[3] is outs[0]
    with pytest.raises(ValueError, match=r"expects a \(64, 64, 3\) uint8 frame"):
        paste(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="feather must be between 0 and 0.5"):
        PasteBack(Placement.of_square(photo, 40, 20, 80, 64), feather=0.7)


def test_bgr_frames_paste_into_the_photo_in_bgr():
    photo = np.zeros((100, 100, 3), np.uint8)
    photo[..., 0] = 255  # red in RGB
    paste = PasteBack(Placement.of_square(photo, 0, 0, 100, 64), order="bgr", feather=0.0)
    out = paste(np.zeros((64, 64, 3), np.uint8))
    assert out[50, 50].tolist() == [0, 0, 0]
    paste = PasteBack(Placement.of_square(photo, 20, 20, 60, 64), order="bgr")
    assert paste(np.zeros((64, 64, 3), np.uint8))[5, 5].tolist() == [0, 0, 255]  # outside: the photo, BGR


def test_no_face_pastes_the_centre_square_and_the_builtin_avatar_its_crop():
    rng = np.random.default_rng(0)
    noise = (rng.random((240, 400, 3)) * 255).astype(np.uint8)
    found = find_portrait(noise)
    assert found.box is None
    placement = Placement.of_portrait(noise, found, 64)
    paste = PasteBack(placement)
    assert paste.roi == (79, 0, 321, 240)  # the centre 240 x 240 square (and a pixel of fade either side)
    image, placement = avatar_photo(None, SIZE)  # the built-in astronaut and its fixed crop
    assert placement.photo.shape == (512, 512, 3) and image.shape[:2] == (167, 167)
    out = PasteBack(placement)(to_image(to_tensor(image, SIZE)))
    assert _psnr(out, placement.photo) > 38


def test_demo_writes_the_avatar_in_its_photo(tmp_path, capsys):
    import torch

    from odecam.cli import main
    from odecam.engine.video import read_frames

    n = torch.get_num_threads()
    try:
        rc = main(["demo", "--preset", "tiny", "--backend", "torch", "--max-frames", "3", "--paste-back",
                   "-o", str(tmp_path / "a.mp4")])
    finally:
        torch.set_num_threads(n)
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "(3 frames, 256x128, H.264, driving | output in its photo)" in out.out
    frame = next(read_frames(tmp_path / "a.mp4"))
    photo = cv2.resize(data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)  # the right half at 128 rows
    assert frame.shape == (128, 256, 3)
    below = np.abs(frame[100:, 128:].astype(int) - photo[100:].astype(int)).mean()  # below the face: the photo
    assert below < 8 < np.abs(frame[100:, 128:].astype(int) - photo[100:, ::-1].astype(int)).mean()


def test_avatar_pasters_keep_one_compositor_per_avatar_and_at_most_keep_of_them():
    import types

    from odecam.engine.paste_back import AvatarPasters

    photo = np.full((120, 160, 3), 50, np.uint8)
    made = []
    pasters = AvatarPasters(lambda p: made.append(p) or PasteBack(p), keep=2)
    a, b, c = (types.SimpleNamespace(placement=Placement.of_square(photo, 40, 20, 80, 64)) for _ in range(3))
    frame = np.zeros((64, 64, 3), np.uint8)
    assert pasters(a, frame).shape == (120, 160, 3) and pasters(a, frame).shape == (120, 160, 3)
    assert len(made) == 1  # made once for a
    pasters(b, frame)
    pasters(c, frame)  # a, the least recently used, is dropped
    pasters(a, frame)
    assert len(made) == 4
    square = types.SimpleNamespace(placement=None)
    assert pasters(square, frame) is frame and pasters.get(square) is None


def test_the_edge_window_is_zero_at_the_border_and_one_inside():
    from odecam.model.generator import edge_window

    w = edge_window(0.25, 64, 64)[0, 0]
    assert w.shape == (64, 64)
    assert float(w[0].abs().max()) == 0.0 and float(w[:, -1].abs().max()) == 0.0
    inner = round(0.25 * 63)
    assert float(w[inner:64 - inner, inner:64 - inner].min()) == 1.0
    assert torch.equal(w, w.flip(0)) and torch.equal(w, w.t())
    row = w[32]
    assert bool((row[1:33] >= row[:32]).all())  # rises monotonically towards the middle
    assert torch.equal(edge_window(0.0, 8, 8), torch.ones(1, 1, 8, 8))


def test_an_anchored_model_shares_the_weights_and_keeps_its_border_still():
    """``anchored``: the same parameters, only the config differs; its field is the plain one times the window,
    so it is zero on the border nodes; the original model is untouched."""
    from odecam.config import preset
    from odecam.engine.paste_back import EDGE_ANCHOR, anchored
    from odecam.model import MotionTransferModel
    from odecam.model.generator import edge_window

    torch.manual_seed(0)
    plain = MotionTransferModel(preset("tiny")).eval()
    model = anchored(plain)
    assert model.cfg.generator.edge_anchor == EDGE_ANCHOR and plain.cfg.generator.edge_anchor == 0.0
    assert model.generator is plain.generator and anchored(model) is model
    assert anchored(model, 0.0).cfg.generator.edge_anchor == 0.0 and anchored(anchored(model, 0.4)).cfg.generator.edge_anchor == 0.4
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        state = plain.prepare_views(torch.rand(1, 1, 3, 64, 64, generator=g))
        kp = state["kp"] + 0.2 * torch.randn(1, plain.cfg.keypoints.num_kp, 2, generator=g)
        free = plain.animate(state, kp)["displacement"]
        held = model.animate(state, kp)["displacement"]
    assert float(free[..., 0, :].abs().max()) > 1e-3  # the plain field moves the border
    assert float(held[..., 0, :].abs().max()) == 0.0 and float(held[..., :, -1].abs().max()) == 0.0
    assert torch.allclose(held, free * edge_window(EDGE_ANCHOR, *free.shape[2:]), atol=1e-6)


@pytest.mark.parametrize("backend", ["torchscript", "onnxruntime"])
def test_cpu_backends_match_eager_with_an_anchored_field(backend, tmp_path, monkeypatch):
    from odecam.config import preset
    from odecam.engine import Animator, Avatar
    from odecam.engine.backends import get_backend
    from odecam.engine.paste_back import anchored
    from odecam.model import MotionTransferModel

    monkeypatch.setenv("ODECAM_CACHE_DIR", str(tmp_path))
    torch.manual_seed(0)
    model = anchored(MotionTransferModel(preset("tiny").replace(num_refs=1)).eval())
    rng = np.random.default_rng(2)
    smooth = lambda: cv2.resize(rng.integers(0, 256, (9, 9, 3), dtype=np.uint8), (90, 90),  # noqa: E731
                                interpolation=cv2.INTER_CUBIC)
    avatar = Avatar(model, smooth(), [smooth()])
    frames = [smooth() for _ in range(3)]

    def render(b):
        animator = Animator(model, avatar, backend=b)
        return torch.cat([animator.render_tensor(*animator.keypoints(f)) for f in frames])

    assert float((render(get_backend(backend, model)) - render("torch")).abs().max()) <= 1e-4


def test_paste_back_with_the_anchored_field_shows_no_moved_edge_in_the_fade():
    """The shipped default moving the astronaut's head far (every keypoint 12% of the side left and 8% down): in
    the feather, where the square fades into her photo, the plain field's square differs from the photo (her
    moved hair and collar, shown twice); the anchored one's hardly does. The face in the middle still moves."""
    from odecam.engine import Avatar
    from odecam.engine.images import to_image as as_uint8
    from odecam.engine.paste_back import anchored
    from odecam.engine.weights import load_model

    shipped = load_model().model
    assert load_model(paste_back=True).model.cfg.generator.edge_anchor == 0.25
    plain = anchored(shipped, 0.0)  # the field as trained
    image, placement = avatar_photo(None, SIZE)
    paste = PasteBack(placement)
    alpha = paste._alpha
    fade = (alpha > 0.05) & (alpha < 0.95)  # the feather, on the photo
    x0, y0, x1, y1 = paste.roi
    under = paste._under.astype(np.float64)
    diffs, middles = {}, {}
    for name, model in (("plain", plain), ("anchored", anchored(shipped))):
        avatar = Avatar(model, image, placement=placement)
        with torch.no_grad():
            rest = model.animate(avatar.state, avatar.kp_source)["prediction"]
            moved = model.animate(avatar.state, avatar.kp_source + torch.tensor([-0.24, 0.16]))["prediction"]
        out = paste(as_uint8(moved)).astype(np.float64)[y0:y1, x0:x1]
        diffs[name] = float(np.abs(out - under)[fade].mean())
        middles[name] = float((moved - rest)[..., 64:192, 64:192].abs().mean())
    print(f"\nfeather |pasted - photo|: {diffs}; middle |moved - rest|: {middles}")
    assert diffs["anchored"] < 0.5 * diffs["plain"]
    assert middles["anchored"] > 0.7 * middles["plain"]

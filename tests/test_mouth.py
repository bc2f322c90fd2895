"""Mouth retargeting (odecam.engine.mouth): the teeth found between F_K's mouth keypoints, the cavity painted under
the upper teeth, the amount from the transferred lips, and the two blend targets (eyes and mouth) together."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from odecam.engine import Animator, Avatar
from odecam.engine.backends import get_backend
from odecam.engine.blink import BLENDED_KEYS
from odecam.engine.mouth import (CAVITY, OPEN_FROM, OPEN_TO, UPPER_TEETH, MouthOpening, _first_run_end, mouth_axis,
                                 mouth_indices, open_mouth_image, teeth_mask)


def _mouth_points(model, image: np.ndarray) -> np.ndarray:
    from odecam.engine.images import to_tensor

    kp = model.kp_detector(to_tensor(image, 256))["value"][0].detach().numpy()
    return (kp[list(mouth_indices(model.keypoint_roles))] + 1.0) * 127.5


def test_the_smiling_astronauts_teeth_are_found_and_the_lower_ones_painted(default_model, astronaut256):
    points = _mouth_points(default_model, astronaut256)
    axis = mouth_axis(astronaut256)
    assert axis is not None and abs(axis[1]) < 0.1  # the built-in avatar is framed upright: a level eye line
    teeth = teeth_mask(astronaut256, points, axis)
    ys, xs = np.nonzero(teeth)
    assert 0.002 < teeth.mean() < 0.03
    assert points[0, 0] - 4 <= xs.min() and xs.max() <= points[1, 0] + 4  # between the mouth corners
    painted = open_mouth_image(astronaut256, points, axis)
    assert painted is not None and painted.shape == astronaut256.shape
    darker = (astronaut256.astype(int).sum(-1) - painted.astype(int).sum(-1)) > 150
    assert darker.sum() > 0.5 * teeth.sum()
    upper, lower = [], []  # per column of teeth: its top rows stay as they were, its bottom rows go dark
    columns = np.nonzero(teeth.any(0))[0]
    for c, bottom in zip(columns, _first_run_end(teeth, columns).astype(int)):  # a lip highlight under them: no
        top = np.nonzero(teeth[:, c])[0].min()
        if bottom - top + 1 >= 6:
            upper += darker[top:top + int(0.6 * UPPER_TEETH * (bottom - top + 1)), c].tolist()
            lower += darker[bottom - 1:bottom + 1, c].tolist()
    assert len(upper) > 20 and np.mean(upper) < 0.15 and np.mean(lower) > 0.7, (len(upper), np.mean(upper),
                                                                               np.mean(lower))


def _synthetic_smile(tilt_degrees: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """A 256 px face patch with a level smile: skin, red lips around a 60 x 14 px mouth opening of white teeth with
    dark gaps between them every 6 px, and a pale highlight on the lower lip touching the teeth; plus mouth points
    (right corner, left corner, inner upper lip, inner lower lip) whose corners are tilted by ``tilt_degrees`` about
    the mouth's centre, as F_K's are on some stills."""
    import cv2

    hsv = np.zeros((256, 256, 3), np.uint8)
    hsv[:] = (10, 110, 190)  # skin (OpenCV hue 0-180)
    cv2.ellipse(hsv, (128, 150), (40, 17), 0, 0, 360, (175, 170, 170), -1)  # lips
    cv2.ellipse(hsv, (128, 150), (30, 7), 0, 0, 360, (20, 25, 235), -1)  # teeth
    for x in range(101, 156, 6):
        cv2.line(hsv, (x, 143), (x, 157), (20, 45, 165), 1)  # the shaded gaps between teeth
    cv2.ellipse(hsv, (128, 158), (5, 2), 0, 0, 360, (175, 60, 245), -1)  # the lower lip's highlight
    image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    t = np.radians(tilt_degrees)
    corner = 32.0 * np.array([np.cos(t), np.sin(t)])
    points = np.array([(128, 150) - corner, (128, 150) + corner, (128, 146), (128, 154)], np.float64)
    truth = {"rows": (143, 157), "cols": (98, 158)}
    return image, points, truth


@pytest.mark.parametrize("tilt", [0.0, 12.0])
def test_the_cavity_stays_between_the_lips_with_a_smooth_edge(tilt):
    """A known answer: whatever the tilt of the corner points, with the mouth's axis given (the eye line), the cavity
    is painted inside the mouth opening only (not on the lips, not on the highlight under it), across most of the
    teeth's width, under a smooth edge; the upper teeth stay."""
    image, points, truth = _synthetic_smile(tilt)
    painted = open_mouth_image(image, points, axis=np.array([1.0, 0.0]))
    assert painted is not None
    dark = np.abs(painted.astype(int) - np.array(CAVITY)).sum(-1) < 60
    ys, xs = np.nonzero(dark)
    r0, r1 = truth["rows"]
    c0, c1 = truth["cols"]
    assert r0 <= ys.min() and ys.max() <= r1 + 1 and c0 - 1 <= xs.min() and xs.max() <= c1 + 1, (ys, xs)
    assert np.ptp(xs) > 0.6 * (c1 - c0)
    cols = np.unique(xs)
    first = np.array([ys[xs == c].min() for c in cols])  # the cavity's top edge
    assert np.abs(np.diff(first)).max() <= 1 and first.min() >= 147  # smooth, under the upper teeth
    assert not dark[r0:146].any()


def test_a_pale_highlight_under_the_teeth_is_not_painted():
    """The lower lip's highlight below the teeth, as pale as they are (it passes the teeth test when F_K's inner lower
    lip sits low, as on the astronaut cut a little looser): the lip's rows between it and the teeth end the teeth,
    and no cavity is painted on the lip (the previous painter took each column's last teeth pixel as its bottom)."""
    import cv2

    image, points, truth = _synthetic_smile(0.0)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    cv2.ellipse(hsv, (128, 158), (5, 2), 0, 0, 360, (175, 170, 170), -1)  # lip again where the touching highlight was
    cv2.ellipse(hsv, (128, 162), (10, 2), 0, 0, 360, (20, 25, 235), -1)  # rows 160-164: the lip's 158-159 between
    image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    points[3] = (128, 160)  # the inner lower lip read 6 px low: the search ellipse reaches the highlight
    axis = np.array([1.0, 0.0])
    assert teeth_mask(image, points, axis)[160:165].sum() > 30  # the highlight passes for teeth
    painted = open_mouth_image(image, points, axis)
    dark = np.abs(painted.astype(int) - np.array(CAVITY)).sum(-1) < 60
    assert dark.sum() > 100 and np.nonzero(dark)[0].max() <= truth["rows"][1] + 1  # nothing painted under the teeth


def test_fewer_upper_teeth_are_kept_towards_the_corners():
    """The share of the teeth's height left unpainted falls from UPPER_TEETH at the mouth's centre towards its
    corners (the field stretches the corner columns most: kept whole, their teeth became fangs). On the synthetic
    smile (teeth 14 px high at the centre, to +-0.94 half mouth widths)."""
    image, points, truth = _synthetic_smile(0.0)
    painted = open_mouth_image(image, points, axis=np.array([1.0, 0.0]))
    dark = np.abs(painted.astype(int) - np.array(CAVITY)).sum(-1) < 60
    teeth = teeth_mask(image, points, axis=np.array([1.0, 0.0]))
    centre, half = (points[0, 0] + points[1, 0]) / 2, abs(points[1, 0] - points[0, 0]) / 2
    kept = {}  # |x| in half mouth widths -> share of the teeth's height above the cavity
    for c in np.nonzero(teeth.any(0) & dark.any(0))[0]:
        col = np.nonzero(teeth[:, c])[0]
        top, bottom = col.min(), col.max()
        if bottom - top + 1 >= 4:
            kept[abs(c - centre) / half] = (np.nonzero(dark[:, c])[0].min() - top) / (bottom - top + 1)
    middle = [v for x, v in kept.items() if x < 0.3]
    outer = [v for x, v in kept.items() if x > 0.6]
    assert middle and outer, kept
    assert 0.3 < np.median(middle) < 0.6 and np.median(outer) < 0.5 * np.median(middle), (middle, outer)


def test_closed_lips_have_no_teeth_to_paint(default_model, astronaut256):
    points = _mouth_points(default_model, astronaut256)
    lips = astronaut256.copy()
    lips[teeth_mask(astronaut256, points)] = (150, 60, 70)  # the teeth covered by lip colour
    assert open_mouth_image(lips, points) is None


def test_pale_lips_and_grey_photos_are_not_taken_for_teeth(default_model, astronaut256):
    """Pale closed lips pass the bright-and-unsaturated test (so did a third of the portraits in the training
    stills, painted dark across their lips before); only a patch much less saturated than the face around the
    mouth is teeth. A grey photo has no colour to tell teeth by: no cavity."""
    import cv2

    points = _mouth_points(default_model, astronaut256)
    hsv = cv2.cvtColor(astronaut256, cv2.COLOR_RGB2HSV)
    lips = hsv.copy()
    teeth = teeth_mask(astronaut256, points)
    lips[teeth] = (175, 65, 225)  # pale pink lips where the teeth were: bright, S 65 (the skin around: about 76)
    pale = cv2.cvtColor(lips, cv2.COLOR_HSV2RGB)
    assert cv2.cvtColor(pale, cv2.COLOR_RGB2HSV)[..., 1][teeth].max() < 90  # the old, absolute test took them
    assert not teeth_mask(pale, points).any() and open_mouth_image(pale, points) is None
    grey = cv2.cvtColor(cv2.cvtColor(astronaut256, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    assert not teeth_mask(grey, points).any() and open_mouth_image(grey, points) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mouth_amount_follows_the_transferred_lip_gap(dtype):
    idx = (0, 1, 2, 3)
    source = torch.tensor([[[-0.2, 0.4], [0.2, 0.4], [0.0, 0.38], [0.0, 0.42]]], dtype=dtype)  # width 0.4, gap 0.04
    opening = MouthOpening(idx, source)

    def amount(extra: float) -> float:
        kp = source.clone()
        kp[0, 3, 1] += extra * 0.4  # the lower lip drops by `extra` mouth widths
        return opening(kp)

    assert amount(0.0) == 0.0 and amount(OPEN_FROM) == 0.0 and amount(-0.1) == 0.0
    assert amount(0.5 * (OPEN_FROM + OPEN_TO)) == 0.5
    assert amount(OPEN_TO) == 1.0 and amount(0.5) == 1.0
    kp = source.clone()
    kp[0, 3] = float("nan")
    assert opening(kp) == 0.0


def test_two_blend_targets_at_once_on_every_backend(default_model, astronaut256):
    """eyes and mouth blended together: onnxruntime in place = torch re-prepared = the eager model."""
    avatar = Avatar(default_model, astronaut256)
    eyes, mouth = avatar.closed_eye_state(default_model), avatar.open_mouth_state(default_model)
    assert eyes is not None and mouth is not None
    amounts = {"eyes": 0.5, "mouth": 0.75}
    state = {k: v + amounts["eyes"] * (eyes[k] - v) + amounts["mouth"] * (mouth[k] - v) if k in BLENDED_KEYS else v
             for k, v in avatar.state.items()}
    kp, jac = avatar.kp_source + 0.02, avatar.jac_source
    with torch.no_grad():
        want = default_model.animate(state, kp, jac, num_views=1)["prediction"]
    for name in ("torch", "onnxruntime"):
        backend = get_backend(name, default_model)
        backend.prepare(avatar.state)
        backend.set_blend_targets(avatar.state, {"eyes": eyes, "mouth": mouth})
        backend.blend_views({"eyes": 1.0, "mouth": 0.0})
        backend.blend_views(amounts)
        got, ok = backend.run_frame(kp, jac)
        assert ok and (got - want).abs().max() < 2e-4, name
        backend.blend_views({"eyes": 0.0, "mouth": 0.0})  # back to the photo as it is
        with torch.no_grad():
            plain = default_model.animate(avatar.state, kp, jac, num_views=1)["prediction"]
        assert (backend.run_frame(kp, jac)[0] - plain).abs().max() < 2e-4, name


def test_a_wide_open_mouth_shows_the_cavity(default_model, astronaut256):
    """The avatar driven (absolute keypoints) with its own pose, then with its lower lip dropped by 0.3 mouth
    widths: the mouth amount goes 0 -> 1, and the open mouth is darker with mouth retargeting than without."""
    idx = mouth_indices(default_model.keypoint_roles)
    frames = {}
    for cavity in (False, None):
        animator = Animator(default_model, Avatar(default_model, astronaut256), relative=False, backend="onnxruntime",
                            blink=False, mouth_cavity=cavity)
        assert animator.mouth_active is (cavity is None)
        kp, jac = animator.avatar.kp_source.clone(), animator.avatar.jac_source
        animator.animate_keypoints(kp[0].numpy(), None if jac is None else jac[0].numpy())
        assert animator.mouth_amount == 0.0
        width = float((kp[0, idx[1]] - kp[0, idx[0]]).norm())
        kp[0, idx[3], 1] += 0.3 * width
        frames[cavity] = animator.animate_keypoints(kp[0].numpy(), None if jac is None else jac[0].numpy())
        assert animator.mouth_amount == (1.0 if cavity is None else 0.0)
    points = (animator.avatar.kp_source[0, list(idx)].numpy() + 1.0) * 127.5
    x0, x1 = int(points[:2, 0].min()), int(points[:2, 0].max())
    y0, y1 = int(points[2, 1]), int(points[3, 1] + 0.3 * 127.5 * width)
    brightness = {k: float(v[y0:y1 + 1, x0:x1 + 1].mean()) for k, v in frames.items()}
    assert brightness[None] < brightness[False] - 10.0, brightness

"""Mouth retargeting (odecam.engine.mouth): the teeth found between F_K's mouth keypoints, the cavity painted under
the upper teeth, the amount from the transferred lips, and the two blend targets (eyes and mouth) together."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from odecam.engine import Animator, Avatar
from odecam.engine.backends import get_backend
from odecam.engine.blink import BLENDED_KEYS
from odecam.engine.mouth import (OPEN_FROM, OPEN_TO, UPPER_TEETH, MouthOpening, mouth_indices, open_mouth_image,
                                 teeth_mask)


def _mouth_points(model, image: np.ndarray) -> np.ndarray:
    from odecam.engine.images import to_tensor

    kp = model.kp_detector(to_tensor(image, 256))["value"][0].detach().numpy()
    return (kp[list(mouth_indices(model.keypoint_roles))] + 1.0) * 127.5


def test_the_smiling_astronauts_teeth_are_found_and_the_lower_ones_painted(default_model, astronaut256):
    points = _mouth_points(default_model, astronaut256)
    teeth = teeth_mask(astronaut256, points)
    ys, xs = np.nonzero(teeth)
    assert 0.002 < teeth.mean() < 0.03
    assert points[0, 0] - 4 <= xs.min() and xs.max() <= points[1, 0] + 4  # between the mouth corners
    painted = open_mouth_image(astronaut256, points)
    assert painted is not None and painted.shape == astronaut256.shape
    darker = (astronaut256.astype(int).sum(-1) - painted.astype(int).sum(-1)) > 150
    assert darker.sum() > 0.3 * teeth.sum()
    upper, lower = [], []  # per column of teeth: its top rows stay as they were, its bottom rows go dark
    for c in np.nonzero(teeth.any(0))[0]:
        col = np.nonzero(teeth[:, c])[0]
        top, bottom = col.min(), col.max()
        if bottom - top + 1 >= 8:
            upper += darker[top:top + int(0.6 * UPPER_TEETH * (bottom - top + 1)), c].tolist()
            lower += darker[bottom - 2:bottom + 1, c].tolist()
    assert len(upper) > 30 and np.mean(upper) < 0.15 and np.mean(lower) > 0.8, (np.mean(upper), np.mean(lower))


def test_fewer_upper_teeth_are_kept_towards_the_corners(default_model, astronaut256):
    """The share of each column of teeth left unpainted falls from UPPER_TEETH at the mouth's centre towards its
    corners (the field stretches the corner columns most: kept whole, their teeth became fangs)."""
    points = _mouth_points(default_model, astronaut256)
    teeth = teeth_mask(astronaut256, points)
    painted = open_mouth_image(astronaut256, points)
    darker = (astronaut256.astype(int).sum(-1) - painted.astype(int).sum(-1)) > 60
    centre, half = (points[0, 0] + points[1, 0]) / 2, abs(points[1, 0] - points[0, 0]) / 2
    kept = {}  # |x| in half mouth widths -> share of the column above its first painted row
    for c in np.nonzero(teeth.any(0))[0]:
        col = np.nonzero(teeth[:, c])[0]
        top, bottom = col.min(), col.max()
        dark = np.nonzero(darker[top:bottom + 1, c])[0]
        if bottom - top + 1 >= 6 and len(dark):
            kept[abs(c - centre) / half] = dark[0] / (bottom - top + 1)
    middle = [v for x, v in kept.items() if x < 0.3]
    outer = [v for x, v in kept.items() if x > 0.6]
    assert middle and outer, kept
    assert np.median(middle) > 0.3 and np.median(outer) < 0.25 * np.median(middle), (middle, outer)


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

"""The one centred rotation shared by the live framing and training's ``rotate`` augmentation."""

import numpy as np

from odecam.realtime.framing import level_image
from odecam.rotation import center_rotation, rotate_image, unit_rotation


def test_marked_pixel_lands_where_the_unit_rotation_moves_its_point():
    """Quarter and half turns are exact on pixel centres: the bright pixel ends where R p says."""
    h, w = 33, 65  # not square: the centre is ((w - 1) / 2, (h - 1) / 2)
    img = np.zeros((h, w), np.uint8)
    img[10, 40] = 255
    p = np.array([40 / ((w - 1) / 2) - 1, 10 / ((h - 1) / 2) - 1])  # (x, y) in [-1, 1]
    for deg in (180.0, 0.0):
        out = rotate_image(img, deg)
        y, x = np.unravel_index(out.argmax(), out.shape)
        q = unit_rotation(center_rotation(h, w, deg), h, w) @ p
        assert out.shape == img.shape and out.dtype == np.uint8
        assert np.allclose(((q[0] + 1) * (w - 1) / 2, (q[1] + 1) * (h - 1) / 2), (x, y), atol=1e-4), deg
    s = 65
    sq = np.zeros((s, s, 3), np.uint8)
    sq[12, 50] = 255
    out = rotate_image(sq, 90.0)  # counter-clockwise on screen: right of the centre goes up
    y, x = np.unravel_index(out[..., 0].argmax(), (s, s))
    assert (x, y) == (12, 14)
    r = unit_rotation(center_rotation(s, s, 90.0), s, s)
    assert np.allclose(r, [[0, 1], [-1, 0]], atol=1e-6)


def test_level_image_is_the_shared_rotation_turned_back():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for roll in (7.5, -30.0):
        assert np.array_equal(level_image(img, roll), rotate_image(img, -roll))

"""Paste-back: the animated square put back into the avatar's own photo.

The model sees, and renders, a square around the face of the avatar photo (:mod:`odecam.engine.portrait`:
1.9 face sides, turned upright when the face is tilted). In a video call the user wants to appear as the whole
photo (shoulders, room, the picture's own aspect), as LivePortrait's paste-back does it: each rendered frame is
scaled (and turned back) to where its square came from and blended into the photo under a mask whose edge fades
over ``feather`` of the square's side, so no seam shows where the animated square meets the still photo.

Everything that does not depend on the frame is made once per avatar and output size (:class:`PasteBack`): the
photo fitted to the canvas (letterboxed on the background colour), the pixel matrix from the square to the
canvas, the faded mask warped to the canvas and the photo's pixels under it. Per frame only the square's
bounding box is touched: one ``cv2.warpAffine`` of the S x S frame into it and one ``cv2.blendLinear``, into a
small ring of canvas buffers (a consumer such as the virtual camera keeps a reference to the frame it was given).

Geometry: a pixel (u, v) of the model's S x S square (pixel centres, as ``cv2.resize`` maps them) lies at
``matrix @ (u, v, 1)`` in the photo (:class:`Placement`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np

__all__ = ["Placement", "PasteBack", "AvatarPasters", "DEFAULT_FEATHER", "EDGE_ANCHOR", "anchored"]

#: the mask's edge fades from 1 to 0 over this share of the square's side (at each of its four edges)
DEFAULT_FEATHER = 0.12
#: with paste-back the motion field fades to zero over this share of the side at the square's edges
#: (``generator.edge_anchor``): the square's border then stays where the photo has it, so a head that moves far
#: does not show its moved hair or collar twice in the feather (benchmarks/results/EVALUATION.md)
EDGE_ANCHOR = 0.25


@dataclass(frozen=True)
class Placement:
    """Where the model's square came from in the avatar's photo.

    Attributes:
        photo: the photo as the user gave it, (H, W, 3) uint8 RGB (not turned, not cropped).
        matrix: (2, 3) float64: a pixel (u, v) of the S x S square -> (x, y) pixels of ``photo``.
        size: S, the model's image size.
    """

    photo: np.ndarray
    matrix: np.ndarray
    size: int

    @classmethod
    def of_square(cls, photo: np.ndarray, x: float, y: float, side: float, size: int) -> "Placement":
        """The square of ``side`` pixels at (``x``, ``y``) of ``photo`` (H, W, 3) uint8 RGB, resized to ``size``
        (for a square cut from the photo turned upright: :meth:`of_portrait`)."""
        s = side / float(size)
        m = np.array([[s, 0.0, x + 0.5 * s - 0.5], [0.0, s, y + 0.5 * s - 0.5]])
        return cls(photo=photo, matrix=m, size=int(size))

    @classmethod
    def of_box(cls, photo: np.ndarray, x0: int, y0: int, x1: int, y1: int, size: int) -> "Placement":
        """The model's centre square of the rectangle ``photo[y0:y1, x0:x1]`` (what ``to_tensor`` takes of a
        crop that is not square), resized to ``size``."""
        side = min(x1 - x0, y1 - y0)
        return cls.of_square(photo, x0 + (x1 - x0 - side) // 2, y0 + (y1 - y0 - side) // 2, side, size)

    @classmethod
    def of_portrait(cls, photo: np.ndarray, found, size: int) -> "Placement":
        """The placement of :func:`odecam.engine.portrait.find_portrait`'s result ``found`` on ``photo`` (the
        (H, W, 3) uint8 RGB image it was given): its crop box, in the photo turned upright when ``found.roll``,
        or the centre square the model takes when no face was found (or cropping was off)."""
        h, w = photo.shape[:2]
        if found.box is None:
            return cls.of_box(photo, 0, 0, w, h, size)
        b = found.box
        square = cls.of_square(photo, b.x, b.y, b.size, size)
        if not found.roll:
            return square
        # the crop is in the photo turned by getRotationMatrix2D(face centre, -roll): turn its pixels back
        x0, y0, x1, y1 = found.face
        turn = cv2.getRotationMatrix2D(((x0 + x1) / 2.0, (y0 + y1) / 2.0), -found.roll, 1.0)
        back = np.linalg.inv(np.vstack([turn, [0.0, 0.0, 1.0]]))
        return cls(photo=photo, matrix=(back @ np.vstack([square.matrix, [0.0, 0.0, 1.0]]))[:2], size=int(size))

    def surround(self, margin: int) -> np.ndarray:
        """The photo around the square at the square's scale: (S + 2 ``margin``, S + 2 ``margin``, 3) uint8 RGB whose
        middle S x S is the square (resampled from the photo) and whose margin is what lies around it in the photo,
        reflected where the photo ends (the image skip's surroundings, :class:`odecam.engine.avatar.Avatar`). A
        photo more than 1.5x larger than the square is area-averaged to about its scale first, so the margin does
        not alias."""
        p = int(margin)
        side = self.size + 2 * p
        m = np.vstack([self.matrix, [0.0, 0.0, 1.0]]) @ np.array([[1.0, 0.0, -p], [0.0, 1.0, -p], [0.0, 0.0, 1.0]])
        photo = self.photo
        scale = float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))  # photo pixels per square pixel
        if scale > 1.5:
            h, w = photo.shape[:2]
            nw, nh = max(1, round(w / scale)), max(1, round(h / scale))
            photo = cv2.resize(photo, (nw, nh), interpolation=cv2.INTER_AREA)
            kx, ky = nw / w, nh / h  # photo pixel -> small pixel (pixel centres)
            m = np.array([[kx, 0.0, 0.5 * kx - 0.5], [0.0, ky, 0.5 * ky - 0.5], [0.0, 0.0, 1.0]]) @ m
        return cv2.warpAffine(photo, m[:2], (side, side), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REFLECT_101)


def anchored(model, share: float | None = None):
    """``model`` for paste-back: a copy sharing its weights whose motion field fades to zero over ``share`` of the
    side at the square's edges (``generator.edge_anchor``); ``share`` None: :data:`EDGE_ANCHOR`, or the model's own
    anchor where that is wider. ``model`` itself when its config already has that share (0 gives the field as
    trained)."""
    current = model.cfg.generator.edge_anchor
    share = max(EDGE_ANCHOR, current) if share is None else float(share)
    if share == current:
        return model
    import copy

    out = copy.copy(model)  # the same modules and parameters; only the config differs
    out.__dict__.pop("_edge_windows", None)
    out.cfg = model.cfg.replace(**{"generator.edge_anchor": float(share)})
    return out


def _fade_mask(size: int, feather: float) -> np.ndarray:
    """(S, S) float32: 1 inside, falling smoothly (smoothstep) to 0 at the square's edges over ``feather`` x S."""
    ramp = max(1.0, feather * size)
    d = np.minimum(np.arange(size), np.arange(size)[::-1]).astype(np.float32) + 0.5  # distance to the nearer edge
    t = np.clip(d / ramp, 0.0, 1.0)
    edge = t * t * (3.0 - 2.0 * t)
    return np.minimum(edge[:, None], edge[None, :]).astype(np.float32)


class PasteBack:
    """The avatar's rendered square -> its photo with the square blended in, at the canvas size.

    Args:
        placement: the photo and where the square lies in it.
        canvas: ``(width, height)`` of the output: the photo is scaled to fit it (aspect kept) and centred on
            ``background``; None = the photo's own size.
        background: colour around the fitted photo, in ``order``.
        feather: share of the square's side over which its mask fades to the photo (0 - 0.5).
        order: ``"rgb"`` or ``"bgr"``: the channel order of the frames given and returned.
        buffers: output buffers used in turn (a consumer may hold the last few frames it was given).

    Call it with a (S, S, 3) uint8 frame; it returns a (height, width, 3) uint8 canvas that stays valid until
    ``buffers`` more calls.
    """

    def __init__(self, placement: Placement, canvas: tuple[int, int] | None = None,
                 background: tuple[int, int, int] = (0, 0, 0), feather: float = DEFAULT_FEATHER,
                 order: str = "rgb", buffers: int = 3) -> None:
        if order not in ("rgb", "bgr"):
            raise ValueError(f"order must be 'rgb' or 'bgr', got {order!r}.")
        if not 0.0 <= feather <= 0.5:
            raise ValueError(f"feather must be between 0 and 0.5 of the square's side, got {feather:g}.")
        photo = placement.photo if order == "rgb" else cv2.cvtColor(placement.photo, cv2.COLOR_RGB2BGR)
        h, w = photo.shape[:2]
        width, height = canvas if canvas is not None else (w, h)
        scale = min(width / w, height / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        ox, oy = (width - nw) // 2, (height - nh) // 2
        base = np.empty((height, width, 3), np.uint8)
        base[...] = np.asarray(background, np.uint8)
        interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        base[oy:oy + nh, ox:ox + nw] = photo if (nw, nh) == (w, h) else cv2.resize(photo, (nw, nh),
                                                                                 interpolation=interp)
        # square pixel -> canvas pixel: the photo's matrix, then the fit (pixel centres: x' = (x + 0.5) k - 0.5)
        kx, ky = nw / w, nh / h
        fit = np.array([[kx, 0.0, ox + 0.5 * kx - 0.5], [0.0, ky, oy + 0.5 * ky - 0.5], [0.0, 0.0, 1.0]])
        m = (fit @ np.vstack([placement.matrix, [0.0, 0.0, 1.0]]))[:2]
        s = placement.size
        corners = m @ np.array([[-0.5, -0.5, 1.0], [s - 0.5, -0.5, 1.0], [-0.5, s - 0.5, 1.0], [s - 0.5, s - 0.5, 1.0]]).T
        x0 = int(np.clip(np.floor(corners[0].min()), ox, ox + nw))
        x1 = int(np.clip(np.ceil(corners[0].max()) + 1, ox, ox + nw))
        y0 = int(np.clip(np.floor(corners[1].min()), oy, oy + nh))
        y1 = int(np.clip(np.ceil(corners[1].max()) + 1, oy, oy + nh))
        self.size = s
        self.shape = (height, width)
        self.roi = (x0, y0, x1, y1)
        self.matrix = m
        self._m_roi = m - np.array([[0.0, 0.0, x0], [0.0, 0.0, y0]])
        rw, rh = x1 - x0, y1 - y0
        self._alpha = cv2.warpAffine(_fade_mask(s, feather), self._m_roi, (rw, rh), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        self._beta = (1.0 - self._alpha).astype(np.float32)
        self._under = np.ascontiguousarray(base[y0:y1, x0:x1])  # the photo's pixels under the square
        self._warped = np.empty((rh, rw, 3), np.uint8)
        self._outputs = [base.copy() for _ in range(max(1, int(buffers)))]
        self._next = 0

    @classmethod
    def rows(cls, placement: Placement, rows: int, **kwargs) -> "PasteBack":
        """A :class:`PasteBack` onto the photo itself scaled to ``rows`` rows (its width kept in proportion,
        rounded to an even number, as video encoders need): ``demo`` and ``serve`` use 2 S rows."""
        h, w = placement.photo.shape[:2]
        return cls(placement, (max(2, round(w * rows / h / 2) * 2), int(rows)), **kwargs)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """(S, S, 3) uint8 frame (in ``order``) -> (height, width, 3) uint8: the photo with the frame pasted in."""
        if frame.shape != (self.size, self.size, 3) or frame.dtype != np.uint8:
            raise ValueError(f"PasteBack expects a ({self.size}, {self.size}, 3) uint8 frame, got {frame.dtype} "
                             f"{frame.shape}.")
        out = self._outputs[self._next]
        self._next = (self._next + 1) % len(self._outputs)
        x0, y0, x1, y1 = self.roi
        if x1 > x0 and y1 > y0:
            cv2.warpAffine(frame, self._m_roi, (x1 - x0, y1 - y0), dst=self._warped, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
            cv2.blendLinear(self._warped, self._under, self._alpha, self._beta, dst=out[y0:y1, x0:x1])
        return out


class AvatarPasters:
    """The :class:`PasteBack` of each avatar a session shows, made on the avatar's first frame: ``__call__(avatar,
    frame)`` -> the frame in the avatar's photo, or the frame itself for an avatar without a
    :attr:`~odecam.engine.avatar.Avatar.placement`. ``make(placement) -> PasteBack`` builds one. The last
    ``keep`` avatars' compositors are kept (switching back costs nothing), so a peer that sends avatar after avatar
    cannot pile them up."""

    def __init__(self, make: Callable[[Placement], PasteBack], keep: int = 9) -> None:
        self.make = make
        self.keep = max(1, int(keep))
        self._held: OrderedDict[int, tuple[Any, PasteBack]] = OrderedDict()  # id -> (avatar, its compositor)

    def get(self, avatar: Any) -> PasteBack | None:
        """The avatar's compositor (made now if it has none), or None without a placement."""
        if avatar.placement is None:
            return None
        held = self._held.get(id(avatar))
        if held is None or held[0] is not avatar:  # the avatar itself is held, so its id cannot be reused
            held = self._held[id(avatar)] = (avatar, self.make(avatar.placement))
            while len(self._held) > self.keep:
                self._held.popitem(last=False)
        self._held.move_to_end(id(avatar))
        return held[1]

    def __call__(self, avatar: Any, frame: np.ndarray) -> np.ndarray:
        paste = self.get(avatar)
        return frame if paste is None else paste(frame)

"""Face-following square crop of the webcam frame, stable while the head is still.

:class:`FaceFramer` finds the face with dlib's HOG frontal face detector (:mod:`odecam.realtime.face_detection`;
built into dlib, no model file, fully offline) on a downscaled grey copy of every Nth frame (while it follows a face,
only a window around it: :func:`detect_faces_near`; in a live loop after the frame went out:
``process(frame, defer_detection=True)`` then :meth:`FaceFramer.detect_deferred`), turns the face
box into a square crop box with a margin, and moves the crop only when the face leaves a
dead zone around its current position (then glides there and stops). A still head therefore
gets a crop that does not move by a single pixel, which keeps the model's input stable.

With ``level_roll`` the crop is also levelled for F_K: dlib's 5-point shape predictor (eye corners and
nose, public domain, from ``face_recognition_models``; about 0.2 ms) runs on the tracked face box of
every frame, the eye line gives the face's roll, and :attr:`Framing.level_image` is the crop turned
about its centre so the eyes are level. The levelling angle has a dead zone like the crop box: it moves
only when the roll leaves ``roll_dead_zone`` degrees around it, then glides there and stops (an upright
face gets exactly 0: no rotation at all; a newly found face starts levelled, as the crop starts in place).
:attr:`Framing.image` is never rotated (what users see);
F_K's keypoints on ``level_image`` are turned back by :attr:`Framing.roll`
(:meth:`odecam.engine.animator.Animator.keypoints`).

Manual zoom and pan apply on top of the face-following crop, or on a centred crop when
following is off; with no face in view the crop falls back (smoothly) to the centre square.
The output is the crop resized to the model's input size.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import cv2
import numpy as np

from odecam.realtime.face_detection import (_detector, _shape5, detect_faces, detect_faces_near,  # noqa: F401
                                             detect_faces_scored, eye_corners, face_roll)
from odecam.rotation import rotate_image

__all__ = ["FramingConfig", "CropBox", "Framing", "FaceFramer", "detect_faces", "detect_faces_near",
           "detect_faces_scored", "face_crop_box", "face_roll", "eye_corners", "level_image", "area_downscale"]

def level_image(image: np.ndarray, roll: float) -> np.ndarray:
    """Square ``image`` (S, S[, C]) turned by ``-roll`` degrees about its centre (a face rolled by ``roll``
    comes out level); borders reflected: :func:`odecam.rotation.rotate_image`, the turn of training's ``rotate``
    augmentation. Keypoints in [-1, 1] on the result turn back to ``image``'s by ``+roll`` about (0, 0)."""
    return rotate_image(image, -roll)


@dataclass
class FramingConfig:
    """Configuration of a :class:`FaceFramer`.

    Attributes:
        output_size: side of the square output image (the model's input size).
        follow_face: follow the detected face; False = fixed centre crop (zoom / pan still apply).
        detect_every: run the face detector on every Nth frame only.
        detect_height: rows of the downscaled frame the detector runs on.
        search: while a face is tracked, the detector scans only a window of this many face sides around it
            (:func:`detect_faces_near`, on the pyramid level where the face is ``search_face_px`` or more), and
            the whole frame only when
            that finds nothing (the face left the window: lost, or another person); 0 = always the whole
            frame. The window is cut from the whole frame's image pyramid, so a face gets the same box from
            either. On carphone the window cuts the detector's frames from about 8-11 ms to about 3 ms.
        search_face_px: the tracked face's box side in the search window at least, pixels, 73 (dlib's
            smallest box) or more (see :func:`detect_faces_near`).
        far_height: when the whole frame at ``detect_height`` rows holds no face, it is searched again at this
            many rows (None: twice ``detect_height``, 640), for a face too small to be found there (at 320 rows a
            face must be about a quarter of the frame's height, 270 px of a 1080p camera; at 640, an eighth): on
            the first such miss and on every ``far_every``-th after it (3-4x the time of a search at 320 rows:
            with no one in view, 2.5 times a second at 30 fps, after the frame went out in live). A face found
            there is tracked with windows cut at that height (the same pixels, so the same box). 0 = never.
        far_every: see ``far_height``.
        face_scale: crop side as a multiple of the detector's face box side (margin around the face).
        face_offset_y: crop centre shift, in face sides (negative = up, to include hair and forehead).
            The defaults match the training clips: centre-cropped square frames of 24 of them hold
            the detected face at a side ratio of 1.82 (median; quartiles 1.77-2.13), the crop centre
            0.02 face sides above the face centre (quartiles -0.02 to 0.14 above).
        dead_zone: the crop starts moving only when its wanted centre is this far away, as a
            fraction of the crop side ...
        dead_zone_size: ... or when its wanted side differs by more than this fraction (larger than
            ``dead_zone``: the detector's box size jumps by about 20% between pyramid levels).
        speed: fraction of the remaining distance covered per frame while moving (0-1]; the glide
            ends on the goal once less than a pixel (of the frame or of the output) is left.
        face_smoothing: weight of a new detection in the running face position estimate (0-1].
        size_smoothing: weight of a new detection in the running face size estimate (0-1].
        lost_after: frames without a detected face after which the crop returns to the centre.
        zoom: manual zoom factor (>1 zooms in, <1 zooms out; the crop never exceeds the frame).
        pan_x, pan_y: manual pan as a fraction of the crop side (positive = right / down).
        interpolation: OpenCV interpolation used to shrink a crop larger than ``output_size`` (a smaller one is
            enlarged bilinearly); ``INTER_AREA`` runs as :func:`area_downscale`.
        level_roll: level the face for F_K (:attr:`Framing.level_image`, :attr:`Framing.roll`) while
            following it; ``image`` is never rotated.
        roll_dead_zone: degrees the face's roll must differ from the current levelling angle before
            that angle moves (then it glides there with ``speed`` and stops).
        roll_smoothing: weight of a new roll measurement in the running estimate (0-1], per frame: the roll is
            measured with the detector, on every ``detect_every``-th frame (dlib's 5 landmarks cost about
            0.4 ms a frame, a third of the framing), each measurement weighted 1 - (1 - w)^detect_every so the
            estimate moves as fast as when measured every frame.
        max_roll: the levelling angle is kept within +-this many degrees.
    """

    output_size: int = 256
    follow_face: bool = True
    detect_every: int = 3
    detect_height: int = 320
    search: float = 2.4
    search_face_px: float = 80.0
    far_height: int | None = None
    far_every: int = 4
    face_scale: float = 1.9
    face_offset_y: float = -0.05
    dead_zone: float = 0.1
    dead_zone_size: float = 0.2
    speed: float = 0.25
    face_smoothing: float = 0.5
    size_smoothing: float = 0.2
    lost_after: int = 45
    zoom: float = 1.0
    pan_x: float = 0.0
    pan_y: float = 0.0
    interpolation: int = cv2.INTER_AREA
    level_roll: bool = True
    roll_dead_zone: float = 7.0
    roll_smoothing: float = 0.3
    max_roll: float = 45.0

    def __post_init__(self) -> None:
        if self.output_size < 8:
            raise ValueError(f"output_size must be at least 8 pixels, got {self.output_size}.")
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be 1 or more, got {self.detect_every}.")
        if not (self.search == 0 or self.search >= 1) or not self.search_face_px >= 73:
            raise ValueError(f"search must be 0 (whole frame) or at least 1 face side, and search_face_px at least 73 "
                             f"pixels (dlib's smallest face box); got {self.search} and {self.search_face_px}.")
        if self.far_height is not None and (self.far_height < 0 or 0 < self.far_height <= self.detect_height) \
                or self.far_every < 1:
            raise ValueError(f"far_height must be 0 (off), None (twice detect_height) or more rows than detect_height "
                             f"({self.detect_height}), and far_every 1 or more; got {self.far_height} and "
                             f"{self.far_every}.")
        if not self.zoom > 0:
            raise ValueError(f"zoom must be a positive factor (1 = no zoom), got {self.zoom}.")
        if not all(0 < v <= 1 for v in (self.speed, self.face_smoothing, self.size_smoothing)):
            raise ValueError("speed, face_smoothing and size_smoothing must be in (0, 1].")
        if not 0 < self.roll_smoothing <= 1 or not self.roll_dead_zone >= 0 or not self.max_roll >= 0:
            raise ValueError("roll_smoothing must be in (0, 1], roll_dead_zone and max_roll 0 degrees or more.")


@dataclass(frozen=True)
class CropBox:
    """A square crop in frame pixels: top-left ``(x, y)`` and side ``size`` (integers)."""

    x: int
    y: int
    size: int

    @property
    def center(self) -> tuple[float, float]:
        """Centre of the box in frame pixels."""
        return (self.x + self.size / 2.0, self.y + self.size / 2.0)

    def contains(self, box: tuple[float, float, float, float], tolerance: float = 0.0) -> bool:
        """Whether ``(x0, y0, x1, y1)`` lies inside this crop, allowing ``tolerance`` pixels outside."""
        x0, y0, x1, y1 = box
        t = tolerance
        return (
            x0 >= self.x - t and y0 >= self.y - t
            and x1 <= self.x + self.size + t and y1 <= self.y + self.size + t
        )


@dataclass(frozen=True)
class Framing:
    """Result of :meth:`FaceFramer.process`.

    Attributes:
        image: the crop resized to ``output_size`` (same channel order as the input frame).
        box: the crop box in input-frame pixels.
        face: the current face box estimate ``(x0, y0, x1, y1)``, or None when no face is tracked.
        detected: whether the detector ran on this frame.
        roll: the levelling angle in degrees (the face's roll, counter-clockwise on screen positive);
            exactly 0.0 when the crop is not levelled.
        level_image: ``image`` turned about its centre by ``-roll`` so the eyes are level (same size and
            channel order), the input for F_K; None when ``roll`` is 0 (use ``image``).
        missed: frames since the detector last found the tracked face (0 while it finds it; the face is dropped
            at ``lost_after``).
    """

    image: np.ndarray
    box: CropBox
    face: tuple[float, float, float, float] | None
    detected: bool
    roll: float = 0.0
    level_image: np.ndarray | None = None
    missed: int = 0

    def model_input(self) -> tuple[np.ndarray, float]:
        """(image for F_K, roll): F_K's keypoints on that image turn back by ``+roll`` degrees about the
        centre (``Animator.keypoints(image, roll=roll)``)."""
        return (self.image, 0.0) if self.level_image is None else (self.level_image, self.roll)

    def model_input_rgb(self) -> tuple[np.ndarray, float]:
        """:meth:`model_input` of a BGR (camera) frame, turned RGB for the engine: (image (S, S, 3) RGB, roll)."""
        image, roll = self.model_input()
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), roll


class FaceFramer:
    """Face-following, jitter-free square crop of a video stream.

    Call :meth:`process` once per frame (in stream order)::

        framer = FaceFramer(FramingConfig(output_size=256))
        out = framer.process(frame_bgr)      # out.image: 256x256 crop, out.box: where it came from

    :meth:`set_manual` changes zoom / pan / following while running (thread-safe).
    """

    def __init__(self, config: FramingConfig | None = None) -> None:
        self.config = config or FramingConfig()
        self._lock = threading.Lock()
        self._manual_pending = False
        self.reset()
        if self.config.follow_face:
            _detector()  # build it now (about 0.3 s) rather than stalling the first live frame
            if self.config.level_roll:
                _shape5()

    def reset(self) -> None:
        """Forget the tracked face and crop (e.g. after the camera changed)."""
        self._frame_index = 0
        self._face: np.ndarray | None = None  # smoothed (cx, cy, side) of the face
        self._missed = 0
        self._box: np.ndarray | None = None  # current crop (cx, cy, side), float
        self._moving = False
        self._frame_shape: tuple[int, int] | None = None
        self._roll_est: float | None = None  # smoothed roll of the tracked face, degrees
        self._roll = 0.0  # current levelling angle
        self._roll_moving = False
        self._fresh_roll = False  # a new face track was measured: start levelled in place
        self._deferred: np.ndarray | None = None  # a frame whose detection process() left for detect_deferred()
        self._whole_misses = 0  # whole-frame searches in a row that found no face (far_every counts them)
        self._big: np.ndarray | None = None  # area_downscale's working buffer

    def set_manual(
        self,
        zoom: float | None = None,
        pan_x: float | None = None,
        pan_y: float | None = None,
        follow_face: bool | None = None,
    ) -> None:
        """Override zoom (factor, >1 = closer), pan (fractions of the crop side) and/or face following.

        The crop glides to the new framing at once (the dead zone does not apply to user changes).
        """
        changes = {k: v for k, v in dict(zoom=zoom, pan_x=pan_x, pan_y=pan_y, follow_face=follow_face).items()
                   if v is not None}
        with self._lock:
            self.config = replace(self.config, **changes)  # validates, e.g. zoom > 0
            self._manual_pending = True

    @property
    def box(self) -> CropBox | None:
        """The crop box used for the last processed frame."""
        return None if self._box is None or self._frame_shape is None else self._to_crop(self._box, *self._frame_shape)

    def process(self, frame: np.ndarray, defer_detection: bool = False) -> Framing:
        """Update the face track with ``frame`` and return its square crop at ``output_size``.

        ``defer_detection``: a detection due on this frame is left for :meth:`detect_deferred`, to run after
        the frame went out (a live loop's idle time before the next frame): its result moves the crop from
        the next frame on, and this frame's latency does not carry it. The first frame of a track detects at
        once (the crop starts on the face); a detection still pending when the next frame comes runs first.
        """
        if frame.ndim not in (2, 3) or frame.shape[0] < 2 or frame.shape[1] < 2:
            raise ValueError(f"FaceFramer expects an image array (H, W[, C]), got shape {frame.shape}.")
        self.detect_deferred()
        with self._lock:
            cfg = self.config
            manual_move, self._manual_pending = self._manual_pending, False
        h, w = frame.shape[:2]
        if self._frame_shape != (h, w):
            self.reset()
            self._frame_shape = (h, w)

        detected = False
        if cfg.follow_face and self._frame_index % cfg.detect_every == 0:
            if defer_detection and self._box is not None:
                self._deferred = frame
            else:
                detected = True
                self._detection(frame, cfg)
        self._frame_index += 1
        if not cfg.follow_face:
            self._face = None

        target = self._target(cfg, h, w)
        if self._box is None:
            self._box = self._clamp(target, h, w)  # first frame: start in place, no glide
            self._moving = False
        else:
            self._step_towards(target, cfg, manual_move)

        crop = self._to_crop(self._box, h, w)
        patch = frame[crop.y:crop.y + crop.size, crop.x:crop.x + crop.size]
        n = cfg.output_size
        if crop.size == n:
            image = np.ascontiguousarray(patch)
        elif crop.size > n and cfg.interpolation == cv2.INTER_AREA:
            image, self._big = area_downscale(patch, n, self._big)
        else:
            image = cv2.resize(patch, (n, n), interpolation=cfg.interpolation if crop.size > n else cv2.INTER_LINEAR)
        face = self._face_box()
        roll = self._glide_roll(face, cfg)
        level = None if roll == 0.0 else level_image(image, roll)
        return Framing(image=image, box=crop, face=face, detected=detected, roll=roll, level_image=level,
                       missed=self._missed if face is not None else 0)

    def detect_deferred(self) -> bool:
        """Run the detection :meth:`process` left for later (``defer_detection``) on its frame; False when
        none was pending. Its result (face box and roll) moves the crop from the next frame on."""
        frame, self._deferred = self._deferred, None
        if frame is None:
            return False
        with self._lock:
            cfg = self.config
        if not cfg.follow_face or frame.shape[:2] != self._frame_shape:
            return False
        self._detection(frame, cfg)
        return True

    # ------------------------------------------------------------------ internals
    def _detection(self, frame: np.ndarray, cfg: FramingConfig) -> None:
        """The detector's frame: the face box, then (levelling) its roll from dlib's 5 landmarks."""
        self._update_face(self._detect(frame, cfg), cfg)
        face = self._face_box()
        if cfg.level_roll and face is not None:
            self._measure_roll(frame, face, cfg)

    def _face_box(self) -> tuple[float, float, float, float] | None:
        if self._face is None:
            return None
        cx, cy, s = self._face
        return (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2)

    def _detect(self, frame: np.ndarray, cfg: FramingConfig) -> list[tuple[float, float, float, float]]:
        """Faces in ``frame``: in a window around the tracked face while it is found there, else the whole frame
        (again at ``far_height`` rows on the first miss and every ``far_every``-th after it)."""
        face = self._face_box()
        if face is not None and cfg.search:
            near = detect_faces_near(frame, face, cfg.search, cfg.search_face_px, self._search_height(face, frame, cfg))
            if near:
                return near
        boxes = detect_faces(frame, cfg.detect_height)
        far = self._far_rows(cfg)
        if boxes or not far:
            self._whole_misses = 0
            return boxes
        self._whole_misses += 1
        return detect_faces(frame, far) if self._whole_misses % cfg.far_every == 1 % cfg.far_every else []

    @staticmethod
    def _far_rows(cfg: FramingConfig) -> int:
        """The far search's rows: ``far_height``, twice ``detect_height`` when None, 0 when off."""
        return 2 * cfg.detect_height if cfg.far_height is None else cfg.far_height

    def _search_height(self, face: tuple[float, float, float, float], frame: np.ndarray, cfg: FramingConfig) -> int:
        """The rows the tracked face's window is cut at: ``detect_height``, or the far search's for a face too small
        for it (a side under 70 px there, below dlib's smallest box: only the far search found it)."""
        side = (face[2] - face[0] + face[3] - face[1]) / 2.0 * cfg.detect_height / frame.shape[0]
        far = self._far_rows(cfg)
        return far if far and side < 70.0 else cfg.detect_height

    def _measure_roll(self, frame: np.ndarray, face: tuple[float, float, float, float], cfg: FramingConfig) -> None:
        """Measure the tracked face's roll (on the detector's frames) into the running estimate."""
        measured = face_roll(frame, face)
        if measured is not None and self._roll_est is None and self._roll == 0.0:
            self._fresh_roll = True  # a new face track: the next glide starts levelled in place
        if measured is None:
            self._roll_est = None
        elif self._roll_est is None:
            self._roll_est = measured
        else:
            weight = 1.0 - (1.0 - cfg.roll_smoothing) ** cfg.detect_every
            self._roll_est += weight * (measured - self._roll_est)

    def _glide_roll(self, face: tuple[float, float, float, float] | None, cfg: FramingConfig) -> float:
        """Move the levelling angle towards the roll estimate (dead zone, glide, every frame); returns it."""
        fresh, self._fresh_roll = self._fresh_roll, False
        if not cfg.level_roll:
            self._roll_est, self._roll, self._roll_moving = None, 0.0, False
            return 0.0
        if face is None:
            self._roll_est = None
        goal = 0.0 if self._roll_est is None else float(np.clip(self._roll_est, -cfg.max_roll, cfg.max_roll))
        off = abs(goal - self._roll)
        if fresh and self._roll_est is not None and off > cfg.roll_dead_zone:  # starts levelled in place
            self._roll, self._roll_moving = goal, False
            return self._roll
        if not self._roll_moving and (off > cfg.roll_dead_zone or (face is None and self._roll != 0.0)):
            self._roll_moving = True
        if self._roll_moving:
            if off * (1 - cfg.speed) < 0.5:  # the last step (under half a degree) lands on the goal
                self._roll, self._roll_moving = goal, False
            else:
                self._roll += cfg.speed * (goal - self._roll)
        return self._roll

    def _update_face(self, boxes: list[tuple[float, float, float, float]], cfg: FramingConfig) -> None:
        if not boxes:
            self._missed += cfg.detect_every
            if self._missed >= cfg.lost_after:
                self._face = None
            return
        self._missed = 0
        candidates = [np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, (b[2] - b[0] + b[3] - b[1]) / 2]) for b in boxes]
        if self._face is None:
            self._face = candidates[0]  # the largest face
            return
        # keep following the same person: the candidate nearest the tracked face
        cur = self._face
        best = min(candidates, key=lambda c: float(np.hypot(*(c[:2] - cur[:2])) / cur[2]))
        if np.hypot(*(best[:2] - cur[:2])) > 1.5 * cur[2]:
            best = candidates[0]  # the tracked face is gone, another one is in view
        a = np.array([cfg.face_smoothing, cfg.face_smoothing, cfg.size_smoothing])
        self._face = cur + a * (best - cur)

    def _target(self, cfg: FramingConfig, h: int, w: int) -> np.ndarray:
        """Wanted crop (cx, cy, side) in frame pixels, before clamping to the frame."""
        if self._face is not None:
            fx, fy, fs = self._face
            side = fs * cfg.face_scale / cfg.zoom
            cx, cy = fx, fy + cfg.face_offset_y * fs
        else:
            side = min(h, w) / cfg.zoom
            cx, cy = w / 2.0, h / 2.0
        side = min(side, float(min(h, w)))
        return np.array([cx + cfg.pan_x * side, cy + cfg.pan_y * side, side])

    @staticmethod
    def _clamp(box: np.ndarray, h: int, w: int) -> np.ndarray:
        cx, cy, side = box
        side = float(np.clip(side, 8.0, min(h, w)))
        cx = float(np.clip(cx, side / 2, w - side / 2))
        cy = float(np.clip(cy, side / 2, h - side / 2))
        return np.array([cx, cy, side])

    def _step_towards(self, target: np.ndarray, cfg: FramingConfig, manual_move: bool) -> None:
        assert self._box is not None and self._frame_shape is not None
        h, w = self._frame_shape
        # compare where the crop would really be: a goal beyond the frame edge is no reason to move
        goal = self._clamp(target, h, w)
        cur = self._box
        side = cur[2]
        off_center = float(np.hypot(goal[0] - cur[0], goal[1] - cur[1])) / side
        off_size = abs(goal[2] / side - 1.0)
        if manual_move:
            self._moving = True
        if not self._moving and (off_center > cfg.dead_zone or off_size > cfg.dead_zone_size):
            self._moving = True
        if not self._moving:
            return
        settle = max(1.0 / side, 1.0 / cfg.output_size)  # one pixel of the frame or of the output
        if max(off_center, off_size) * (1 - cfg.speed) < settle:
            self._box = goal  # the last, pixel-sized step lands exactly on the goal
            self._moving = False
        else:
            self._box = cur + cfg.speed * (goal - cur)

    @staticmethod
    def _to_crop(box: np.ndarray, h: int, w: int) -> CropBox:
        cx, cy, side = FaceFramer._clamp(box, h, w)
        s = int(round(side))
        s = max(1, min(s, h, w))
        x = int(round(cx - s / 2))
        y = int(round(cy - s / 2))
        x = min(max(x, 0), w - s)
        y = min(max(y, 0), h - s)
        return CropBox(x, y, s)


def area_downscale(image: np.ndarray, n: int, buffer: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A square crop (S, S[, C]) larger than n -> (n, n[, C]) as ``cv2.INTER_AREA`` makes it, fast: bilinear to
    2n, then an exact 2 x 2 box average (OpenCV's integer-factor path), after a k x k box average first when
    S >= 4n (a 4K camera's crop). ``INTER_AREA`` at a ratio that is not an integer takes 1-4 ms for a webcam's
    face crop (its generic path); this 0.3-0.6 ms, within 50-58 dB PSNR of it on faces. Returns (the result, a
    new array; the 2n working buffer, to pass back as ``buffer`` so the next call reuses it)."""
    s, k = image.shape[0], image.shape[0] // (2 * n)
    if k >= 2:
        m = k * (s // k)
        image = cv2.resize(image[:m, :m], (m // k, m // k), interpolation=cv2.INTER_AREA)
    shape = (2 * n, 2 * n) + image.shape[2:]
    if buffer is None or buffer.shape != shape or buffer.dtype != image.dtype:
        buffer = np.empty(shape, image.dtype)
    cv2.resize(image, (2 * n, 2 * n), dst=buffer, interpolation=cv2.INTER_LINEAR)
    return cv2.resize(buffer, (n, n), interpolation=cv2.INTER_AREA), buffer


def face_crop_box(face: tuple[float, float, float, float], h: int, w: int,
                  face_scale: float = FramingConfig.face_scale,
                  face_offset_y: float = FramingConfig.face_offset_y) -> "CropBox":
    """The square crop :class:`FaceFramer` settles on for a still face box ``(x0, y0, x1, y1)``.

    Side ``face_scale`` face sides (at most the frame's short side), centre ``face_offset_y`` face
    sides below the face centre (negative = above), shifted to lie inside the ``h`` x ``w`` frame.
    """
    x0, y0, x1, y1 = face
    side = (x1 - x0 + y1 - y0) / 2.0
    target = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0 + face_offset_y * side,
                       min(side * face_scale, float(min(h, w)))])
    return FaceFramer._to_crop(target, h, w)

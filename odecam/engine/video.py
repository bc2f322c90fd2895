"""Reading and writing video files (OpenCV), RGB uint8 frames at the boundary."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from odecam.errors import InputImageError


def open_video(path: str | Path, role: str = "driving video") -> cv2.VideoCapture:
    p = Path(path)
    if not p.exists():
        raise InputImageError(f"{role} {str(p)!r} does not exist; check the path.")
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        raise InputImageError(f"{role} {str(p)!r} cannot be decoded; pass an .mp4, .avi or .mov file.")
    return cap


def read_frames(path: str | Path, max_frames: int | None = None, role: str = "driving video") -> Iterator[np.ndarray]:
    """Yield RGB frames (H, W, 3) uint8; raise :class:`InputImageError` if the file yields none."""
    cap = open_video(path, role)
    n = 0
    try:
        while max_frames is None or n < max_frames:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            n += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
    if n == 0:
        raise InputImageError(f"{role} {str(path)!r} has no decodable frames; pass another video file.")


def video_fps(path: str | Path, default: float = 25.0) -> float:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    return float(fps) if fps and 1.0 <= fps <= 240.0 else default


class VideoFileWriter:
    """Write RGB frames to an .mp4 (MPEG-4 Part 2, 'mp4v': plays in browsers' players, VLC, ffmpeg)."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = size  # (width, height)
        self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self._writer.isOpened():
            raise InputImageError(f"cannot write video {str(self.path)!r}; check the folder exists and is writable.")
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            rgb = cv2.resize(rgb, self.size)
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        self._writer.release()

    def __enter__(self) -> "VideoFileWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

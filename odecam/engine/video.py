"""Reading video files (OpenCV) and writing them as H.264 (PyAV), uint8 frames at the boundary.

Every video odecam writes (``demo``, ``live --record``, ``receive --record``) goes through
:class:`H264Writer`: H.264 (libx264, shipped in PyAV's wheels) in yuv420p, in an ``.mp4`` with its
index at the front (``+faststart``), so browsers, phones and every desktop player open it. Odd
picture sizes are padded by one edge row / column (yuv420p needs even sizes).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from odecam.errors import InputImageError

__all__ = ["open_video", "read_frames", "video_fps", "H264Writer", "VideoFileWriter", "VideoWriteError",
           "probe_codec"]

#: x264 settings: quality-based rate control (visually near-lossless for talking heads); ``PRESET`` for
#: files written offline (demo), ``REALTIME_PRESET`` for recordings made beside the live model (1280x720
#: in about the time OpenCV's MPEG-4 Part 2 writer took, for files about 4x larger than ``PRESET``'s);
#: one encoder thread (a recording encodes on the inference thread: more would compete with the model)
CRF = 20
PRESET = "superfast"
REALTIME_PRESET = "ultrafast"
ENCODER_THREADS = 1
#: frames a background writer may hold before ``write`` waits (720p BGR: 2.8 MB each)
QUEUE_FRAMES = 8


class VideoWriteError(InputImageError):
    """A video file cannot be written (folder missing, not writable); one sentence."""


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


def probe_codec(path: str | Path) -> tuple[str, str, int]:
    """``(codec name, pixel format, frame count)`` of a file's first video stream (decodes it all)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        name, pix_fmt = stream.codec_context.name, stream.codec_context.format.name
        frames = sum(1 for _ in container.decode(stream))
    return name, pix_fmt, frames


class H264Writer:
    """Write uint8 frames (H, W, 3) to an H.264 / yuv420p ``.mp4`` at a constant frame rate.

    Args:
        path: output file; its folder is created when missing.
        fps: frames per second of the file (e.g. 29.97; kept as an exact fraction where it is one).
        size: ``(width, height)`` of the video; None takes the first frame's size. Frames of another
            size are resized to it.
        channels: ``"rgb"`` or ``"bgr"`` (OpenCV's order) for the frames given to :meth:`write`.
        preset: x264 speed preset (default ``PRESET``; ``REALTIME_PRESET`` beside a live model).
        background: convert and encode on a worker thread (frames are copied into a queue of
            ``QUEUE_FRAMES``; :meth:`write` blocks only when it is full, so no frame is ever dropped):
            a live loop then overlaps encoding with the model. Errors surface at the next
            :meth:`write` or at :meth:`close`.

    Raises :class:`VideoWriteError` (one sentence) when the file cannot be created.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int] | None = None,
                 channels: str = "rgb", preset: str | None = None, background: bool = False) -> None:
        if not fps > 0:
            raise ValueError(f"the video frame rate must be positive, got {fps}")
        if channels not in ("rgb", "bgr"):
            raise ValueError(f"channels must be 'rgb' or 'bgr', got {channels!r}")
        self.path = Path(path)
        self.fps = float(fps)
        self.channels = channels
        self.preset = preset or PRESET
        self.size = size  # (width, height) of the frames given; the file's is rounded up to even
        self.frames = 0
        self._container = None
        self._stream = None
        self._background = background
        self._queue = None
        self._worker = None
        self._error: BaseException | None = None
        if self.path.is_dir():
            raise VideoWriteError(f"cannot write video {str(self.path)!r}: it is a folder; pass a file name "
                                  "ending in .mp4.")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VideoWriteError(f"cannot write video {str(self.path)!r}: its folder cannot be created "
                                  f"({exc.strerror or type(exc).__name__}); choose another place.") from None
        if size is not None:
            self._open(*size)

    def _open(self, width: int, height: int) -> None:
        import av

        self.size = (int(width), int(height))
        w, h = width + width % 2, height + height % 2
        try:
            container = av.open(str(self.path), mode="w", format="mp4", options={"movflags": "+faststart"})
        except (OSError, av.FFmpegError) as exc:
            raise VideoWriteError(f"cannot write video {str(self.path)!r} ({type(exc).__name__}); check that its "
                                  "folder exists and is writable.") from None
        rate = Fraction(self.fps).limit_denominator(1001)
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = ENCODER_THREADS
        stream.options = {"crf": str(CRF), "preset": self.preset}
        self._container, self._stream = container, stream

    def write(self, frame: np.ndarray) -> None:
        """Append one frame (H, W, 3) uint8 in the writer's channel order."""
        if self._error is not None:
            raise self._error
        if not self._background:
            self._encode(frame)
            return
        if self._worker is None:
            import queue
            import threading

            self._queue = queue.Queue(maxsize=QUEUE_FRAMES)
            self._worker = threading.Thread(target=self._work, name="odecam-video-writer", daemon=True)
            self._worker.start()
        self._queue.put(np.array(frame, copy=True))  # the caller may reuse its buffer
        self.frames += 1

    def _work(self) -> None:
        while True:
            frame = self._queue.get()
            if frame is None:
                return
            if self._error is None:
                try:
                    self._encode(frame, count=False)
                except BaseException as exc:  # kept for the caller's next write / close
                    self._error = exc

    def _encode(self, frame: np.ndarray, count: bool = True) -> None:
        import av

        if frame.ndim == 2:
            frame = np.repeat(frame[..., None], 3, axis=2)
        if self._container is None:
            self._open(frame.shape[1], frame.shape[0])
        w, h = self.size
        if (frame.shape[1], frame.shape[0]) != (w, h):
            interp = cv2.INTER_AREA if frame.shape[1] > w else cv2.INTER_LINEAR
            frame = cv2.resize(frame, (w, h), interpolation=interp)
        if w % 2 or h % 2:  # yuv420p: pad odd sizes by repeating the last row / column
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[..., :3]), format=f"{self.channels}24")
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        if count:
            self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (idempotent). A writer that got no frame writes no file."""
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join()
            self._worker = None
        if self._container is None:
            if self._error is not None:
                raise self._error
            return
        container, self._container = self._container, None
        try:
            for packet in self._stream.encode(None):
                container.mux(packet)
        finally:
            container.close()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> "H264Writer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoFileWriter(H264Writer):
    """RGB frames of a fixed ``size`` (width, height) to an H.264 ``.mp4`` (see :class:`H264Writer`)."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        super().__init__(path, fps, size, channels="rgb")

"""Tests of the output side: VirtualCameraSink (through a pyvirtualcam backend), FileRecorder, LatencyStats."""
from __future__ import annotations

import hashlib
import platform
import threading
import time
from typing import Any

import cv2
import numpy as np
import pytest
import pyvirtualcam

from odecam.realtime.capture import CaptureConfig, LatestFrameCapture
from odecam.realtime.virtual_camera import (
    FileRecorder,
    LatencyStats,
    RecordingError,
    SinkConfig,
    VirtualCameraSink,
    VirtualCameraUnavailable,
    letterbox,
    virtual_camera_help,
)

try:
    from _realtime_media import carphone_path
except ImportError:  # tests/ imported as a package
    from tests._realtime_media import carphone_path

FAKE = "odecam-test-fake"


class FakeCamera:
    """A pyvirtualcam backend (see pyvirtualcam.camera.Backend) that keeps what it is sent."""

    instances: list["FakeCamera"] = []

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int, device: str | None, **kw: Any) -> None:
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self._device = device or "/dev/fake-video0"
        self.times: list[float] = []
        self.hashes: list[str] = []
        self.thumbs: list[np.ndarray] = []  # every 4th pixel, to keep memory small at 1280x720
        self.closed = False
        FakeCamera.instances.append(self)

    def send(self, frame: np.ndarray) -> None:
        assert frame.ndim == 1 and frame.dtype == np.uint8  # pyvirtualcam hands over a flat buffer
        self.times.append(time.monotonic())
        self.hashes.append(hashlib.blake2b(frame.tobytes(), digest_size=8).hexdigest())
        self.thumbs.append(frame.reshape(self.height, self.width, 3)[::4, ::4].copy())

    def close(self) -> None:
        self.closed = True

    def device(self) -> str:
        return self._device

    def native_fourcc(self) -> int | None:
        return None


@pytest.fixture
def fake_backend():
    FakeCamera.instances.clear()
    pyvirtualcam.register_backend(FAKE, FakeCamera)
    yield FakeCamera
    pyvirtualcam.camera.BACKENDS.pop(FAKE, None)


def _longest_repeat(hashes: list[str]) -> int:
    best = run = 1
    for a, b in zip(hashes, hashes[1:]):
        run = run + 1 if a == b else 1
        best = max(best, run)
    return best


def test_sink_paces_repeats_on_stall_and_streams_the_video(fake_backend) -> None:
    fps = 30.0
    bg_bgr = (10, 20, 30)
    sink = VirtualCameraSink(SinkConfig(width=640, height=360, fps=fps, background=bg_bgr, backend=FAKE))
    submitted: list[np.ndarray] = []
    stall = (0.8, 1.3)  # seconds after start during which the "model" produces nothing

    with LatestFrameCapture(CaptureConfig(source=carphone_path(), loop=True)) as cap, sink:
        assert sink.running and sink.backend == FAKE and sink.device == "/dev/fake-video0"
        t0 = time.monotonic()
        while (now := time.monotonic()) - t0 < 2.0:
            frame = cap.read(timeout=1.0)
            assert frame is not None
            if stall[0] <= now - t0 < stall[1]:
                continue
            avatar = cv2.resize(frame.image, (256, 256), interpolation=cv2.INTER_LINEAR)  # stands in for the model
            submitted.append(avatar)
            sink.submit(avatar, capture_ts=frame.timestamp)
        time.sleep(0.1)
    assert not sink.running

    cam = fake_backend.instances[-1]
    assert cam.closed and (cam.width, cam.height) == (640, 360) and cam.fps == fps
    n = len(cam.times)
    # steady rate over the run, stall included
    assert 0.85 * 2.0 * fps <= n <= 2.1 * fps + 5, n
    intervals = np.diff(cam.times)
    period = 1.0 / fps
    # (tolerances leave room for a busy 2-core machine, where a thread can wake several ms late)
    assert abs(np.median(intervals) - period) < 0.003, np.median(intervals)
    assert np.mean(np.abs(intervals - period) < 0.015) >= 0.8, intervals
    assert abs((n - 1) / (cam.times[-1] - cam.times[0]) - fps) < 0.15 * fps
    # every frame has the canvas size (checked on thumbnails of every 4th pixel)
    assert all(t.shape == (90, 160, 3) for t in cam.thumbs)
    # the stall: the last picture is sent again, ~15 times in 0.5 s
    assert _longest_repeat(cam.hashes) >= 0.7 * (stall[1] - stall[0]) * fps
    assert sink.repeats >= 0.7 * (stall[1] - stall[0]) * fps
    # content follows the video: many distinct pictures, and they are the submitted frames
    assert len(set(cam.hashes)) >= 30
    assert sink.new_frames + sink.repeats == sink.frames_sent == n
    last = cam.thumbs[-1]
    # letterbox: the 256x256 avatar is scaled to 360x360 and centred (x 140..500); the rest is background (RGB)
    assert np.all(last[:, :34] == bg_bgr[::-1]) and np.all(last[:, 126:] == bg_bgr[::-1])
    expect = cv2.resize(submitted[-1], (360, 360), interpolation=cv2.INTER_LINEAR)[::4, ::4, ::-1]  # BGR -> RGB
    assert np.abs(last[:, 35:125].astype(int) - expect.astype(int)).mean() < 4.0
    first_new = cam.thumbs[cam.hashes.index(next(h for h in cam.hashes if h != cam.hashes[0]))]
    assert np.abs(first_new.astype(int) - last.astype(int)).mean() > 1.0  # the picture changed over the clip
    # capture-to-sink latency recorded once per new frame
    stats = sink.stats.as_dict()
    assert sink.stats.total == sink.new_frames >= 30
    assert 0 < stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"] and stats["p50_ms"] < 60.0
    assert "fps" in sink.stats.summary() and "p95" in sink.stats.summary()


def test_sink_default_canvas_is_720p_and_sends_background_before_first_frame(fake_backend) -> None:
    with VirtualCameraSink(SinkConfig(backend=FAKE, background=(0, 0, 255))) as sink:
        time.sleep(0.25)
        sink.submit(np.full((200, 100, 3), 255, np.uint8), capture_ts=time.monotonic())  # a tall frame: pillarbox
        time.sleep(0.15)
    cam = fake_backend.instances[-1]
    assert (cam.width, cam.height, cam.fps) == (1280, 720, 30.0)
    assert cam.thumbs[0].shape == (180, 320, 3)
    assert np.all(cam.thumbs[0] == (255, 0, 0))  # background only (BGR red -> RGB)
    last = cam.thumbs[-1]
    assert np.all(last[:, 160] == 255) and np.all(last[:, 0] == (255, 0, 0))  # 360 px wide column in the middle
    assert sink.new_frames == 1 and sink.repeats >= 5


def test_no_virtual_camera_device_gives_clear_message() -> None:
    pyvirtualcam.camera.BACKENDS.pop(FAKE, None)
    sink = VirtualCameraSink(SinkConfig())  # the default backend(s) of this OS
    try:
        sink.start()
    except VirtualCameraUnavailable as e:
        msg = str(e)
        assert msg == virtual_camera_help()
        assert msg.count(". ") == 0 and msg.endswith(".")  # one sentence
        if platform.system() == "Linux":
            assert "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=odecam" in msg
        assert not sink.running
    else:
        sink.stop()
        pytest.skip("this machine has a virtual camera device")
    with pytest.raises(VirtualCameraUnavailable, match=r"^Unknown virtual camera backend 'nope'"):
        VirtualCameraSink(SinkConfig(backend="nope")).start()
    assert "OBS Studio" in virtual_camera_help("Windows") and "OBS Studio" in virtual_camera_help("Darwin")
    with pytest.raises(ValueError, match="must be even"):
        SinkConfig(width=641)


def test_file_recorder_places_frames_in_time(tmp_path) -> None:
    path = tmp_path / "out.mp4"
    with FileRecorder(path, fps=10.0) as rec:
        t = 100.0
        for i in range(10):
            rec.write(np.full((64, 96, 3), i * 20, np.uint8), timestamp=t + i * 0.1)
        rec.write(np.full((64, 96, 3), 250, np.uint8), timestamp=t + 1.5)  # slots 10-14 repeat frame 9, then slot 15
        rec.write(np.full((64, 96, 3), 0, np.uint8), timestamp=t + 1.52)  # same slot: skipped
        rec.write(np.full((32, 48, 3), 128, np.uint8))  # untimed, other size: resized and appended
    assert rec.frames_written == 10 + 5 + 1 + 1
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    assert len(frames) == 17 and frames[0].shape == (64, 96, 3)
    means = [float(f.mean()) for f in frames]
    assert abs(means[9] - 180) < 6 and all(abs(m - 180) < 6 for m in means[10:15])
    assert abs(means[15] - 250) < 6 and abs(means[16] - 128) < 6
    with pytest.raises(RecordingError, match="does not exist"):
        FileRecorder(tmp_path / "missing" / "x.mp4")
    with pytest.raises(RecordingError, match="could not open"):
        FileRecorder(tmp_path / "x.unknown").write(np.zeros((8, 8, 3), np.uint8))


def test_latency_stats() -> None:
    stats = LatencyStats(window=100)
    assert stats.summary() == "no frames yet" and stats.fps == 0.0
    for i in range(200):
        stats.record(float(i % 100), now=i / 25.0)
    d = stats.as_dict()
    assert d["frames"] == 100 and stats.total == 200
    assert d["p50_ms"] == pytest.approx(49.5) and d["p95_ms"] == pytest.approx(94.05)
    assert d["p99_ms"] == pytest.approx(98.01) and d["max_ms"] == 99.0
    assert d["fps"] == pytest.approx(25.0)
    assert stats.summary() == "25.0 fps | capture->sink p50 49.5 ms, p95 94.0 ms, p99 98.0 ms (n=100)"


def test_letterbox_and_concurrent_submit(fake_backend) -> None:
    out = letterbox(np.full((10, 40, 3), 200, np.uint8), 80, 40, (1, 2, 3))
    assert out.shape == (40, 80, 3)
    assert np.all(out[:10] == (1, 2, 3)) and np.all(out[30:] == (1, 2, 3)) and np.all(out[10:30] == 200)
    # into a reused canvas full of junk: borders and picture drawn as on a new one (left/right and top/bottom)
    rng = np.random.default_rng(0)
    for frame, (w, h) in (((rng.random((16, 16, 3)) * 255).astype(np.uint8), (48, 24)),
                          ((rng.random((16, 16, 3)) * 255).astype(np.uint8), (24, 48))):
        junk = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        assert np.array_equal(letterbox(frame, w, h, (5, 6, 7), out=junk), letterbox(frame, w, h, (5, 6, 7)))
        assert np.array_equal(letterbox(frame, w, h, (9, 9, 9), out=junk), letterbox(frame, w, h, (9, 9, 9)))

    sink = VirtualCameraSink(SinkConfig(width=64, height=64, fps=60.0, backend=FAKE)).start()
    frames = [np.full((16, 16, 3), v, np.uint8) for v in range(0, 250, 10)]

    def producer() -> None:
        for f in frames * 20:
            sink.submit(f)
            time.sleep(0.0005)

    threads = [threading.Thread(target=producer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(0.05)
    sink.stop()
    assert sink.error is None
    assert sink.skipped > 0 and sink.new_frames > 5
    with pytest.raises(ValueError, match="uint8"):
        sink.submit(np.zeros((4, 4, 3), np.float32))

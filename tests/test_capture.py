"""Tests of LatestFrameCapture on a real video file: newest-only, timestamps, reconnect."""
from __future__ import annotations

import threading
import time

import cv2
import pytest

from odecam.realtime.capture import CaptureConfig, CaptureError, LatestFrameCapture

try:
    from _realtime_media import carphone_path
except ImportError:  # tests/ imported as a package
    from tests._realtime_media import carphone_path

N_FRAMES = 120  # carphone


def test_slow_consumer_gets_newest_frames_and_drops_are_counted() -> None:
    cfg = CaptureConfig(source=carphone_path(), pace_fps=200.0)  # 120 frames in 0.6 s
    seen = []
    with LatestFrameCapture(cfg) as cap:
        assert cap.connected and abs(cap.source_fps - 29.97) < 0.01
        while True:
            f = cap.read(timeout=2.0)
            if f is None:
                break
            seen.append((f, time.monotonic()))
            time.sleep(0.04)  # a consumer slower than the source
        assert cap.ended
        captured, dropped = cap.frames_captured, cap.dropped
        assert cap.frame_size == (176, 144)

    assert captured == N_FRAMES
    frames = [f for f, _ in seen]
    # every frame is either consumed or dropped (nothing queued up behind the consumer)
    assert len(frames) + dropped == captured
    assert dropped > N_FRAMES // 2
    seqs = [f.seq for f in frames]
    stamps = [f.timestamp for f in frames]
    assert all(b > a for a, b in zip(seqs, seqs[1:]))
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert frames[-1].seq == N_FRAMES - 1  # the last frame of the file is still delivered
    # no backlog: what the consumer gets is always recent, and does not age over time
    ages = [t_read - f.timestamp for f, t_read in seen[:-1]]
    assert max(ages) < 0.1, ages
    assert frames[0].image.shape == (144, 176, 3)


def test_fast_consumer_sees_every_frame_in_order_and_loop() -> None:
    cfg = CaptureConfig(source=carphone_path(), pace_fps=300.0, loop=True)
    with LatestFrameCapture(cfg) as cap:
        seqs = []
        while len(seqs) < N_FRAMES + 30:
            f = cap.read(timeout=2.0)
            assert f is not None, "a looping file never ends"
            seqs.append(f.seq)
        assert not cap.ended
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert max(seqs) >= N_FRAMES + 29


def test_pacing_follows_file_fps() -> None:
    cfg = CaptureConfig(source=carphone_path())  # paced at the file's own 29.97 fps
    with LatestFrameCapture(cfg) as cap:
        frames = [cap.read(timeout=1.0) for _ in range(16)]
    stamps = [f.timestamp for f in frames if f is not None]
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert 25.0 < rate < 33.0, rate


def test_camera_unplugged_then_back_reconnects() -> None:
    """A 'camera' whose stream dies (end of the real clip), whose reopen fails for a while, then returns."""
    path = carphone_path()
    calls: list[float] = []
    lock = threading.Lock()

    def flaky_opener(source: int | str) -> cv2.VideoCapture:
        with lock:
            calls.append(time.monotonic())
            n = len(calls)
        if n in (2, 3):
            raise OSError("device not found")
        if n == 4:
            return cv2.VideoCapture()  # a closed capture, as OpenCV returns for a missing camera
        return cv2.VideoCapture(path)

    cfg = CaptureConfig(
        source="/dev/video-test", kind="camera", pace=True, pace_fps=400.0,
        backoff_initial_s=0.02, backoff_max_s=0.2,
    )
    saw_disconnected = False
    after_reconnect = []
    with LatestFrameCapture(cfg, opener=flaky_opener) as cap:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and len(after_reconnect) < 10:
            f = cap.read(timeout=0.05)
            if not cap.connected:
                saw_disconnected = True
            if f is not None and cap.reconnects >= 1 and f.seq >= N_FRAMES:
                after_reconnect.append(f)
        assert cap.disconnects >= 1 and cap.reconnects >= 1
        assert not cap.ended
    assert saw_disconnected
    assert len(after_reconnect) >= 10, "frames flow again after the device returns"
    assert after_reconnect[0].image.shape == (144, 176, 3)
    # reopen attempts back off: the waits between failed attempts grow
    assert len(calls) >= 5
    gaps = [b - a for a, b in zip(calls[1:4], calls[2:5])]
    assert all(g >= 0.9 * 0.02 * 2**i for i, g in enumerate(gaps)), gaps  # 20, 40, 80 ms at least


def test_no_reconnect_ends_stream() -> None:
    cfg = CaptureConfig(source=carphone_path(), kind="camera", pace_fps=600.0, reconnect=False)
    with LatestFrameCapture(cfg) as cap:
        while cap.read(timeout=2.0) is not None:
            pass
        assert cap.ended and not cap.connected and cap.disconnects == 1


def test_cannot_open_gives_one_clear_sentence(tmp_path) -> None:
    with pytest.raises(CaptureError, match=r"^Video file '.*nope\.mp4' does not exist\.$"):
        LatestFrameCapture(CaptureConfig(source=str(tmp_path / "nope.mp4"))).start()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(CaptureError, match="Could not open video file"):
        LatestFrameCapture(CaptureConfig(source=str(bad))).start()
    with pytest.raises(CaptureError, match=r"Could not open camera 3; check that it is plugged in"):
        LatestFrameCapture(CaptureConfig(source="3"), opener=lambda s: cv2.VideoCapture()).start()

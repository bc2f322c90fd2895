"""Videos odecam writes are H.264 / yuv420p (probed with PyAV) and play in a real headless Chromium.

The browser check serves the written file from 127.0.0.1 (aiohttp, with HTTP range requests) in a page
with a muted ``<video autoplay>``: the element must reach ``readyState`` 4 (HAVE_ENOUGH_DATA) and its
``currentTime`` must advance. Skipped when /usr/bin/chromium is absent (``apt-get install -y chromium``).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import av
import numpy as np
import pytest

from odecam.engine.video import H264Writer, VideoFileWriter, VideoWriteError, probe_codec, read_frames
from odecam.realtime.virtual_camera import FileRecorder, RecordingError

from _chromium import APT_INSTALL, CHROMIUM, Chromium, write_y4m


def _moving_frames(n: int, h: int, w: int) -> list[np.ndarray]:
    """RGB frames: a red square sliding over a grey-blue gradient."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.full((h, w), 40), (yy * 200 // max(1, h - 1)), (xx * 200 // max(1, w - 1))], -1)
    frames = []
    for i in range(n):
        f = base.astype(np.uint8).copy()
        x = (i * 3) % max(1, w - 16)
        f[h // 2 - 8:h // 2 + 8, x:x + 16] = (230, 20, 20)
        frames.append(f)
    return frames


def test_writer_is_h264_yuv420p_with_every_frame_and_rgb_order(tmp_path):
    path = tmp_path / "rgb.mp4"
    frames = _moving_frames(24, 96, 128)
    with VideoFileWriter(path, 29.97, (128, 96)) as w:
        for f in frames:
            w.write(f)
    assert probe_codec(path) == ("h264", "yuv420p", 24)
    with av.open(str(path)) as c:
        assert float(c.streams.video[0].average_rate) == pytest.approx(29.97, abs=0.01)
    back = list(read_frames(path))
    assert len(back) == 24 and back[5].shape == (96, 128, 3)
    # the red square is red (channel order kept) and sits where it was drawn
    sq = back[5][40:56, 17:31].reshape(-1, 3).mean(0)
    assert sq[0] > 180 and sq[1] < 70 and sq[2] < 70, sq
    assert np.abs(back[0].astype(int) - frames[0]).mean() < 4  # near-lossless (crf 20)


def test_odd_sizes_bgr_frames_and_errors(tmp_path):
    path = tmp_path / "odd.mp4"
    with H264Writer(path, 25, channels="bgr") as w:  # size from the first frame: 45x33 (odd)
        for i in range(5):
            w.write(np.full((33, 45, 3), (200, 30, 30), np.uint8))  # BGR: blue
    assert probe_codec(path) == ("h264", "yuv420p", 5)
    rgb = next(read_frames(path))
    assert rgb.shape == (34, 46, 3) and rgb[10, 10, 2] > 170 and rgb[10, 10, 0] < 60
    with pytest.raises(VideoWriteError, match="folder"):
        H264Writer(tmp_path, 25, (64, 64))


def test_file_recorder_writes_h264(tmp_path):
    path = tmp_path / "rec.mp4"
    with FileRecorder(path, fps=30) as rec:
        for f in _moving_frames(12, 72, 128):
            rec.write(f[..., ::-1].copy())
    assert rec.frames_written == 12
    assert probe_codec(path) == ("h264", "yuv420p", 12)
    with pytest.raises(RecordingError, match="mp4"):
        FileRecorder(tmp_path / "x.avi")


def test_background_writer_keeps_every_frame_of_a_reused_buffer(tmp_path):
    path = tmp_path / "bg.mp4"
    buf = np.zeros((64, 96, 3), np.uint8)
    with H264Writer(path, 30, (96, 64), channels="bgr", background=True) as w:
        for i in range(30):
            buf[:] = 10 + 7 * i  # the caller reuses one buffer, as the live loop does
            w.write(buf)
    assert w.frames == 30 and probe_codec(path) == ("h264", "yuv420p", 30)
    levels = [float(f.mean()) for f in read_frames(path)]
    assert np.all(np.abs(np.diff(levels) - 7) < 2.5), levels


PAGE = """<!doctype html><meta charset="utf-8"><title>play</title>
{videos}"""


async def chromium_plays(videos: list[Path], workdir: Path, clip: Path) -> list[dict]:
    """Serve ``videos`` (one folder) in a page of muted autoplay <video> elements; return each element's
    state once all play (or the last seen): readyState, currentTime, error code, size."""
    from aiohttp import web

    folder = videos[0].parent
    tags = "\n".join(f'<video id="v{i}" src="{v.name}" muted autoplay playsinline></video>'
                      for i, v in enumerate(videos))
    (folder / "play.html").write_text(PAGE.format(videos=tags))
    app = web.Application()
    app.router.add_static("/", folder)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    states: list[dict] = [{} for _ in videos]
    first: list[float | None] = [None for _ in videos]
    try:
        async with Chromium(f"http://127.0.0.1:{port}/play.html", clip, workdir) as browser:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                states = await browser.page.evaluate(
                    "[...document.querySelectorAll('video')].map(v => ({ready: v.readyState, t: v.currentTime, "
                    "error: v.error && v.error.code, w: v.videoWidth, h: v.videoHeight}))")
                for i, st in enumerate(states):
                    if st["ready"] == 4:
                        first[i] = st["t"] if first[i] is None else first[i]
                        if st["t"] > first[i] + 0.2:
                            st["advanced_from"] = first[i]
                if all(st.get("error") or "advanced_from" in st for st in states):
                    break
                await asyncio.sleep(0.1)
    finally:
        await runner.cleanup()
    return states


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (Debian: {APT_INSTALL})")
@pytest.mark.timeout(90)
def test_headless_chromium_plays_the_written_files(tmp_path):
    pytest.importorskip("aiohttp")
    site = tmp_path / "site"
    site.mkdir()
    with VideoFileWriter(site / "demo.mp4", 30, (128, 96)) as w:  # as demo writes (RGB, offline preset)
        for f in _moving_frames(90, 96, 128):  # 3 s
            w.write(f)
    with FileRecorder(site / "rec.mp4", fps=30) as rec:  # as live / receive --record write (BGR, real-time preset)
        for f in _moving_frames(90, 72, 128):
            rec.write(f[..., ::-1].copy())
    clip = tmp_path / "cam.y4m"
    write_y4m(_moving_frames(2, 32, 32), clip)
    states = asyncio.run(chromium_plays([site / "demo.mp4", site / "rec.mp4"], tmp_path / "chromium", clip))
    for st, size in zip(states, [(128, 96), (128, 72)]):
        assert st.get("error") is None and st.get("ready") == 4, states
        assert "advanced_from" in st and st["t"] > st["advanced_from"], states
        assert (st["w"], st["h"]) == size

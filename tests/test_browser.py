"""End to end in a real headless Chromium: the page sends the fake camera (the carphone clip) to
``odecam serve``'s server over WebRTC and gets the animated avatar back.

The server runs the real (untrained 'lite') animator; its frames carry the driving frame as a small inset
(``inset_animator_factory``) because an untrained model's output changes by 1 grey level at most, which
VP8 erases: the inset makes the browser-side check "the returned frames follow the clip" meaningful,
while the model's own output changes are counted pixel-exactly on the server.

Skipped when /usr/bin/chromium is absent (CI installs it: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="odecam serve needs aiohttp: pip install aiohttp")

from _chromium import APT_INSTALL, CHROMIUM, Chromium, inset_animator_factory, write_y4m
from conftest import carphone_path

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (Debian: {APT_INSTALL})"),
    pytest.mark.asyncio,
    pytest.mark.timeout(60),  # the whole file: Chromium start, ICE, DTLS, frames both ways
]

TOKEN = "browser-test-token-0123"
#: decoded avatar frames the browser must report (getStats framesDecoded)
MIN_DECODED = 30
#: distinct pixel checksums of decoded frames in the page (the driving inset moves them), changed frames
#: rendered by the server, and changed outputs of the model itself (pixel-exact, before the inset)
MIN_DISTINCT = 10


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from odecam.engine.video import read_frames

    path = tmp_path_factory.mktemp("clip") / "carphone.y4m"
    n = write_y4m(read_frames(carphone_path()), path)
    assert n == 120
    return path


async def wait_for(page, expression: str, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = await page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            snap = await page.evaluate("window.odecam ? odecam.snapshot() : null")
            raise AssertionError(f"timed out waiting for {what}; page state: {snap}")
        await asyncio.sleep(0.2)


async def test_browser_round_trip(tmp_path, clip):
    from odecam import assets
    from odecam.engine import Avatar
    from odecam.engine.images import load_image
    from odecam.engine.weights import load_model
    from odecam.realtime.framing import FramingConfig
    from odecam.realtime.webrtc_server import AvatarServer, start

    t0 = time.monotonic()
    model = load_model(None, "lite").model
    portrait = assets.AVATAR_CROP.apply(load_image(assets.default_avatar_path()))
    avatars = [Avatar(model, portrait, name="astronaut"), Avatar(model, 255 - portrait, name="negative")]
    server = AvatarServer(model, avatars, TOKEN, max_peers=2, loopback=True,  # the webcam framed, as odecam serve
                          animator_factory=inset_animator_factory(model),
                          framing=FramingConfig(output_size=model.cfg.image_size))
    running = await start(server, "127.0.0.1", 0)
    try:
        async with Chromium(f"{running.url}#token={TOKEN}", clip, tmp_path) as browser:
            page = browser.page
            # load the page again with the console and browser log on: CSP violations are reported there
            await page.call("Log.enable")
            await page.call("Runtime.enable")
            await page.call("Page.reload", ignoreCache=True)
            await asyncio.sleep(0.5)
            await wait_for(page, "!!(window.odecam && odecam.snapshot().avatars.length === 2)", 15, "the avatar list")
            # the page is styled: its style sheet loaded (no CSP violation), the two videos are square boxes
            layout = await page.evaluate(
                "(() => { const r = id => { const b = document.getElementById(id).getBoundingClientRect();"
                " return [b.width, b.height]; }; return {local: r('local'), remote: r('remote'),"
                " font: getComputedStyle(document.body).fontFamily, sheets: document.styleSheets.length,"
                " bg: getComputedStyle(document.getElementById('remote')).backgroundColor}; })()")
            assert layout["sheets"] == 1 and "system-ui" in layout["font"], layout
            for name in ("local", "remote"):
                w, h = layout[name]
                assert w > 100 and abs(w - h) < 1, layout  # non-zero, square (aspect-ratio 1 from style.css)
            assert layout["bg"] == "rgb(34, 34, 34)", layout
            await page.evaluate("document.getElementById('start').click()")
            await wait_for(page, f"odecam.snapshot().framesDecoded >= {MIN_DECODED}", 30,
                           f"{MIN_DECODED} decoded avatar frames")
            await wait_for(page, f"odecam.snapshot().distinct >= {MIN_DISTINCT}", 10, "moving avatar frames")
            snap = await page.evaluate("odecam.snapshot()")
            assert snap["error"] is None, snap
            assert snap["connectionState"] == "connected"
            size = model.cfg.image_size  # the served avatar is the model's output size
            assert (snap["frameWidth"], snap["frameHeight"]) == (size, size)
            assert not browser.page.ws.closed
            [peer] = server.peers.values()
            stats = peer.track.stats
            assert stats.frames_in > 0 and stats.frames_animated > 0
            assert stats.frames_changed >= MIN_DISTINCT, stats
            assert peer.animator.model_changes >= MIN_DISTINCT, "the model's own output never changed"

            # the page's selector switches the avatar live; the recalibrate button reaches the server
            await page.evaluate("(() => { const s = document.getElementById('avatar'); s.value = 'negative';"
                                " s.dispatchEvent(new Event('change')); })()")
            await page.evaluate("document.getElementById('recalibrate').click()")
            deadline = time.monotonic() + 10
            while not (peer.animator.avatar.name == "negative" and stats.recalibrations == 1):
                assert time.monotonic() < deadline, (peer.info(), stats)
                await asyncio.sleep(0.1)
            await wait_for(page, "odecam.snapshot().avatar === 'negative'", 5, "the server to confirm the switch")
            animated = stats.frames_animated
            await wait_for(page, f"odecam.snapshot().framesDecoded >= {snap['framesDecoded'] + 5}", 10,
                           "frames after the switch")
            assert stats.frames_animated > animated

            print(f"\nbrowser: {snap['framesDecoded']} frames decoded, {snap['distinct']} distinct checksums of "
                  f"{snap['probed']} probed; model output changed {peer.animator.model_changes}x; "
                  f"server: {stats.as_dict()}, p50 {peer.info()['latency_p50_ms']} ms, {time.monotonic() - t0:.1f} s")
            console = page.console_lines()
            assert not [ln for ln in console if "Content Security Policy" in ln or "Content-Security-Policy" in ln], \
                console
            assert not [ln for ln in console if ln.startswith(("[exception]", "[console/error]"))], console
            await page.evaluate("odecam.stop()")
            deadline = time.monotonic() + 10
            while server.peers:  # the browser's close reaches the server
                assert time.monotonic() < deadline, "the server kept the peer after the page closed it"
                await asyncio.sleep(0.1)
    finally:
        await running.stop()
    assert not server.peers


async def test_the_avatar_box_takes_the_shape_of_a_paste_back_video(tmp_path, clip):
    """``serve --paste-back`` sends a wide photo (2 S rows high): the page's avatar box takes the video's shape
    instead of letterboxing it in a square."""
    from odecam.engine import Avatar
    from odecam.engine.paste_back import Placement
    from odecam.engine.portrait import find_portrait
    from odecam.engine.weights import load_model
    from odecam.realtime.framing import FramingConfig
    from odecam.realtime.webrtc_server import AvatarServer, start
    from skimage import data

    model = load_model(None, "lite").model
    size = model.cfg.image_size
    photo = np.full((600, 1400, 3), 200, np.uint8)
    photo[50:562, 700:1212] = data.astronaut()
    found = find_portrait(photo)
    avatar = Avatar(model, found.image, name="wide", placement=Placement.of_portrait(photo, found, size))
    server = AvatarServer(model, [avatar], TOKEN, max_peers=1, loopback=True, paste_back=True,
                          animator_factory=inset_animator_factory(model),
                          framing=FramingConfig(output_size=size))
    running = await start(server, "127.0.0.1", 0)
    try:
        async with Chromium(f"{running.url}#token={TOKEN}", clip, tmp_path) as browser:
            page = browser.page
            await wait_for(page, "!!(window.odecam && odecam.snapshot().avatars.length === 1)", 15, "the avatar list")
            await page.evaluate("document.getElementById('start').click()")
            await wait_for(page, "odecam.snapshot().framesDecoded >= 5", 30, "decoded avatar frames")
            width, height = round(1400 * 2 * size / 600 / 2) * 2, 2 * size  # PasteBack.rows(placement, 2 S)
            await wait_for(page, f"odecam.snapshot().frameWidth === {width}", 10, "the wide frames' size")
            box = await page.evaluate("(() => { const b = document.getElementById('remote').getBoundingClientRect();"
                                      " return [b.width, b.height]; })()")
            assert box[0] > 100 and abs(box[0] / box[1] - width / height) < 0.01, (box, width, height)
            await page.evaluate("odecam.stop()")
    finally:
        await running.stop()

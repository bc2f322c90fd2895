"""Screenshot of the working ``odecam serve`` page -> docs/serve.png (for the README).

Starts the real server (installed default weights, the built-in astronaut) on 127.0.0.1, opens the page
in headless Chromium whose fake camera plays the carphone clip, presses Start camera, waits until the
avatar stream plays, and captures the page (Chrome DevTools Protocol, Page.captureScreenshot).

Usage: python scripts/screenshot_serve.py [docs/serve.png]   (needs /usr/bin/chromium)
"""

import asyncio
import base64
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _chromium import Chromium, write_y4m  # noqa: E402

TOKEN = "screenshot-token-0123456789"


async def main(out: Path) -> None:
    from odecam import assets
    from odecam.commands.serve import load_avatars
    from odecam.engine.video import read_frames
    from odecam.engine.weights import load_model
    from odecam.realtime.framing import FramingConfig
    from odecam.realtime.webrtc_server import AvatarServer, start

    model = load_model(None, None).model
    server = AvatarServer(model, load_avatars(model, []), TOKEN, max_peers=1, loopback=True,
                          framing=FramingConfig(output_size=model.cfg.image_size))  # as odecam serve frames it
    running = await start(server, "127.0.0.1", 0)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "carphone.y4m"
        write_y4m(read_frames(assets.default_driving_path()), clip)
        try:
            async with Chromium(f"{running.url}#token={TOKEN}", clip, Path(tmp)) as browser:
                page = browser.page
                await page.call("Emulation.setDeviceMetricsOverride", width=960, height=660, deviceScaleFactor=1,
                                mobile=False)
                deadline = time.monotonic() + 20
                while not await page.evaluate("!!(window.odecam && odecam.snapshot().avatars.length)"):
                    assert time.monotonic() < deadline, "the page did not load its avatar list"
                    await asyncio.sleep(0.2)
                await page.evaluate("document.getElementById('start').click()")
                deadline = time.monotonic() + 60
                while (await page.evaluate("odecam.snapshot().framesDecoded")) < 60:
                    assert time.monotonic() < deadline, await page.evaluate("odecam.snapshot()")
                    await asyncio.sleep(0.2)
                await page.evaluate("document.getElementById('recalibrate').click()")
                await asyncio.sleep(2.0)
                shot = await page.call("Page.captureScreenshot", format="png", timeout=20)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(base64.b64decode(shot["data"]))
                await page.evaluate("odecam.stop()")
        finally:
            await running.stop()
    print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "serve.png"))

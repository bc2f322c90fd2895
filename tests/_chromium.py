"""Test helpers: a Y4M clip for Chromium's fake camera, a headless Chromium, and a tiny CDP client.

Chromium is driven over the Chrome DevTools Protocol (``--remote-debugging-port=0``; the port is read
from ``DevToolsActivePort`` in the profile folder) with aiohttp's websocket client: no selenium or
playwright needed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable

import aiohttp
import numpy as np

CHROMIUM = Path("/usr/bin/chromium")
#: how CI installs it (Debian bookworm package)
APT_INSTALL = "apt-get install -y chromium"

FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-dev-shm-usage", "--allow-loopback-in-peer-connection",
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
    "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
]


def rgb_to_yuv420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full-range BT.601 (JPEG) Y, Cb, Cr planes; chroma averaged over 2x2 blocks (even sizes)."""
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b
    h, w = y.shape

    def sub(c: np.ndarray) -> np.ndarray:
        return c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    def u8(c: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(c), 0, 255).astype(np.uint8)

    return u8(y), u8(sub(cb)), u8(sub(cr))


def write_y4m(frames: Iterable[np.ndarray], path: Path, fps: int = 30) -> int:
    """Write RGB uint8 frames (all the same even size) as a 4:2:0 Y4M clip; returns the frame count."""
    n = 0
    with open(path, "wb") as f:
        for rgb in frames:
            h, w = rgb.shape[:2]
            if n == 0:
                if h % 2 or w % 2:
                    raise ValueError(f"Y4M 4:2:0 needs even sizes, got {w}x{h}")
                f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
            f.write(b"FRAME\n")
            for plane in rgb_to_yuv420(rgb):
                f.write(plane.tobytes())
            n += 1
    return n


class CDPError(RuntimeError):
    pass


class CDP:
    """A minimal Chrome DevTools Protocol session over one websocket (one page target)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self.events: list[dict] = []  # notifications ({"method", "params"}), e.g. Log.entryAdded after Log.enable
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "method" in data and "id" not in data:
                self.events.append(data)
                continue
            fut = self._pending.pop(data.get("id"), None)
            if fut is not None and not fut.done():
                if "error" in data:
                    fut.set_exception(CDPError(str(data["error"])))
                else:
                    fut.set_result(data.get("result", {}))
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(CDPError("the DevTools connection closed"))

    async def call(self, method: str, timeout: float = 10.0, **params: Any) -> dict:
        msg_id = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self.ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        return await asyncio.wait_for(fut, timeout)

    async def evaluate(self, expression: str, timeout: float = 10.0) -> Any:
        """The JSON value of a page expression (promises are awaited)."""
        result = await self.call("Runtime.evaluate", timeout=timeout, expression=expression,
                                 returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CDPError(f"page exception: {text}")
        return result["result"].get("value")

    def console_lines(self) -> list[str]:
        """Text of the console and browser-log messages received so far (Log / Runtime events)."""
        lines = []
        for ev in self.events:
            p = ev.get("params", {})
            if ev["method"] == "Log.entryAdded":
                e = p.get("entry", {})
                lines.append(f"[{e.get('source')}/{e.get('level')}] {e.get('text')}")
            elif ev["method"] == "Runtime.consoleAPICalled":
                args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                lines.append(f"[console/{p.get('type')}] {args}")
            elif ev["method"] == "Runtime.exceptionThrown":
                lines.append(f"[exception] {p.get('exceptionDetails', {}).get('text')}")
        return lines

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


class Chromium:
    """Headless Chromium on ``url`` with the fake camera playing ``clip`` (async context manager).

    ``page`` is a :class:`CDP` session on the opened tab; ``log`` the browser's stderr file.
    """

    def __init__(self, url: str, clip: Path, workdir: Path, binary: Path = CHROMIUM) -> None:
        self.url, self.clip, self.workdir, self.binary = url, clip, workdir, binary
        self.profile = workdir / "profile"
        self.log = workdir / "chromium.log"
        self.proc: subprocess.Popen | None = None
        self.http: aiohttp.ClientSession | None = None
        self.page: CDP | None = None

    async def __aenter__(self) -> "Chromium":
        self.profile.mkdir(parents=True, exist_ok=True)
        args = [str(self.binary), *FLAGS, f"--use-file-for-fake-video-capture={self.clip}",
                f"--user-data-dir={self.profile}", self.url]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        try:
            port = await self._devtools_port(timeout=30.0)
            self.http = aiohttp.ClientSession()
            ws_url = await self._page_ws(port, timeout=15.0)
            ws = await self.http.ws_connect(ws_url, max_msg_size=0)
            self.page = CDP(ws)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _devtools_port(self, timeout: float) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}: {self.tail()}")
            if marker.exists():
                lines = marker.read_text().split()
                if lines:
                    return int(lines[0])
            await asyncio.sleep(0.1)
        raise TimeoutError(f"chromium gave no DevTools port within {timeout} s: {self.tail()}")

    async def _page_ws(self, port: int, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                async with self.http.get(f"http://127.0.0.1:{port}/json/list") as res:
                    targets = await res.json(content_type=None)
                for t in targets:
                    if t.get("type") == "page" and t.get("url", "").startswith(self.url.split("#")[0]):
                        return t["webSocketDebuggerUrl"]
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise TimeoutError(f"no page target for {self.url} within {timeout} s: {self.tail()}")

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    async def __aexit__(self, *exc: object) -> None:
        if self.page is not None:
            try:
                await asyncio.wait_for(self.page.close(), 2.0)
            except (asyncio.TimeoutError, aiohttp.ClientError):
                pass
        if self.http is not None:
            await self.http.close()
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the group of the browser we started
            except ProcessLookupError:
                pass
            for _ in range(50):
                if self.proc.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)


def inset_animator_factory(model, **kwargs):
    """An animator factory for :class:`~odecam.realtime.webrtc_server.AvatarServer` whose output is the
    real model output with the driving frame as a picture-in-picture inset (top-left third).

    With untrained weights the model's output barely changes (by 1 grey level, which VP8 erases), so the
    inset is what lets a browser see the returned stream follow the clip. ``model_changes`` counts
    rendered frames whose MODEL output (without the inset) differs from the previous one.
    """
    import cv2

    from odecam.engine import Animator
    from odecam.engine.images import center_square

    class InsetAnimator(Animator):
        model_changes = 0
        _last = None

        def __call__(self, frame: np.ndarray, roll: float = 0.0) -> np.ndarray:
            out = super().__call__(frame, roll)
            if self._last is not None and not np.array_equal(out, self._last):
                self.model_changes += 1
            self._last = out
            out = out.copy()
            s = out.shape[0] // 3
            out[:s, :s] = cv2.resize(center_square(frame), (s, s), interpolation=cv2.INTER_AREA)
            return out

    return lambda avatar: InsetAnimator(model, avatar, **kwargs)

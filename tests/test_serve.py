"""``odecam serve`` without a browser: HTTP signalling rules, the avatar track, an aiortc client round
trip (in a simulated loopback-only network), and the command line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
import zlib

import numpy as np
import pytest
import torch

aiohttp = pytest.importorskip("aiohttp", reason="odecam serve needs aiohttp: pip install aiohttp (a dependency to "
                              "declare in pyproject.toml)")
import pytest_asyncio  # noqa: E402
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import VIDEO_TIME_BASE, MediaStreamError, MediaStreamTrack
from av import VideoFrame

from odecam import assets
from odecam.cli import main as cli_main
from odecam.engine import Avatar
from odecam.engine.images import load_image
from odecam.engine.relative_motion import RelativeMotion
from odecam.realtime.avatar_track import AnimatedTrack, still_image
from odecam.realtime.webrtc_server import (MAX_BODY, AvatarServer, check_token, is_loopback_host, loopback_ice,
                                           start)
from odecam.errors import OdecamError

pytestmark = pytest.mark.timeout(120)

TOKEN = "serve-test-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def portrait():
    return assets.AVATAR_CROP.apply(load_image(assets.default_avatar_path()))


@pytest.fixture
def avatars(tiny_model, portrait):
    return [Avatar(tiny_model, portrait, name="astronaut"), Avatar(tiny_model, 255 - portrait, name="negative")]


@pytest_asyncio.fixture
async def served(tiny_model, avatars):
    server = AvatarServer(tiny_model, avatars, TOKEN, max_peers=1, loopback=True)
    running = await start(server, "127.0.0.1", 0)
    async with aiohttp.ClientSession() as http:
        yield types.SimpleNamespace(server=server, url=running.url, http=http)
    await running.stop()


@pytest.fixture
def loopback_only(monkeypatch):
    """Make this machine look like a sandbox whose only interface is lo (as in CI)."""
    import ifaddr

    real = ifaddr.get_adapters()
    lo = [a for a in real if any(ip.ip in ("127.0.0.1", ("::1", 0, 0)) for ip in a.ips)]
    assert lo, "no loopback adapter"
    monkeypatch.setattr(ifaddr, "get_adapters", lambda *a, **k: lo)


# -- HTTP rules ----------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_page_and_script_are_served(served):
    async with served.http.get(served.url) as res:
        assert res.status == 200 and res.content_type == "text/html"
        html = await res.text()
        assert '<script src="app.js">' in html and 'id="avatar"' in html
        assert "default-src 'self'" in res.headers["Content-Security-Policy"]
    async with served.http.get(served.url + "app.js") as res:
        assert res.status == 200 and res.content_type == "application/javascript"
        js = await res.text()
        assert "iceGatheringState" in js and "Authorization" in js and "location.hash" in js


@pytest.mark.asyncio
async def test_token_is_required(served):
    offer = {"sdp": "v=0\r\n", "type": "offer"}
    for headers in ({}, {"Authorization": "Bearer wrong-token-xyz"}, {"Authorization": TOKEN},
                    {"Authorization": "Bearer " + TOKEN[:-1]}):
        async with served.http.post(served.url + "offer", json=offer, headers=headers) as res:
            assert res.status == 401, headers
            assert "token" in (await res.json())["error"]
        async with served.http.get(served.url + "avatars", headers=headers) as res:
            assert res.status == 401
        async with served.http.get(served.url + "stats", headers=headers) as res:
            assert res.status == 401
    async with served.http.get(served.url + "avatars", params={"token": TOKEN}) as res:
        assert res.status == 200
    assert not served.server.peers


@pytest.mark.asyncio
async def test_avatars_listed(served):
    async with served.http.get(served.url + "avatars", headers=AUTH) as res:
        assert res.status == 200
        assert await res.json() == {"avatars": [{"name": "astronaut", "views": 1}, {"name": "negative", "views": 1}],
                                    "default": "astronaut"}
    async with served.http.get(served.url + "stats", headers=AUTH) as res:
        assert await res.json() == {"peers": [], "max_peers": 1}


@pytest.mark.asyncio
async def test_oversize_body_is_refused(served):
    big = json.dumps({"sdp": "x" * (MAX_BODY + 1), "type": "offer"})
    async with served.http.post(served.url + "offer", data=big, headers={**AUTH, "Content-Type": "application/json"}) as res:
        assert res.status == 413
    async with served.http.get(served.url + "avatars", headers=AUTH) as res:
        assert res.status == 200  # still serving
    assert not served.server.peers


@pytest.mark.asyncio
@pytest.mark.parametrize("body, match", [
    ("not json", "must be JSON"),
    ("[1, 2]", "must be"),
    ('{"type": "offer"}', "must be"),
    ('{"sdp": "v=0", "type": "answer"}', "must be"),
    ('{"sdp": "garbage\\r\\nm=video x\\r\\n", "type": "offer"}', "could not be used"),
    ('{"sdp": "v=0\\r\\no=- 1 1 IN IP4 0.0.0.0\\r\\ns=-\\r\\nt=0 0\\r\\n", "type": "offer"}', "no video track"),
    ('{"sdp": "v=0", "type": "offer", "avatar": "nobody"}', "unknown avatar"),
])
async def test_bad_offers_get_400_and_the_server_keeps_running(served, body, match):
    async with served.http.post(served.url + "offer", data=body,
                                headers={**AUTH, "Content-Type": "application/json"}) as res:
        assert res.status == 400, await res.text()
        assert match in (await res.json())["error"]
    assert not served.server.peers  # the half-made peer connection was closed
    async with served.http.get(served.url + "avatars", headers=AUTH) as res:
        assert res.status == 200


@pytest.mark.asyncio
async def test_offer_without_video_is_refused(served):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("control")
    await pc.setLocalDescription(await pc.createOffer())
    offer = {"sdp": pc.localDescription.sdp, "type": "offer"}
    async with served.http.post(served.url + "offer", json=offer, headers=AUTH) as res:
        assert res.status == 400
        assert "no video track" in (await res.json())["error"]
    await pc.close()
    assert not served.server.peers


def test_helpers():
    assert is_loopback_host("127.0.0.1") and is_loopback_host("::1") and is_loopback_host("localhost")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("192.168.1.2") and not is_loopback_host("x")
    assert check_token("abcdefgh") == "abcdefgh"
    for bad in ("short", "has space in it", "x" * 300, "caf\u00e9-token"):
        with pytest.raises(OdecamError, match="--token"):
            check_token(bad)


# -- ICE in a loopback-only sandbox ---------------------------------------------------------------------
@pytest.mark.asyncio
async def test_loopback_ice_adds_127_0_0_1_only_inside_the_block(loopback_only):
    async def host_candidates(loopback: bool) -> list[str]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.createDataChannel("x")
        with loopback_ice(loopback):
            await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return [line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")]

    assert await host_candidates(False) == []  # aioice's default: nothing to connect with
    assert await host_candidates(True) == ["127.0.0.1"]
    assert await host_candidates(False) == []  # the hook is inert outside the block


# -- the avatar track ---------------------------------------------------------------------------------
class _FakeSource(MediaStreamTrack):
    """Frames numbered by their pts, as fast as asked (faster than the slow animator below)."""

    kind = "video"

    def __init__(self, period: float) -> None:
        super().__init__()
        self.period, self.sent = period, 0

    async def recv(self) -> VideoFrame:
        await asyncio.sleep(self.period)
        frame = VideoFrame.from_ndarray(np.full((64, 64, 3), self.sent % 256, np.uint8), format="rgb24")
        frame.pts, frame.time_base = self.sent, VIDEO_TIME_BASE
        self.sent += 1
        return frame


class _SlowAnimator:
    """The Animator interface, 50 ms a frame; its output encodes which driving frame it saw."""

    def __init__(self, avatar) -> None:
        self.model = types.SimpleNamespace(cfg=types.SimpleNamespace(image_size=32))
        self.avatar = avatar
        self.seen: list[int] = []
        self.recalibrated = 0

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        time.sleep(0.05)
        self.seen.append(int(frame[0, 0, 0]))
        return np.full((32, 32, 3), frame[0, 0, 0], np.uint8)

    def set_avatar(self, avatar) -> None:
        self.avatar = avatar

    def recalibrate(self) -> None:
        self.recalibrated += 1


@pytest.mark.asyncio
async def test_track_animates_only_the_newest_frame(portrait):
    avatar = types.SimpleNamespace(source_image=portrait, name="a")
    animator = _SlowAnimator(avatar)
    track = AnimatedTrack(animator, idle_s=0.3)
    first = await track.recv()  # the still portrait, before any driving frame
    assert first.to_ndarray(format="rgb24").shape == (32, 32, 3)
    assert np.abs(first.to_ndarray(format="rgb24").astype(int) - still_image(avatar, 32)).mean() < 3
    source = _FakeSource(period=0.005)  # ~200 fps in, ~20 fps of inference
    track.attach(source)
    frames = [first] + [await track.recv() for _ in range(15)]
    other = types.SimpleNamespace(source_image=portrait, name="b")
    track.set_avatar(other)
    track.recalibrate()
    frames += [await track.recv() for _ in range(3)]
    source.stop()
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()

    pts = [f.pts for f in frames]
    assert all(b > a for a, b in zip(pts, pts[1:])) and all(f.time_base == VIDEO_TIME_BASE for f in frames)
    assert pts[-1] - pts[0] > 0.3 * 90000  # wall-clock 90 kHz timestamps
    seen = animator.seen
    gaps = np.diff(seen)
    assert len(seen) >= 10 and np.median(gaps) >= 3, seen  # stale frames were skipped, not queued
    assert track.stats.frames_dropped > track.stats.frames_animated
    assert track.stats.frames_in >= track.stats.frames_dropped + track.stats.frames_animated
    # the output follows the newest input: the last animated frame is recent, latency did not build up
    assert source.sent - seen[-1] < 40
    assert animator.avatar is other and animator.recalibrated == 1
    assert track.stats.avatar_switches == 1 and track.stats.recalibrations == 1


@pytest.mark.asyncio
async def test_track_repeats_the_last_image_when_idle(portrait):
    avatar = types.SimpleNamespace(source_image=portrait, name="a")
    track = AnimatedTrack(_SlowAnimator(avatar), idle_s=0.05)
    a, b = await track.recv(), await track.recv()
    assert b.pts > a.pts and track.stats.frames_repeated == 1 and track.stats.frames_sent == 2
    track.set_avatar(types.SimpleNamespace(source_image=255 - portrait, name="b"))  # no frame yet: still changes
    c = await track.recv()
    assert track.stats.frames_repeated == 1
    assert np.abs(c.to_ndarray(format="rgb24").astype(int) - a.to_ndarray(format="rgb24")).mean() > 50
    track.stop()


class _FramesSource(MediaStreamTrack):
    """Given RGB frames, one every ``period`` seconds, looped."""

    kind = "video"

    def __init__(self, frames: list[np.ndarray], period: float = 0.02) -> None:
        super().__init__()
        self.frames, self.period, self.sent = frames, period, 0

    async def recv(self) -> VideoFrame:
        await asyncio.sleep(self.period)
        frame = VideoFrame.from_ndarray(self.frames[self.sent % len(self.frames)], format="rgb24")
        frame.pts, frame.time_base = self.sent, VIDEO_TIME_BASE
        self.sent += 1
        return frame


async def _drive(track: AnimatedTrack, frames: list[np.ndarray], outputs: int) -> None:
    """Feed ``frames`` to ``track`` until it gave ``outputs`` frames, then stop both."""
    source = _FramesSource(frames)
    track.attach(source)
    for _ in range(outputs):
        await track.recv()
    source.stop()
    track.stop()


class _RecordingAnimator(_SlowAnimator):
    """Keeps the driving images (and rolls) it is given; with framing, while the avatar glides to or from its rest
    pose (nobody in view: odecam.realtime.presence), the track calls F_K and the render apart, so those are here
    too."""

    def __init__(self, avatar) -> None:
        super().__init__(avatar)
        self.images: list[np.ndarray] = []
        self.motion = RelativeMotion(torch.zeros(1, 2, 2), adapt_scale=False)
        self.rests = 0

    def __call__(self, frame: np.ndarray, roll: float = 0.0) -> np.ndarray:
        self.images.append(frame)
        self.last_keypoints = (torch.zeros(1, 2, 2), None)
        return np.zeros((32, 32, 3), np.uint8)

    def keypoints(self, frame: np.ndarray, roll: float = 0.0):
        self.images.append(frame)
        return torch.zeros(1, 2, 2), None

    def render_tensor(self, value, jac) -> torch.Tensor:
        return torch.zeros(1, 3, 32, 32)

    def render_rest(self) -> torch.Tensor:
        self.rests += 1
        return torch.full((1, 3, 32, 32), 0.5)

    def set_blink(self, amount: float) -> None:
        pass


@pytest.mark.asyncio
async def test_track_frames_the_face_as_live_does(portrait, carphone_frames):
    """serve frames each peer's webcam as live frames it: the face followed (here off-centre in a wide frame,
    where the centre square holds no face), the detector run after each avatar frame went out."""
    from odecam.realtime.framing import FramingConfig

    h, w = carphone_frames[0].shape[:2]
    wide = [np.concatenate([np.full((h, 3 * w, 3), 90, np.uint8), f], axis=1) for f in carphone_frames]
    animator = _RecordingAnimator(types.SimpleNamespace(source_image=portrait, name="a"))
    track = AnimatedTrack(animator, idle_s=0.3, framing=FramingConfig(output_size=64))
    searched: list[str] = []  # who ran each deferred detection: the worker after the frame, or the next frame
    detect = track.framer.detect_deferred

    def spy() -> bool:
        ran = detect()
        if ran:
            searched.append(sys._getframe(1).f_code.co_name)
        return ran

    track.framer.detect_deferred = spy
    await _drive(track, wide, 12)
    assert len(animator.images) >= 8 and all(im.shape == (64, 64, 3) for im in animator.images)
    last = animator.images[-1]
    assert np.abs(last.astype(int) - 90).mean() > 30  # the face's crop, not the grey centre square
    face = track.framer.box
    assert face is not None and face.x >= 3 * w - face.size // 2  # the crop sits on the face, at the right
    # the detector ran after avatar frames went out (every 3rd frame), not at the start of the next frame
    assert len(searched) >= 2 and "process" not in searched, searched

    plain = _RecordingAnimator(types.SimpleNamespace(source_image=portrait, name="a"))
    await _drive(AnimatedTrack(plain, idle_s=0.3), wide, 3)  # no framing: the animator gets the whole frame
    assert plain.images and plain.images[-1].shape == (h, 4 * w, 3)


@pytest.mark.asyncio
async def test_with_nobody_in_view_the_track_sends_the_avatar_at_rest(portrait, carphone_frames):
    """A peer whose camera shows an empty room: F_K never runs on it (its keypoints would pull the avatar apart);
    the avatar at rest is rendered once and sent for every frame."""
    from odecam.realtime.framing import FramingConfig

    room = [np.full_like(carphone_frames[0], 90) for _ in range(4)]
    animator = _RecordingAnimator(types.SimpleNamespace(source_image=portrait, name="a"))
    track = AnimatedTrack(animator, idle_s=0.3, framing=FramingConfig(output_size=64))
    sent = []
    source = _FramesSource(room)
    track.attach(source)
    for _ in range(8):
        sent.append((await track.recv()).to_ndarray(format="rgb24"))
    track.recalibrate()  # pressed while nobody is in view: waits for a face (the rest pose is no pose of theirs)
    animated = track.stats.frames_animated
    while track.stats.frames_animated < animated + 3:
        await track.recv()
    source.stop()
    track.stop()
    assert track.stats.frames_animated >= 3 and animator.images == [] and animator.rests == 1
    assert all(np.abs(f.astype(int) - 128).max() <= 1 for f in sent[-3:])
    assert animator.recalibrated == 0 and track._pending_recalibrate


# -- an aiortc client, in a loopback-only network -----------------------------------------------------
class ClipTrack(VideoStreamTrack):
    """The carphone clip at 30 fps, looped."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        super().__init__()
        self.frames, self.i = frames, 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame.from_ndarray(self.frames[self.i % len(self.frames)], format="rgb24")
        self.i += 1
        frame.pts, frame.time_base = pts, time_base
        return frame


@pytest.mark.asyncio
async def test_aiortc_client_round_trip(served, carphone_frames, loopback_only, tiny_model):
    size = tiny_model.cfg.image_size
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(ClipTrack(carphone_frames))
    channel = pc.createDataChannel("control")
    replies: asyncio.Queue = asyncio.Queue()
    channel.on("message", lambda m: replies.put_nowait(json.loads(m)))
    received: list[np.ndarray] = []
    got_track = asyncio.Event()

    @pc.on("track")
    def on_track(track):
        async def pull():
            while True:
                try:
                    received.append((await track.recv()).to_ndarray(format="rgb24"))
                except MediaStreamError:
                    return
        asyncio.ensure_future(pull())
        got_track.set()

    async def reply(kind: str) -> dict:
        while True:
            msg = await asyncio.wait_for(replies.get(), 10)
            if msg["type"] == kind:
                return msg

    with loopback_ice():  # the client is in the same loopback-only sandbox
        await pc.setLocalDescription(await pc.createOffer())
    assert "127.0.0.1" in pc.localDescription.sdp
    offer = {"sdp": pc.localDescription.sdp, "type": "offer"}
    async with served.http.post(served.url + "offer", json=offer, headers=AUTH) as res:
        assert res.status == 200, await res.text()
        answer = await res.json()
    assert answer["type"] == "answer" and "127.0.0.1" in answer["sdp"]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    # only one peer is allowed (max_peers=1): a second call gets 503
    async with served.http.post(served.url + "offer", json=offer, headers=AUTH) as res:
        assert res.status == 503 and "max-peers" in (await res.json())["error"]

    hello = await reply("hello")
    assert hello["avatars"] == ["astronaut", "negative"] and hello["avatar"] == "astronaut"
    await asyncio.wait_for(got_track.wait(), 15)
    peer = next(iter(served.server.peers.values()))
    deadline = time.monotonic() + 40
    while len(received) < 30 or peer.track.stats.frames_changed < 5:
        assert time.monotonic() < deadline, (len(received), peer.info())
        await asyncio.sleep(0.1)
    assert pc.connectionState == "connected"
    assert all(f.shape == (size, size, 3) for f in received)
    # the first frame back is the avatar's still portrait (VP8 is lossy)
    still = still_image(served.server.avatars["astronaut"], size).astype(int)
    assert np.abs(received[0].astype(int) - still).mean() < 12

    channel.send(json.dumps({"type": "avatar", "name": "negative"}))
    assert (await reply("avatar"))["avatar"] == "negative"
    channel.send(json.dumps({"type": "avatar", "name": "nobody"}))
    assert "unknown avatar" in (await reply("error"))["message"]
    channel.send("{not json")
    assert "JSON" in (await reply("error"))["message"]
    channel.send(json.dumps({"type": "recalibrate"}))
    assert (await reply("recalibrate"))["ok"] is True
    n = len(received)
    deadline = time.monotonic() + 20
    while peer.animator.avatar.name != "negative" or len(received) < n + 5:
        assert time.monotonic() < deadline, peer.info()
        await asyncio.sleep(0.1)
    stats = (await reply("stats"))
    assert stats["avatar"] == "negative" and stats["recalibrations"] == 1 and stats["frames_animated"] > 0
    async with served.http.get(served.url + "stats", headers=AUTH) as res:
        [info] = (await res.json())["peers"]
        assert info["state"] == "connected" and info["frames_in"] >= info["frames_animated"] > 0
    distinct = len({zlib.crc32(f.data) for f in received})
    print(f"\naiortc client: {len(received)} frames back, {distinct} distinct, server {info}")

    await pc.close()  # the server notices and frees the slot
    deadline = time.monotonic() + 15
    while served.server.peers:
        assert time.monotonic() < deadline, "the server kept a closed peer"
        await asyncio.sleep(0.1)


@pytest.mark.asyncio
async def test_shutdown_closes_peer_connections(tiny_model, avatars, carphone_frames):
    server = AvatarServer(tiny_model, avatars, TOKEN)
    running = await start(server, "127.0.0.1", 0)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(ClipTrack(carphone_frames))
    with loopback_ice():
        await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        async with http.post(running.url + "offer", headers=AUTH,
                             json={"sdp": pc.localDescription.sdp, "type": "offer"}) as res:
            answer = await res.json()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    [peer] = server.peers.values()
    deadline = time.monotonic() + 20
    while peer.pc.connectionState != "connected":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await running.stop()
    assert not server.peers and peer.pc.connectionState == "closed" and peer.track.readyState == "ended"
    await pc.close()


# -- the command line ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args, match", [
    (["--token", "short"], "--token must be 8 to 256"),
    (["--source", "missing.jpg"], "'missing.jpg' does not exist"),
    (["--cert", "nope.pem"], "--cert file 'nope.pem' does not exist"),
    (["--key", "k.pem"], "--key was given without --cert"),
])
def test_cli_mistakes_are_one_sentence(args, match, capsys):
    assert cli_main(["serve", "--preset", "tiny", *args]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and err.count("\n") == 1


def test_cli_port_in_use(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert cli_main(["serve", "--preset", "tiny", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port} is in use" in err and "--port" in err and err.count("\n") == 1


def test_cli_serves_until_interrupted(monkeypatch):
    """No --token: a random one is made and printed in the URL's fragment; SIGINT stops cleanly."""
    env = {k: v for k, v in os.environ.items() if k != "ODECAM_TOKEN"}
    proc = subprocess.Popen([sys.executable, "-m", "odecam.cli", "serve", "--preset", "tiny", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "open http" in line:
                break
        url = lines[-1].split("open ", 1)[1].split()[0]
        base, _, fragment = url.partition("#token=")
        assert base.startswith("http://127.0.0.1:") and base.endswith("/") and len(fragment) >= 20, lines
        assert any("UNTRAINED tiny" in s for s in lines) and any("avatars: astronaut" in s for s in lines)

        async def probe(token):
            async with aiohttp.ClientSession() as http:
                async with http.get(base + "avatars", headers={"Authorization": f"Bearer {token}"}) as res:
                    return res.status, await res.json()

        status, body = asyncio.run(probe(fragment))
        assert status == 200 and body["default"] == "astronaut"
        assert asyncio.run(probe(TOKEN))[0] == 401
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "stopped" in out and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_token_from_environment(monkeypatch):
    import argparse

    from odecam.commands import serve

    monkeypatch.setenv("ODECAM_TOKEN", TOKEN)
    p = argparse.ArgumentParser()
    serve.add_arguments(p)
    assert p.parse_args([]).token == TOKEN
    assert p.parse_args(["--token", "other-token-1"]).token == "other-token-1"


@pytest.mark.asyncio
async def test_paste_back_sends_the_avatar_in_its_photo(tiny_model, carphone_frames):
    """``serve --paste-back``: the peer gets the avatar's whole photo, 2 S rows high, from the still before the
    first driving frame on, the face square blended back into it; an avatar without a photo stays a square."""
    import cv2

    from odecam.engine import Animator
    from odecam.engine.portrait import avatar_photo
    from odecam.realtime.framing import FramingConfig

    image, placement = avatar_photo(None, tiny_model.cfg.image_size)
    avatar = Avatar(tiny_model, image, name="astronaut", placement=placement)
    track = AnimatedTrack(Animator(tiny_model, avatar), idle_s=0.3, framing=FramingConfig(output_size=64),
                          paste_back=True)
    still = (await track.recv()).to_ndarray(format="rgb24")
    photo = cv2.resize(placement.photo, (128, 128), interpolation=cv2.INTER_AREA)  # 512 x 512 at 2 x 64 rows
    assert still.shape == (128, 128, 3)
    source = _FramesSource(carphone_frames)
    track.attach(source)
    while track.stats.frames_animated < 4:
        sent = (await track.recv()).to_ndarray(format="rgb24")
    source.stop()
    track.stop()
    assert sent.shape == (128, 128, 3)
    for frame in (still, sent):  # below the face: the photo
        assert np.abs(frame[70:].astype(int) - photo[70:].astype(int)).mean() < 4
    plain = AnimatedTrack(Animator(tiny_model, Avatar(tiny_model, image, name="square")), paste_back=True)
    assert (await plain.recv()).to_ndarray(format="rgb24").shape == (64, 64, 3)
    plain.stop()

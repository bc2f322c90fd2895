"""``odecam serve``'s server: an HTTP + WebRTC endpoint that sends the animated avatar to a browser.

Routes (``TOKEN`` is the server's secret; send it as ``Authorization: Bearer TOKEN`` or ``?token=``):

* ``GET /``, ``GET /app.js``, ``GET /style.css`` - the page (:mod:`odecam.web`), public; it reads the token from the URL
  fragment (``/#token=...``), which browsers never send to the server.
* ``GET /avatars`` (token) - ``{"avatars": [{"name", "views"}], "default": name}``.
* ``POST /offer`` (token) - body ``{"sdp", "type": "offer", "avatar"?: name}``, at most
  :data:`MAX_BODY` bytes (413 otherwise); answers ``{"sdp", "type": "answer", "peer": id}``. 401 without
  the token, 400 for a bad offer (the server keeps running), 503 when ``max_peers`` calls are active.
* ``GET /stats`` (token) - per-peer counters (:class:`~odecam.realtime.avatar_track.TrackStats`).

Each peer gets its own :class:`~odecam.engine.Animator` (its neutral pose is its own) over the shared
model and avatar caches; inference for all peers runs in one worker thread. The browser opens a data
channel (any label) for control: it sends ``{"type": "avatar", "name": ...}``, ``{"type": "recalibrate"}``
or ``{"type": "stats"}``; the server answers ``{"type": "hello" | "avatar" | "recalibrate" | "error"}``
and pushes ``{"type": "stats", ...}`` every second. Every control message is checked against
:data:`CONTROL_SCHEMAS` (:func:`odecam.realtime.validation.parse_control`: JSON text under 1 KiB, bounded
depth and numbers, a known type, fields of the right types); a bad one is answered ``{"type": "error",
"message": why}``, logged at a bounded rate, and the call goes on.

Hostile HTTP clients: the server listens behind :class:`odecam.realtime.signalling.ConnectionGuard`
(header, body and idle timeouts; caps on connections in total and per address; bounded logging), the
token check treats a non-UTF-8 header as a wrong token (401), and offers are validated by
:func:`odecam.realtime.validation.parse_offer` (400 with the reason).

ICE in a loopback-only sandbox: aioice's ``get_host_addresses`` leaves out 127.0.0.1, so on a machine
whose only interface is ``lo`` the server would offer no candidate at all. :func:`loopback_ice` adds
127.0.0.1 to the host addresses, but only for the peer connections negotiated inside it (a context
variable, so other aiortc users in the process see aioice unchanged); the server uses it only when it is
bound to a loopback address. No STUN server is used unless one is configured (aiortc's default is a
public Google STUN server, unreachable offline).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import json
import logging
import secrets
import ssl
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from aiohttp import web
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from odecam.engine.animator import Animator
from odecam.engine.avatar import Avatar
from odecam.errors import OdecamError
from odecam.model import MotionTransferModel
from odecam.realtime.avatar_track import AnimatedTrack
from odecam.realtime.framing import FramingConfig
from odecam.realtime.signalling import (MAX_BODY, ConnectionLimits, RateLimitedLog, Running, bad_request,
                                        json_error, json_errors, read_offer, require_token, serve_app)
from odecam.realtime.validation import MessageRefused, parse_control

log = logging.getLogger(__name__)

__all__ = ["MAX_BODY", "AvatarServer", "ConnectionLimits", "Running", "check_token", "is_loopback_host",
           "loopback_ice", "new_token", "read_offer", "start"]

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
#: data-channel control messages ``serve`` accepts: type -> fields (types, required)
CONTROL_SCHEMAS = {
    "avatar": {"name": ((str,), True)},
    "recalibrate": {},
    "stats": {},
}
#: the largest data-channel control message accepted
MAX_CONTROL_MESSAGE = 1024
#: data channels a call may open (the page opens one)
MAX_CHANNELS = 4
#: a peer that does not reach "connected" within this many seconds is closed (its slot is freed)
CONNECT_TIMEOUT_S = 30.0

# -- aioice: loopback host candidates, narrowly ------------------------------------------------------
_LOOPBACK_ICE: contextvars.ContextVar[bool] = contextvars.ContextVar("odecam_loopback_ice", default=False)


def _install_loopback_hook() -> None:
    """Wrap ``aioice.ice.get_host_addresses`` once: unchanged unless :data:`_LOOPBACK_ICE` is set."""
    import aioice.ice as ice

    if getattr(ice.get_host_addresses, "_odecam_loopback", False):
        return
    original = ice.get_host_addresses

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = original(use_ipv4, use_ipv6)
        if _LOOPBACK_ICE.get() and use_ipv4 and "127.0.0.1" not in addresses:
            addresses.append("127.0.0.1")
        return addresses

    get_host_addresses._odecam_loopback = True  # type: ignore[attr-defined]
    ice.get_host_addresses = get_host_addresses


@contextlib.contextmanager
def loopback_ice(enabled: bool = True) -> Iterator[None]:
    """Peer connections that gather candidates inside this block also offer a 127.0.0.1 host candidate.

    Gathering happens in ``setLocalDescription``; tasks it spawns inherit the context variable.
    """
    _install_loopback_hook()
    token = _LOOPBACK_ICE.set(enabled)
    try:
        yield
    finally:
        _LOOPBACK_ICE.reset(token)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(18)


def check_token(token: str) -> str:
    """A user-chosen token: 8-256 printable ASCII characters, no spaces."""
    if not (8 <= len(token) <= 256) or not all(33 <= ord(c) < 127 for c in token):
        raise OdecamError("--token must be 8 to 256 printable ASCII characters without spaces; "
                          "omit it to get a random one.")
    return token


# -- peers -------------------------------------------------------------------------------------------
@dataclass
class Peer:
    id: str
    pc: RTCPeerConnection
    animator: Animator
    track: AnimatedTrack | None = None
    channels: list = field(default_factory=list)
    tasks: list[asyncio.Task] = field(default_factory=list)
    closed: bool = False
    refused: int = 0  # control messages refused

    def info(self) -> dict:
        stats = self.track.stats.as_dict() if self.track else {}
        return {"peer": self.id, "state": self.pc.connectionState,
                "avatar": (self.track.avatar if self.track else self.animator.avatar).name,
                "latency_p50_ms": self._p50(), "control_refused": self.refused, **stats}

    def _p50(self) -> float | None:
        pct = self.animator.timings.percentiles((50,)).get("total")
        return round(pct["p50"], 1) if pct else None


class AvatarServer:
    """The avatar call server (see the module docstring).

    Args:
        model: the network, shared by all peers.
        avatars: the avatars to choose from (names must be unique); the first is the default.
        token: the secret that ``/offer``, ``/avatars`` and ``/stats`` require.
        max_peers: concurrent calls allowed; more get 503.
        loopback: also offer 127.0.0.1 ICE candidates (use when bound to a loopback address).
        ice_servers: STUN/TURN URLs (none by default).
        relative, ode_steps: passed to each peer's :class:`Animator`.
        idle_s: a peer's track repeats its last image after this many seconds without a new one.
        animator_factory: builds a peer's animator from its first avatar (default: an
            :class:`Animator` over ``model``); tests use it to wrap the animator.
        limits: HTTP connection caps and timeouts (:class:`ConnectionLimits`).
        framing: each peer's webcam framed as ``odecam live`` frames it (face followed, levelled for F_K);
            None: the animator takes each frame's centre square.
        paste_back: send each avatar in its whole photo (:class:`~odecam.realtime.avatar_track.AnimatedTrack`).
    """

    def __init__(self, model: MotionTransferModel, avatars: Sequence[Avatar], token: str, max_peers: int = 4,
                 loopback: bool = True, ice_servers: Sequence[str] = (), relative: bool = True,
                 ode_steps: int | None = None, idle_s: float = 1.0,
                 animator_factory: Callable[[Avatar], Animator] | None = None,
                 limits: ConnectionLimits | None = None, framing: FramingConfig | None = None,
                 paste_back: bool = False) -> None:
        if not avatars:
            raise ValueError("at least one avatar is needed")
        names = [a.name for a in avatars]
        if len(set(names)) != len(names):
            raise ValueError(f"avatar names must be unique, got {names}")
        if max_peers < 1:
            raise ValueError("max_peers must be at least 1")
        self.model = model
        self.avatars = {a.name: a for a in avatars}
        self.default_avatar = names[0]
        self._token = token.encode()
        self.max_peers = max_peers
        self.loopback = loopback
        self.ice_servers = [RTCIceServer(urls=u) for u in ice_servers]
        self.relative = relative
        self.ode_steps = ode_steps
        self.idle_s = idle_s
        self.animator_factory = animator_factory or (
            lambda avatar: Animator(self.model, avatar, relative=self.relative, ode_steps=self.ode_steps))
        self.limits = limits or ConnectionLimits()
        self.framing = framing
        self.paste_back = paste_back
        self._ratelog = RateLimitedLog(log)
        self.peers: dict[str, Peer] = {}
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="odecam-infer")

    # -- app -------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[json_errors])
        app.router.add_get("/", self._page)
        app.router.add_get("/index.html", self._page)
        app.router.add_get("/app.js", self._script)
        app.router.add_get("/style.css", self._style)
        app.router.add_get("/avatars", self._avatars)
        app.router.add_get("/stats", self._stats)
        app.router.add_post("/offer", self._offer)
        app.on_shutdown.append(self._on_shutdown)
        return app

    def _authorized(self, request: web.Request) -> None:
        require_token(request, self._token, "open the URL that odecam serve printed", allow_query=True)

    @staticmethod
    def _static(name: str, content_type: str) -> web.Response:
        path = WEB_DIR / name
        return web.Response(body=path.read_bytes(), content_type=content_type, charset="utf-8", headers={
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                                       "media-src 'self' blob: mediastream:; object-src 'none'; "
                                       "base-uri 'none'; frame-ancestors 'none'",
        })

    async def _page(self, request: web.Request) -> web.Response:
        return self._static("index.html", "text/html")

    async def _script(self, request: web.Request) -> web.Response:
        return self._static("app.js", "application/javascript")

    async def _style(self, request: web.Request) -> web.Response:
        return self._static("style.css", "text/css")

    async def _avatars(self, request: web.Request) -> web.Response:
        self._authorized(request)
        return web.json_response({"avatars": [{"name": a.name, "views": a.num_views} for a in self.avatars.values()],
                                  "default": self.default_avatar})

    async def _stats(self, request: web.Request) -> web.Response:
        self._authorized(request)
        return web.json_response({"peers": [p.info() for p in self.peers.values()], "max_peers": self.max_peers})

    async def _offer(self, request: web.Request) -> web.Response:
        self._authorized(request)
        body = await read_offer(request)
        avatar_name = body.get("avatar") or self.default_avatar
        if avatar_name not in self.avatars:
            raise bad_request(f"unknown avatar {avatar_name[:64]!r}; GET /avatars lists them")
        if len(self.peers) >= self.max_peers:
            raise json_error(web.HTTPServiceUnavailable, f"{self.max_peers} calls are active, the most this "
                                                         "server allows (--max-peers)")
        peer = Peer(id=uuid.uuid4().hex[:12],
                    pc=RTCPeerConnection(RTCConfiguration(iceServers=list(self.ice_servers))),
                    animator=self.animator_factory(self.avatars[avatar_name]))
        self.peers[peer.id] = peer
        self._wire(peer)
        try:
            with loopback_ice(self.loopback):
                await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="offer"))
                if peer.track is None:
                    raise bad_request("the offer has no video track to animate from; send your camera "
                               "(addTrack) before creating the offer")
                await peer.pc.setLocalDescription(await peer.pc.createAnswer())
        except web.HTTPException:
            await self._close_peer(peer)
            raise
        except Exception as exc:  # aiortc raises ValueError, KeyError, ... for malformed SDP
            await self._close_peer(peer)
            log.debug("bad offer", exc_info=True)
            raise bad_request(f"the SDP offer could not be used ({type(exc).__name__}: {exc})") from None
        peer.tasks.append(asyncio.ensure_future(self._connect_deadline(peer)))
        log.info("peer %s: answering with avatar %s", peer.id, avatar_name)
        desc = peer.pc.localDescription
        return web.json_response({"sdp": desc.sdp, "type": desc.type, "peer": peer.id})

    # -- per peer --------------------------------------------------------------------------------
    def _wire(self, peer: Peer) -> None:
        pc = peer.pc

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind != "video" or peer.track is not None:
                return
            peer.track = AnimatedTrack(peer.animator, self.executor, idle_s=self.idle_s, framing=self.framing,
                                       paste_back=self.paste_back)
            peer.track.attach(track)
            pc.addTrack(peer.track)

        @pc.on("datachannel")
        def on_datachannel(channel) -> None:
            if len(peer.channels) >= MAX_CHANNELS:
                self._ratelog(logging.WARNING, f"{peer.id}:channels", "peer %s: refused data channel %r: at most "
                              "%d per call", peer.id, str(channel.label)[:40], MAX_CHANNELS)
                channel.close()
                return
            peer.channels.append(channel)

            @channel.on("message")
            def on_message(message) -> None:
                self._control(peer, channel, message)

            if channel.readyState == "open":
                self._hello(peer, channel)
            else:
                channel.on("open", lambda: self._hello(peer, channel))
            if len(peer.channels) == 1:
                peer.tasks.append(asyncio.ensure_future(self._push_stats(peer)))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("peer %s: %s", peer.id, pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self._close_peer(peer)

    def _send(self, channel, message: dict) -> None:
        if channel.readyState == "open":
            try:
                channel.send(json.dumps(message))
            except Exception:  # noqa: BLE001 - a closing transport must not break the server
                log.debug("control send failed", exc_info=True)

    def _hello(self, peer: Peer, channel) -> None:
        self._send(channel, {"type": "hello", "peer": peer.id, "avatars": list(self.avatars),
                             "avatar": peer.info()["avatar"]})

    def _control(self, peer: Peer, channel, message) -> None:
        """One data-channel message (called inside aiortc's handler: nothing may escape from here)."""
        try:
            msg = parse_control(message, CONTROL_SCHEMAS, MAX_CONTROL_MESSAGE)
        except MessageRefused as exc:
            self._refuse(peer, channel, str(exc))
            return
        try:
            self._apply(peer, channel, msg)
        except Exception as exc:  # noqa: BLE001 - a control message must never end the call
            log.debug("control message failed", exc_info=True)
            self._refuse(peer, channel, f"it could not be applied ({type(exc).__name__})")

    def _refuse(self, peer: Peer, channel, reason: str) -> None:
        peer.refused += 1
        self._ratelog(logging.WARNING, f"{peer.id}:{reason[:16]}", "peer %s: refused a control message: %s", peer.id, reason)
        self._send(channel, {"type": "error", "message": reason})

    def _apply(self, peer: Peer, channel, msg: dict) -> None:
        kind = msg["type"]
        if kind == "avatar":
            name = msg["name"]
            if name not in self.avatars:
                self._refuse(peer, channel, f"unknown avatar {name[:64]!r}; known: {', '.join(self.avatars)}")
                return
            if peer.track is not None:
                peer.track.set_avatar(self.avatars[name])
            self._send(channel, {"type": "avatar", "avatar": name})
        elif kind == "recalibrate":
            if peer.track is not None:
                peer.track.recalibrate()
            self._send(channel, {"type": "recalibrate", "ok": True})
        elif kind == "stats":
            self._send(channel, {"type": "stats", **peer.info()})

    async def _push_stats(self, peer: Peer) -> None:
        while not peer.closed:
            await asyncio.sleep(1.0)
            if peer.pc.connectionState != "connected":
                continue  # sending on a closing transport only makes aiortc errors
            for channel in peer.channels:
                self._send(channel, {"type": "stats", **peer.info()})

    async def _connect_deadline(self, peer: Peer) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if not peer.closed and peer.pc.connectionState != "connected":
            log.warning("peer %s: not connected after %.0f s; closing it", peer.id, CONNECT_TIMEOUT_S)
            await self._close_peer(peer)

    async def _close_peer(self, peer: Peer) -> None:
        if peer.closed:
            return
        peer.closed = True
        self.peers.pop(peer.id, None)
        current = asyncio.current_task()
        for task in peer.tasks:
            if task is not current:
                task.cancel()
        if peer.track is not None:
            peer.track.stop()
        await peer.pc.close()
        log.info("peer %s: closed (%s)", peer.id, peer.track.stats.as_dict() if peer.track else "no track")

    async def close(self) -> None:
        """Close every peer connection and stop the inference thread."""
        await asyncio.gather(*(self._close_peer(p) for p in list(self.peers.values())), return_exceptions=True)
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.close()


# -- running -----------------------------------------------------------------------------------------
async def start(server: AvatarServer, host: str = "127.0.0.1", port: int = 8080,
                ssl_context: ssl.SSLContext | None = None) -> Running:
    """Bind and start serving behind the connection guard (:mod:`odecam.realtime.signalling`) with
    ``server.limits``; raises :class:`OdecamError` if the address cannot be bound."""
    return await serve_app(server.app(), host, port, ssl_context, getattr(server, "limits", None))

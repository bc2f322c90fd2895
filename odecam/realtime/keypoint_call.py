"""A keypoint-only video call: ``odecam send`` and ``odecam receive``.

The sender runs F_K on each camera (or video file) frame and sends only the keypoints, a few dozen
bytes per frame (:mod:`odecam.realtime.keypoint_packet`); the receiver re-renders the face from its
own copy of the avatar portrait and shows it in a window, a virtual camera or a file.

Transport (aiortc, one peer connection, both data channels created by the sender)
---------------------------------------------------------------------------------

* ``"avatar"``: reliable and ordered. JSON text messages for control, binary messages for the
  avatar's image file (JPEG or PNG bytes, sent once per connection, in chunks of
  :data:`AVATAR_CHUNK` bytes after an announcing header):

  ======================================================  ==========================================
  message                                                 meaning
  ======================================================  ==========================================
  ``{"type": "hello", "protocol": 1, "num_kp", "jacobian",  both ways, when the channel opens; the
  "model", "boot_id"}``                                   sender's ``boot_id`` tells the receiver
                                                          whether both share one monotonic clock
                                                          (same machine): then it measures latency
  ``{"type": "avatar", "size": N, "name": str}``          sender: N bytes of image file follow
  binary                                                  sender: the next chunk of those N bytes
  ``{"type": "avatar", "ok": true, "name", "size"}``      receiver: the avatar is in use
  ``{"type": "error", "message": str}``                   receiver: something was refused (why)
  ``{"type": "key"}``                                     receiver: please send a key frame (a delta
                                                          arrived whose key frame was lost)
  ``{"type": "bye", "reason": str}``                      receiver: this connection is closing
                                                          (``"replaced"``: a newer sender took over)
  ======================================================  ==========================================

* ``"kp"``: unordered, no retransmits (``ordered=False, maxRetransmits=0``): one keypoint packet per
  frame. Loss, reordering and duplicates are absorbed by :class:`KeypointDecoder` (late and duplicate
  packets are dropped, a lost key frame is re-requested with ``{"type": "key"}``).

Signalling: the receiver runs a small aiohttp endpoint, ``POST /offer`` with ``Authorization: Bearer
TOKEN``, body ``{"sdp", "type": "offer"}`` (at most 64 KiB), answer ``{"sdp", "type": "answer",
"session"}``; 401 without the token, 400 for an offer that is not usable or has no data channel. A new
offer *replaces* the current connection (the old sender is told ``bye: replaced`` and does not
reconnect), so a restarted sender is picked up at once. The sender retries the offer with backoff until
``connect_timeout`` and reconnects the same way when a connection fails.

Receiver rendering: the newest decoded keypoints are rendered on one worker thread while the event loop
keeps emitting frames: a new frame as soon as it is rendered, otherwise the last frame again every
``1/fps`` seconds (hold), so the output never stalls even when packets are lost or a render is slow.
Each connection gets a fresh :class:`~odecam.engine.Animator`, whose neutral pose is the first
keypoints that connection delivered. Bad payloads (oversize or malformed packets, avatar files that are
too large, not JPEG/PNG, or refused by the engine's image checks) are refused with a logged reason and
the call goes on.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import secrets
import tempfile
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Protocol, Sequence
from urllib.parse import urlparse

import numpy as np

from odecam.engine.animator import Animator
from odecam.engine.avatar import Avatar
from odecam.errors import InputImageError, OdecamError
from odecam.model import MotionTransferModel
from odecam.realtime.keypoint_packet import DROP_REASONS, DecodedKeypoints, KeypointDecoder, KeypointEncoder
from odecam.realtime.virtual_camera import LatencyStats

log = logging.getLogger(__name__)

__all__ = [
    "AVATAR_CHUNK",
    "AVATAR_LABEL",
    "KP_LABEL",
    "MAX_AVATAR_BYTES",
    "AvatarAssembler",
    "AvatarRefused",
    "FrameInfo",
    "KeypointReceiver",
    "KeypointSender",
    "ReceiverStats",
    "SenderStats",
    "animator_extractor",
    "boot_id",
    "decode_avatar_image",
    "offer_url",
    "start_receiver",
]

PROTOCOL = 1
AVATAR_LABEL = "avatar"
KP_LABEL = "kp"
#: the largest avatar image file accepted, in bytes
MAX_AVATAR_BYTES = 4 * 1024 * 1024
#: avatar bytes per binary message (browsers and aiortc accept 64 KiB; 16 KiB interleaves well)
AVATAR_CHUNK = 16 * 1024
#: the largest JSON control message accepted
MAX_CONTROL_MESSAGE = 4096
#: the largest keypoint packet accepted (K=64 with jacobians at 16 bits is 788 bytes)
MAX_PACKET_BYTES = 1024
#: a connection that is not "connected" this long after its offer is closed
CONNECT_TIMEOUT_S = 20.0
#: the sender skips a frame while more than this many bytes wait in the keypoint channel's buffer
MAX_BUFFERED = 8 * 1024
#: the receiver asks for a key frame at most this often
KEY_REQUEST_INTERVAL_S = 0.25
#: decoder drop reasons that are normal on an unordered, lossy channel (logged at debug level)
_ROUTINE_DROPS = frozenset({"duplicate", "stale", "unknown_keyframe"})
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def boot_id() -> str:
    """An id of this machine's current boot (Linux); processes with equal ids share ``time.monotonic``."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return f"pid-{os.getpid()}-{uuid.getnode():x}"  # other systems: only this process trusts itself


class _RateLimitedLog:
    """Logs a reason at once, then at most every ``interval_s`` with a count of what was suppressed."""

    def __init__(self, interval_s: float = 5.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, level: int, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        more = self._suppressed.pop(key, 0)
        log.log(level, message + (f" ({more} more since the last report)" if more else ""), *args)


# -- the avatar payload --------------------------------------------------------------------------------
class AvatarRefused(Exception):
    """An avatar payload that is not used; ``str(exc)`` is the reason, one sentence."""


def decode_avatar_image(data: bytes, max_bytes: int = MAX_AVATAR_BYTES) -> np.ndarray:
    """Validate avatar file bytes (JPEG or PNG) with the engine's image checks -> (H, W, 3) uint8 RGB.

    Raises :class:`AvatarRefused` with the reason: over ``max_bytes``, not JPEG/PNG, or refused by
    :func:`odecam.engine.images.load_image` (unreadable, greyscale, too small, too large, ...).
    """
    from odecam.engine.images import load_image

    if len(data) > max_bytes:
        raise AvatarRefused(f"the avatar file is {len(data)} bytes, over the {max_bytes}-byte limit")
    if data.startswith(_PNG_MAGIC):
        suffix = ".png"
    elif data.startswith(_JPEG_MAGIC):
        suffix = ".jpg"
    else:
        raise AvatarRefused("the avatar is not a JPEG or PNG file")
    with tempfile.TemporaryDirectory(prefix="odecam-avatar-") as folder:
        path = Path(folder) / f"avatar{suffix}"
        path.write_bytes(data)
        try:
            return load_image(path, "the avatar")
        except InputImageError as exc:
            raise AvatarRefused(str(exc).replace(f" {str(path)!r}", "")) from None


class AvatarAssembler:
    """Receiver side of the avatar transfer: a JSON header, then binary chunks up to its ``size``.

    :meth:`header` and :meth:`chunk` return the complete file bytes when the last chunk arrives, None
    while more are expected, and raise :class:`AvatarRefused` for a payload that breaks the rules (after
    which chunks are ignored until the next header).
    """

    def __init__(self, max_bytes: int = MAX_AVATAR_BYTES) -> None:
        self.max_bytes = max_bytes
        self.name = "remote"
        self._expected: int | None = None
        self._parts: list[bytes] = []
        self._received = 0
        self._discarding = False

    @property
    def busy(self) -> bool:
        return self._expected is not None

    def header(self, message: dict) -> None:
        self._reset()
        size = message.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            self._discarding = True
            raise AvatarRefused(f"the avatar header has no valid size (got {size!r})")
        if size > self.max_bytes:
            self._discarding = True
            raise AvatarRefused(f"the avatar file is {size} bytes, over the {self.max_bytes}-byte limit")
        name = message.get("name")
        self.name = name[:64] if isinstance(name, str) and name.strip() else "remote"
        self._expected = size

    def chunk(self, data: bytes) -> bytes | None:
        if self._expected is None:
            if self._discarding:
                return None  # the rest of a refused avatar
            raise AvatarRefused("avatar data arrived without an avatar header")
        self._received += len(data)
        if self._received > self._expected:
            self._reset()
            self._discarding = True
            raise AvatarRefused("the avatar data is longer than its header announced")
        self._parts.append(bytes(data))
        if self._received < self._expected:
            return None
        payload = b"".join(self._parts)
        self._reset()
        return payload

    def _reset(self) -> None:
        self._expected = None
        self._parts = []
        self._received = 0
        self._discarding = False


# -- receiver ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameInfo:
    """What a sink is told about each emitted frame.

    Attributes:
        time: ``time.monotonic()`` of the emission.
        new: a newly rendered frame (False: the previous frame held again).
        live: keypoints from a sender have been rendered (False: the avatar's still portrait).
        seq: sequence number of the keypoint packet the frame was rendered from (None for stills).
        capture_ts: the sender's capture time of that frame (its ``time.monotonic()``), or None.
        latency_ms: capture-to-emission latency when sender and receiver share a clock, else None.
    """

    time: float
    new: bool
    live: bool
    seq: int | None = None
    capture_ts: float | None = None
    latency_ms: float | None = None


Sink = Callable[[np.ndarray, FrameInfo], None]
"""Receives each emitted frame, (S, S, 3) uint8 RGB (do not modify it), on the event loop thread."""


@dataclass
class ReceiverStats:
    """Counters of a :class:`KeypointReceiver` (since it started)."""

    sessions: int = 0             # peer connections answered
    replaced: int = 0             # connections replaced by a newer one
    messages: int = 0             # keypoint-channel messages received
    decoded: int = 0              # of those, decoded frames
    rendered: int = 0             # frames rendered from keypoints
    skipped: int = 0              # decoded frames replaced by a newer one before they were rendered
    emitted: int = 0              # frames handed to the sinks (new + held)
    held: int = 0                 # of those, repeats of the previous frame
    render_errors: int = 0
    sink_errors: int = 0
    key_requests: int = 0
    avatars_accepted: int = 0
    avatars_refused: int = 0
    control_refused: int = 0      # control messages refused (not JSON, too long, unknown type)
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    max_interval_ms: float = 0.0  # longest gap between two emitted frames while rendering

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Session:
    id: str
    pc: object  # RTCPeerConnection
    avatar: AvatarAssembler
    created: float
    control: object | None = None  # the "avatar" data channel
    kp: object | None = None        # the "kp" data channel
    animator: Animator | None = None  # created and used on the render thread only
    same_clock: bool = False
    hello: dict | None = None
    closed: bool = False
    last_key_request: float = 0.0
    tasks: list = field(default_factory=list)


class KeypointReceiver:
    """The receiving end of a keypoint call (see the module docstring).

    Args:
        model: the network (the sender must use the same weights, so keypoints mean the same).
        avatar: the avatar shown until (and unless) the sender sends its own.
        token: the secret ``POST /offer`` requires.
        sinks: called with every emitted frame (see :data:`Sink`).
        fps: the rate at which the last frame is held (emitted again) while no new one is ready.
        accept_avatar: use an avatar image the sender sends (False: refuse it, keep ``avatar``).
        loopback: also offer 127.0.0.1 ICE candidates (use when bound to a loopback address).
        ice_servers: STUN/TURN URLs (none by default).
        relative, ode_steps: passed to each connection's :class:`Animator`.
        max_avatar_bytes, max_packet_bytes: payload limits.
        animator_factory: builds a connection's animator for an avatar (default: an :class:`Animator`).
    """

    def __init__(self, model: MotionTransferModel, avatar: Avatar, token: str, sinks: Sequence[Sink] = (),
                 fps: float = 30.0, accept_avatar: bool = True, loopback: bool = True,
                 ice_servers: Sequence[str] = (), relative: bool = True, ode_steps: int | None = None,
                 max_avatar_bytes: int = MAX_AVATAR_BYTES, max_packet_bytes: int = MAX_PACKET_BYTES,
                 animator_factory: Callable[[Avatar], Animator] | None = None) -> None:
        if not 0 < fps <= 240:
            raise ValueError(f"fps must be in (0, 240], got {fps}")
        self.model = model
        self.avatar = avatar
        self._token = token.encode()
        self.sinks = list(sinks)
        self.fps = fps
        self.accept_avatar = accept_avatar
        self.loopback = loopback
        self.ice_servers = list(ice_servers)
        self.max_avatar_bytes = max_avatar_bytes
        self.num_kp = model.cfg.keypoints.num_kp
        self.with_jacobian = bool(model.cfg.keypoints.estimate_jacobian)
        self.animator_factory = animator_factory or (
            lambda av: Animator(model, av, relative=relative, ode_steps=ode_steps))
        self.decoder = KeypointDecoder(self.num_kp, max_packet_bytes=max_packet_bytes)
        self.stats = ReceiverStats()
        self.latency = LatencyStats(window=100_000)
        self.intervals: deque[float] = deque(maxlen=100_000)  # ms between emitted frames
        self.session: _Session | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="odecam-render")
        self._boot_id = boot_id()
        self._size = model.cfg.image_size
        self._frame = self._still(avatar)
        self._live = False
        self._pending: DecodedKeypoints | None = None
        self._last_rendered: DecodedKeypoints | None = None
        self._render_future: asyncio.Future | None = None
        self._render_session: _Session | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._closed = False
        self._last_emit: float | None = None
        self._ratelog = _RateLimitedLog()
        self._background: set[asyncio.Future] = set()
        self._seen_drops: dict[str, int] = dict(self.decoder.stats.dropped)
        self._rendering: DecodedKeypoints | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the render loop (emitting the still portrait until a sender connects)."""
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.ensure_future(self._render_loop())

    async def close(self) -> None:
        """Stop rendering and close the connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.session is not None:
            await self._close_session(self.session, "receiver stopped", delay=0.1)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for fut in list(self._background):
            fut.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- HTTP signalling ---------------------------------------------------------------------------
    def app(self):
        """The aiohttp application: ``POST /offer`` and ``GET /stats`` (both need the token)."""
        from aiohttp import web

        from odecam.realtime.webrtc_server import MAX_BODY

        app = web.Application(client_max_size=MAX_BODY, middlewares=[_json_errors_middleware()])
        app.router.add_post("/offer", self._offer)
        app.router.add_get("/stats", self._stats_route)

        async def on_shutdown(_app) -> None:
            await self.close()

        app.on_shutdown.append(on_shutdown)
        return app

    def _authorized(self, request) -> None:
        from aiohttp import web

        auth = request.headers.get("Authorization", "")
        given = auth[7:] if auth.startswith("Bearer ") else ""
        if not hmac.compare_digest(given.encode(), self._token):
            raise web.HTTPUnauthorized(text=json.dumps({"error": "missing or wrong token; pass the --token that "
                                                                 "odecam receive printed"}),
                                       content_type="application/json", headers={"WWW-Authenticate": "Bearer"})

    async def _stats_route(self, request):
        from aiohttp import web

        self._authorized(request)
        return web.json_response(self.summary())

    async def _offer(self, request):
        from aiohttp import web
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

        from odecam.realtime.webrtc_server import loopback_ice

        self._authorized(request)
        if self._closed:
            raise web.HTTPServiceUnavailable(text=json.dumps({"error": "the receiver is stopping"}),
                                             content_type="application/json")
        from odecam.realtime.webrtc_server import read_offer

        body = await read_offer(request)
        if "m=application" not in body["sdp"]:
            raise _bad("the offer has no data channel; create the 'avatar' and 'kp' data channels first")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(urls=u) for u in self.ice_servers]))
        session = _Session(id=uuid.uuid4().hex[:12], pc=pc, avatar=AvatarAssembler(self.max_avatar_bytes),
                           created=time.monotonic())
        self._wire(session)
        try:
            with loopback_ice(self.loopback):
                await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="offer"))
                await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises ValueError, KeyError, ... for malformed SDP
            await pc.close()
            log.debug("bad offer", exc_info=True)
            raise _bad(f"the SDP offer could not be used ({type(exc).__name__}: {exc})") from None
        old, self.session = self.session, session
        self.stats.sessions += 1
        self.decoder.reset()
        self._pending = None
        self._last_rendered = None
        if old is not None:
            self.stats.replaced += 1
            log.info("session %s replaces session %s", session.id, old.id)
            self._spawn(self._close_session(old, "replaced", delay=0.2))
        session.tasks.append(asyncio.ensure_future(self._connect_deadline(session)))
        log.info("session %s: answering", session.id)
        desc = pc.localDescription
        return web.json_response({"sdp": desc.sdp, "type": desc.type, "session": session.id})

    # -- per connection ----------------------------------------------------------------------------
    def _wire(self, session: _Session) -> None:
        pc = session.pc

        @pc.on("datachannel")
        def on_datachannel(channel) -> None:
            if channel.label == AVATAR_LABEL and session.control is None:
                session.control = channel
                channel.on("message", lambda m: self._on_control(session, m))
                self._send(session, {"type": "hello", "protocol": PROTOCOL, "num_kp": self.num_kp,
                                     "jacobian": self.with_jacobian, "model": self.model.cfg.name,
                                     "avatar": self.avatar.name, "accepts_avatar": self.accept_avatar,
                                     "boot_id": self._boot_id})
            elif channel.label == KP_LABEL and session.kp is None:
                session.kp = channel
                if channel.ordered or channel.maxRetransmits not in (0, None) or channel.maxPacketLifeTime:
                    log.info("session %s: the keypoint channel is ordered or retransmitted; it works, with "
                             "more latency under loss", session.id)
                channel.on("message", lambda m: self._on_packet(session, m))
            else:
                log.warning("session %s: ignoring an unexpected data channel %r", session.id, channel.label)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("session %s: %s", session.id, pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self._close_session(session, pc.connectionState)

    def _send(self, session: _Session, message: dict) -> None:
        channel = session.control
        if channel is not None and channel.readyState == "open":
            try:
                channel.send(json.dumps(message))
            except Exception:  # noqa: BLE001 - a closing transport must not break the call
                log.debug("control send failed", exc_info=True)

    def _refuse_control(self, session: _Session, reason: str) -> None:
        self.stats.control_refused += 1
        self._ratelog(logging.WARNING, "control", "session %s: refused a control message: %s", session.id, reason)
        self._send(session, {"type": "error", "message": reason})

    def _on_control(self, session: _Session, message) -> None:
        if session is not self.session or session.closed:
            return
        if isinstance(message, (bytes, bytearray, memoryview)):
            try:
                payload = session.avatar.chunk(message)
            except AvatarRefused as exc:
                self._refuse_avatar(session, str(exc))
                return
            if payload is not None:
                self._use_avatar(session, payload, session.avatar.name)
            return
        if not isinstance(message, str) or len(message) > MAX_CONTROL_MESSAGE:
            self._refuse_control(session, f"control messages are JSON text of at most {MAX_CONTROL_MESSAGE} bytes")
            return
        try:
            msg = json.loads(message)
            kind = msg["type"]
        except (json.JSONDecodeError, TypeError, KeyError):
            self._refuse_control(session, "control messages are JSON objects with a 'type'")
            return
        if kind == "hello":
            session.hello = msg
            session.same_clock = msg.get("boot_id") == self._boot_id
            num_kp = msg.get("num_kp")
            if num_kp != self.num_kp or bool(msg.get("jacobian")) != self.with_jacobian:
                reason = (f"the sender's model has {num_kp} keypoints{' with jacobians' if msg.get('jacobian') else ''}"
                          f", this receiver's ({self.model.cfg.name}) has {self.num_kp}"
                          f"{' with jacobians' if self.with_jacobian else ''}; use the same --preset or "
                          "--checkpoint on both ends")
                log.error("session %s: %s", session.id, reason)
                self._send(session, {"type": "error", "message": reason, "fatal": True})
            else:
                log.info("session %s: sender %s, %s keypoints, %s clock", session.id, msg.get("model"), num_kp,
                         "same" if session.same_clock else "another")
        elif kind == "avatar":
            if not self.accept_avatar:
                self._refuse_avatar(session, "this receiver shows its own avatar (--keep-avatar)")
                session.avatar._discarding = True  # ignore the chunks that follow
                return
            try:
                session.avatar.header(msg)
            except AvatarRefused as exc:
                self._refuse_avatar(session, str(exc))
        elif kind == "bye":
            log.info("session %s: the sender is leaving (%s)", session.id, msg.get("reason", ""))
        else:
            self._refuse_control(session, f"unknown control message type {str(kind)[:40]!r}")

    def _refuse_avatar(self, session: _Session, reason: str) -> None:
        self.stats.avatars_refused += 1
        log.warning("session %s: refused the sender's avatar: %s", session.id, reason)
        self._send(session, {"type": "error", "message": f"avatar refused: {reason}"})

    def _use_avatar(self, session: _Session, payload: bytes, name: str) -> None:
        """Validate and build the avatar on the render thread; the render loop keeps running."""
        def build() -> Avatar:
            image = decode_avatar_image(payload, self.max_avatar_bytes)
            try:
                avatar = Avatar(self.model, image, name=name)
            except InputImageError as exc:
                raise AvatarRefused(str(exc)) from None
            return avatar  # the next render switches the connection's animator to it

        def done(fut: asyncio.Future) -> None:
            self._background.discard(fut)
            if fut.cancelled():
                return
            exc = fut.exception()
            if exc is not None:
                reason = str(exc) if isinstance(exc, AvatarRefused) else f"it could not be used ({type(exc).__name__})"
                if not isinstance(exc, AvatarRefused):
                    log.debug("avatar build failed", exc_info=exc)
                self._refuse_avatar(session, reason)
                return
            avatar = fut.result()
            self.avatar = avatar
            self.stats.avatars_accepted += 1
            log.info("session %s: using the sender's avatar %r (%d bytes)", session.id, name, len(payload))
            self._send(session, {"type": "avatar", "ok": True, "name": name, "size": len(payload)})
            if not self._live:
                self._frame = self._still(avatar)
            elif self._pending is None and self._last_rendered is not None and session is self.session:
                self._pending = self._last_rendered  # show the new avatar in the current pose
            self._poke()

        fut = asyncio.get_running_loop().run_in_executor(self.executor, build)
        self._background.add(fut)
        fut.add_done_callback(done)

    def _on_packet(self, session: _Session, message) -> None:
        if session is not self.session or session.closed:
            return
        self.stats.messages += 1
        before = self.decoder.stats.total_dropped
        decoded = self.decoder.decode(message)
        if decoded is None:
            reason = self._drop_reason(before)
            if reason is not None:
                self.stats.dropped[reason] += 1
                if reason in _ROUTINE_DROPS:
                    log.debug("session %s: keypoint packet dropped: %s", session.id, reason)
                else:
                    size = len(message) if isinstance(message, (bytes, bytearray, str)) else -1
                    self._ratelog(logging.WARNING, reason, "session %s: refused a keypoint message (%s, %d bytes)",
                                  session.id, reason, size)
                if reason == "unknown_keyframe":
                    self._request_key(session)
            return
        self.stats.decoded += 1
        if self._pending is not None:
            self.stats.skipped += 1
        self._pending = decoded
        self._poke()

    def _drop_reason(self, before: int) -> str | None:
        if self.decoder.stats.total_dropped == before:
            return None
        # the decoder counts one reason per dropped packet: find the counter that moved
        for reason, count in self.decoder.stats.dropped.items():
            if count != self._seen_drops.get(reason, 0):
                self._seen_drops = dict(self.decoder.stats.dropped)
                return reason
        return None

    def _request_key(self, session: _Session) -> None:
        now = time.monotonic()
        if now - session.last_key_request >= KEY_REQUEST_INTERVAL_S:
            session.last_key_request = now
            self.stats.key_requests += 1
            self._send(session, {"type": "key"})

    async def _connect_deadline(self, session: _Session) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if not session.closed and session.pc.connectionState != "connected":
            log.warning("session %s: not connected after %.0f s; closing it", session.id, CONNECT_TIMEOUT_S)
            await self._close_session(session, "connect timeout")

    async def _close_session(self, session: _Session, reason: str, delay: float = 0.0) -> None:
        if session.closed:
            return
        session.closed = True
        self._send(session, {"type": "bye", "reason": reason})
        if delay:
            await asyncio.sleep(delay)  # let the bye go out
        current = asyncio.current_task()
        for task in session.tasks:
            if task is not current:
                task.cancel()
        if self.session is session:
            self.session = None
            self._pending = None
        try:
            await session.pc.close()
        except Exception:  # noqa: BLE001
            log.debug("closing a peer connection failed", exc_info=True)
        log.info("session %s: closed (%s)", session.id, reason)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- rendering ---------------------------------------------------------------------------------
    def _still(self, avatar: Avatar) -> np.ndarray:
        from odecam.realtime.avatar_track import still_image

        return still_image(avatar, self._size)

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _render_job(self, session: _Session, kp: DecodedKeypoints) -> np.ndarray:
        """On the render thread: keypoints -> avatar frame with this connection's animator."""
        if session.animator is None:
            session.animator = self.animator_factory(self.avatar)
        elif session.animator.avatar is not self.avatar:
            session.animator.set_avatar(self.avatar)
        jac = np.array(kp.jacobian) if self.with_jacobian and kp.jacobian is not None else None
        return session.animator.animate_keypoints(np.array(kp.value), jac)  # writable copies for torch

    async def _render_loop(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.fps
        next_emit = loop.time()
        while not self._closed:
            now = loop.time()
            # a finished render: emit it at once
            if self._render_future is not None and self._render_future.done():
                fut, self._render_future = self._render_future, None
                kp, session = self._rendering, self._render_session
                try:
                    frame = fut.result()
                except Exception as exc:  # noqa: BLE001 - a bad frame must not end the call
                    self.stats.render_errors += 1
                    self._ratelog(logging.WARNING, "render", "rendering keypoints failed (%s: %s); holding the "
                                  "last frame", type(exc).__name__, exc)
                else:
                    if session is self.session:
                        self._frame, self._live = frame, True
                        self._last_rendered = kp
                        self.stats.rendered += 1
                        latency = None
                        if session is not None and session.same_clock:
                            latency = (time.monotonic() - kp.timestamp) * 1000.0
                        self._emit(True, kp, latency)
                        next_emit = loop.time() + period
            # start rendering the newest keypoints if the render thread is free
            if self._render_future is None and self._pending is not None and self.session is not None:
                kp, self._pending = self._pending, None
                self._rendering, self._render_session = kp, self.session
                self._render_future = loop.run_in_executor(self.executor, self._render_job, self.session, kp)
                self._render_future.add_done_callback(lambda _f: self._poke())
            # nothing new in time: hold the last frame
            now = loop.time()
            if now >= next_emit:
                self._emit(False, None, None)
                next_emit += period
                if now - next_emit > period:  # fell behind (the machine stalled): resync, never burst
                    next_emit = now + period
            self._wake.clear()
            timeout = max(0.0, next_emit - loop.time())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    def _emit(self, new: bool, kp: DecodedKeypoints | None, latency: float | None) -> None:
        now = time.monotonic()
        if self._last_emit is not None:
            gap = (now - self._last_emit) * 1000.0
            if self._live:
                self.intervals.append(gap)
                self.stats.max_interval_ms = max(self.stats.max_interval_ms, gap)
        self._last_emit = now
        self.stats.emitted += 1
        if not new:
            self.stats.held += 1
        if latency is not None:
            self.latency.record(latency, now=now)
        last = self._last_rendered if self._live else None
        info = FrameInfo(time=now, new=new, live=self._live,
                         seq=(kp or last).seq if (kp or last) else None,
                         capture_ts=(kp or last).timestamp if (kp or last) else None,
                         latency_ms=latency)
        for sink in self.sinks:
            try:
                sink(self._frame, info)
            except Exception as exc:  # noqa: BLE001 - one broken output must not stop the others
                self.stats.sink_errors += 1
                self._ratelog(logging.WARNING, f"sink-{id(sink)}", "an output failed (%s: %s)",
                              type(exc).__name__, exc)

    # -- reporting ---------------------------------------------------------------------------------
    def summary(self) -> dict:
        """Counters, emission intervals and latency as one JSON-able dict."""
        iv = np.fromiter(self.intervals, float)
        out = {"stats": self.stats.as_dict(), "decoder": {
            "decoded": self.decoder.stats.decoded, "keyframes": self.decoder.stats.keyframes,
            "resyncs": self.decoder.stats.resyncs}}
        out["intervals_ms"] = ({"p50": float(np.percentile(iv, 50)), "p99": float(np.percentile(iv, 99)),
                                "max": float(iv.max()), "n": int(iv.size)} if iv.size else None)
        out["latency_ms"] = self.latency.as_dict() if self.latency.count else None
        out["avatar"] = self.avatar.name
        out["session"] = self.session.id if self.session else None
        return out


def _bad(message: str):
    from aiohttp import web

    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def _json_errors_middleware():
    """Errors as JSON ``{"error": ...}``; an oversize body (413) says what the limit is."""
    from aiohttp import web

    from odecam.realtime.webrtc_server import MAX_BODY

    @web.middleware
    async def middleware(request, handler):
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length or 0,
                                                text=json.dumps({"error": f"request body over {MAX_BODY} bytes"}),
                                                content_type="application/json") from None

    return middleware


async def start_receiver(receiver: KeypointReceiver, host: str = "127.0.0.1", port: int = 8765, ssl_context=None):
    """Start the render loop and bind the signalling endpoint -> :class:`~odecam.realtime.webrtc_server.Running`
    (raises :class:`OdecamError` when the address cannot be bound)."""
    from odecam.realtime.webrtc_server import start

    await receiver.start()
    try:
        return await start(receiver, host, port, ssl_context)
    except BaseException:
        await receiver.close()
        raise


# -- sender --------------------------------------------------------------------------------------------
class FrameSource(Protocol):
    """What the sender reads frames from (:class:`~odecam.realtime.capture.LatestFrameCapture` fits)."""

    def start(self) -> object: ...

    def stop(self) -> None: ...

    def read(self, timeout: float | None = 1.0): ...  # -> object with .image (BGR) and .timestamp, or None

    @property
    def ended(self) -> bool: ...


Extractor = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]
"""RGB frame (H, W, 3) uint8 -> raw F_K keypoints (K, 2) and jacobians (K, 2, 2) or None."""


def animator_extractor(animator: Animator) -> Extractor:
    """F_K of ``animator``'s model as an :data:`Extractor`."""
    def extract(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        value, jac = animator.keypoints(rgb)
        return value[0].cpu().numpy(), None if jac is None else jac[0].cpu().numpy()

    return extract


@dataclass
class SenderStats:
    """Counters of a :class:`KeypointSender`."""

    frames_read: int = 0          # frames the pipeline took from the source
    frames_sent: int = 0          # frames encoded and sent
    frames_unsent: int = 0        # frames dropped while no connection was open
    frames_congested: int = 0     # frames skipped because the channel's buffer was full
    packets_sent: int = 0         # data-channel messages (a packet filter may add or remove some)
    bytes_sent: int = 0
    keyframes: int = 0
    key_requests: int = 0
    connections: int = 0          # connections that reached "connected"
    offers: int = 0               # offers posted
    avatar_bytes_sent: int = 0
    first_send: float | None = None
    last_send: float | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        span = (self.last_send - self.first_send) if self.first_send and self.last_send else 0.0
        d["payload_kbps"] = self.bytes_sent * 8 / span / 1000 if span > 0 else None
        d["fps"] = (self.frames_sent - 1) / span if span > 0 else None
        return d


def offer_url(url: str) -> tuple[str, str]:
    """The receiver's address (``http://HOST:PORT``, scheme optional) -> (its ``/offer`` URL, HOST)."""
    parsed = urlparse(url if "://" in url else f"http://{url}")
    try:
        host = parsed.hostname if parsed.port or parsed.port is None else None  # .port raises for a bad port
    except ValueError:
        host = None
    if parsed.scheme not in ("http", "https") or not host:
        raise OdecamError(f"--to {url!r} is not a receiver address; pass the http://HOST:PORT that odecam "
                          "receive printed.")
    return f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}/offer", host


class _Fatal(Exception):
    """The receiver refused us for a reason retrying cannot fix."""


class KeypointSender:
    """The sending end of a keypoint call (see the module docstring).

    Args:
        url: the receiver's signalling URL, ``http://HOST:PORT`` (``/offer`` is added).
        token: the receiver's token.
        source: where frames come from; it is started when the first connection opens, so a video
            file starts at its beginning for the receiver.
        extractor: F_K (see :func:`animator_extractor`).
        num_kp, with_jacobian: what ``extractor`` returns.
        prepare: BGR frame -> RGB frame for ``extractor`` (cropping, framing); default: BGR to RGB.
        avatar_bytes: a JPEG/PNG file to show as the avatar at the receiver (None: the receiver's own).
        avatar_name: its name.
        model_name: told to the receiver in the hello.
        max_frames: stop after sending this many frames.
        reconnect: open a new connection when one fails (within ``connect_timeout``).
        connect_timeout: give up when no connection opens for this many seconds.
        ice_servers: STUN/TURN URLs (none by default).
        loopback: offer 127.0.0.1 ICE candidates; default: when ``url``'s host is a loopback address.
        packet_filter: packet -> packets actually sent (tests inject loss, duplicates, reordering here).
        keyframe_interval: a key frame at least every this many frames.
    """

    def __init__(self, url: str, token: str, source: FrameSource, extractor: Extractor, num_kp: int,
                 with_jacobian: bool = False, prepare: Callable[[np.ndarray], np.ndarray] | None = None,
                 avatar_bytes: bytes | None = None, avatar_name: str = "remote", model_name: str = "",
                 max_frames: int | None = None, reconnect: bool = True, connect_timeout: float = 30.0,
                 ice_servers: Sequence[str] = (), loopback: bool | None = None,
                 packet_filter: Callable[[bytes], Iterable[bytes]] | None = None,
                 keyframe_interval: int = 30) -> None:
        from odecam.realtime.webrtc_server import is_loopback_host

        self.offer_url, host = offer_url(url)
        self.token = token
        self.source = source
        self.extractor = extractor
        self.prepare = prepare or _bgr_to_rgb
        self.avatar_bytes = avatar_bytes
        self.avatar_name = avatar_name
        self.model_name = model_name
        self.max_frames = max_frames
        self.reconnect = reconnect
        self.connect_timeout = connect_timeout
        self.ice_servers = list(ice_servers)
        self.loopback = is_loopback_host(host) if loopback is None else loopback
        self.packet_filter = packet_filter
        self.num_kp = num_kp
        self.with_jacobian = with_jacobian
        self.encoder = KeypointEncoder(num_kp, with_jacobian=with_jacobian, keyframe_interval=keyframe_interval,
                                       first_seq=secrets.randbelow(1 << 32))
        self.stats = SenderStats()
        self.error: str | None = None       # why the sender stopped early (None: it finished normally)
        self.remote_errors: list[str] = []  # error messages the receiver sent
        self.avatar_acked = asyncio.Event()
        self.pc = None
        self._kp = None
        self._control = None
        self._ready = threading.Event()     # the keypoint channel is open (read by the pipeline thread)
        self._stop_thread = threading.Event()
        self._finished: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._source_started = False

    # -- running -----------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> SenderStats:
        """Connect, send until ``max_frames``, the end of the source, ``stop`` or a fatal error."""
        self._loop = asyncio.get_running_loop()
        self._finished = asyncio.Event()
        stop = stop or asyncio.Event()
        pipeline = threading.Thread(target=self._pipeline, name="odecam-send", daemon=True)
        pipeline.start()
        connector = asyncio.ensure_future(self._connect_loop())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([asyncio.ensure_future(self._finished.wait()), stopper, connector],
                               return_when=asyncio.FIRST_COMPLETED)
            if connector.done() and not connector.cancelled() and connector.exception() is not None:
                raise connector.exception()
            await self._flush()
        finally:
            self._stop_thread.set()
            self._ready.set()  # wake the pipeline so it sees the stop
            connector.cancel()
            stopper.cancel()
            await asyncio.gather(connector, stopper, return_exceptions=True)
            await self._close_pc()
            await asyncio.get_running_loop().run_in_executor(None, pipeline.join, 5.0)
            if self._source_started:
                self.source.stop()
        return self.stats

    def _finish(self, error: str | None = None) -> None:
        if error and self.error is None:
            self.error = error
        if self._finished is not None:
            self._finished.set()

    async def _flush(self, timeout: float = 1.0) -> None:
        """Give queued packets a moment to leave before the connection closes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            channels = [c for c in (self._kp, self._control) if c is not None and c.readyState == "open"]
            if not any(c.bufferedAmount for c in channels):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)

    # -- frames (pipeline thread) ------------------------------------------------------------------
    def _pipeline(self) -> None:
        try:
            while not self._stop_thread.is_set():
                if not self._ready.wait(0.2) or self._stop_thread.is_set():
                    continue
                if not self._source_started:
                    self.source.start()
                    self._source_started = True
                frame = self.source.read(timeout=0.2)
                if frame is None:
                    if self.source.ended:
                        self._call(self._finish, None)
                        return
                    continue
                self.stats.frames_read += 1
                value, jac = self.extractor(self.prepare(frame.image))
                self._call(self._send_frame, value, jac, frame.timestamp)
        except Exception as exc:  # noqa: BLE001 - report it as the sender's error, never hang
            log.debug("sender pipeline failed", exc_info=True)
            message = str(exc) if isinstance(exc, OdecamError) else f"{type(exc).__name__}: {exc}"
            self._call(self._finish, f"reading frames failed: {message}")

    def _call(self, fn, *args) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # the loop closed meanwhile
                pass

    # -- sending (event loop) ----------------------------------------------------------------------
    def _send_frame(self, value: np.ndarray, jac: np.ndarray | None, timestamp: float) -> None:
        if self._finished.is_set():
            return
        channel = self._kp
        if channel is None or channel.readyState != "open":
            self.stats.frames_unsent += 1
            return
        if channel.bufferedAmount > MAX_BUFFERED:
            self.stats.frames_congested += 1
            return
        packet = self.encoder.encode(value, jac if self.with_jacobian else None, timestamp)
        if packet[1] & 0x01:
            self.stats.keyframes += 1
        packets = self.packet_filter(packet) if self.packet_filter else (packet,)
        for p in packets:
            try:
                channel.send(p)
            except Exception:  # noqa: BLE001 - closing transport: the frame is lost, like on the wire
                log.debug("keypoint send failed", exc_info=True)
                continue
            self.stats.packets_sent += 1
            self.stats.bytes_sent += len(p)
        now = time.monotonic()
        self.stats.first_send = self.stats.first_send or now
        self.stats.last_send = now
        self.stats.frames_sent += 1
        if self.max_frames is not None and self.stats.frames_sent >= self.max_frames:
            self._finish(None)

    def send_raw(self, data: bytes | str, channel: str = KP_LABEL) -> None:
        """Send a message as it is on the keypoint or avatar channel (for tests of the receiver's checks)."""
        ch = self._kp if channel == KP_LABEL else self._control
        if ch is None or ch.readyState != "open":
            raise RuntimeError(f"the {channel!r} channel is not open")
        ch.send(data)

    def send_avatar(self, data: bytes, name: str = "remote", announce: int | None = None) -> None:
        """Send an avatar image file: a header announcing ``announce`` (default: its size), then chunks."""
        ch = self._control
        if ch is None or ch.readyState != "open":
            raise RuntimeError("the avatar channel is not open")
        ch.send(json.dumps({"type": "avatar", "size": len(data) if announce is None else announce, "name": name}))
        for i in range(0, len(data), AVATAR_CHUNK):
            ch.send(data[i:i + AVATAR_CHUNK])
        self.stats.avatar_bytes_sent += len(data)

    # -- connections -------------------------------------------------------------------------------
    async def _connect_loop(self) -> None:
        import aiohttp

        backoff = 0.25
        give_up = time.monotonic() + self.connect_timeout
        async with aiohttp.ClientSession() as http:
            while not self._finished.is_set():
                ended = _Ended()
                try:
                    await self._connect(http, ended)
                except _Fatal as exc:
                    self._finish(str(exc))
                    return
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError, _Retry) as exc:
                    await self._close_pc()
                    if time.monotonic() > give_up:
                        self._finish(f"no receiver answered at {self.offer_url} within {self.connect_timeout:.0f} s "
                                     f"({_describe(exc)}); start odecam receive first, or check --to")
                        return
                    log.info("connecting to %s failed (%s); retrying in %.1f s", self.offer_url, _describe(exc), backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                backoff = 0.25
                await ended.event.wait()
                await self._close_pc()
                if self._finished.is_set():
                    return
                if not self.reconnect or ended.reason == "replaced":
                    self._finish(None if ended.reason == "replaced" else f"the connection ended ({ended.reason})")
                    if ended.reason == "replaced":
                        log.warning("another sender took over the call; stopping")
                    return
                log.info("the connection ended (%s); reconnecting", ended.reason)
                give_up = time.monotonic() + self.connect_timeout

    async def _connect(self, http, ended: _Ended) -> None:
        import aiohttp
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

        from odecam.realtime.webrtc_server import loopback_ice

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(urls=u) for u in self.ice_servers]))
        self.pc = pc
        control = pc.createDataChannel(AVATAR_LABEL)
        kp = pc.createDataChannel(KP_LABEL, ordered=False, maxRetransmits=0)
        connected = asyncio.Event()

        def end(reason: str) -> None:
            ended.set(reason)
            self._ready.clear()

        @control.on("open")
        def on_control_open() -> None:
            self._control = control
            control.send(json.dumps({"type": "hello", "protocol": PROTOCOL, "num_kp": self.num_kp,
                                     "jacobian": self.with_jacobian, "model": self.model_name,
                                     "boot_id": boot_id()}))
            if self.avatar_bytes is not None:
                self.send_avatar(self.avatar_bytes, self.avatar_name)

        @control.on("message")
        def on_control(message) -> None:
            self._on_control(message, end)

        @kp.on("open")
        def on_kp_open() -> None:
            self._kp = kp
            self.encoder.force_keyframe()  # a (re)joined receiver needs a key frame first
            self._ready.set()

        @kp.on("close")
        def on_kp_close() -> None:
            self._ready.clear()

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("connection: %s", pc.connectionState)
            if pc.connectionState == "connected":
                self.stats.connections += 1
                connected.set()
            elif pc.connectionState in ("failed", "closed"):
                end(pc.connectionState)

        with loopback_ice(self.loopback):
            await pc.setLocalDescription(await pc.createOffer())
        self.stats.offers += 1
        offer = {"sdp": pc.localDescription.sdp, "type": "offer"}
        headers = {"Authorization": f"Bearer {self.token}"}
        async with http.post(self.offer_url, json=offer, headers=headers,
                             timeout=aiohttp.ClientTimeout(total=15)) as res:
            try:
                body = await res.json(content_type=None)
            except (json.JSONDecodeError, aiohttp.ContentTypeError, UnicodeDecodeError):
                body = {}
            message = body.get("error") if isinstance(body, dict) else None
            if res.status == 401:
                raise _Fatal(f"the receiver refused the token ({message or 'HTTP 401'}); pass the --token that "
                             "odecam receive printed")
            if 400 <= res.status < 500:
                raise _Fatal(f"the receiver refused the call (HTTP {res.status}: {message or res.reason})")
            if res.status != 200 or not isinstance(body, dict) or body.get("type") != "answer":
                raise _Retry(f"HTTP {res.status} {message or res.reason}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="answer"))
        waits = [asyncio.ensure_future(connected.wait()), asyncio.ensure_future(ended.event.wait())]
        try:
            await asyncio.wait(waits, timeout=CONNECT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if not connected.is_set():
            raise _Retry(f"the connection {ended.reason}" if ended.event.is_set()
                         else f"no connection within {CONNECT_TIMEOUT_S:.0f} s")
        log.info("connected to %s (session %s)", self.offer_url, body.get("session"))

    def _on_control(self, message, end: Callable[[str], None]) -> None:
        if not isinstance(message, str) or len(message) > MAX_CONTROL_MESSAGE:
            return
        try:
            msg = json.loads(message)
            kind = msg["type"]
        except (json.JSONDecodeError, TypeError, KeyError):
            return
        if kind == "key":
            self.stats.key_requests += 1
            self.encoder.force_keyframe()
        elif kind == "hello":
            if msg.get("num_kp") != self.num_kp or bool(msg.get("jacobian")) != self.with_jacobian:
                self._finish(f"the receiver's model ({msg.get('model')}) has {msg.get('num_kp')} keypoints, this "
                             f"sender's has {self.num_kp}; use the same --preset or --checkpoint on both ends")
        elif kind == "avatar" and msg.get("ok"):
            log.info("the receiver shows the avatar %r", msg.get("name"))
            self.avatar_acked.set()
        elif kind == "error":
            text = str(msg.get("message", ""))[:500]
            self.remote_errors.append(text)
            log.warning("the receiver says: %s", text)
            if msg.get("fatal"):
                self._finish(f"the receiver refused the call: {text}")
        elif kind == "bye":
            end(str(msg.get("reason", "bye")))

    async def _close_pc(self) -> None:
        pc, self.pc = self.pc, None
        self._ready.clear()
        self._kp = self._control = None
        if pc is not None:
            try:
                await pc.close()
            except Exception:  # noqa: BLE001
                log.debug("closing the peer connection failed", exc_info=True)


class _Retry(Exception):
    """A failed attempt worth retrying."""


class _Ended:
    """Set once when a connection ends, with the reason."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _bgr_to_rgb(bgr: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

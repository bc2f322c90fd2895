"""The receiving end of a keypoint call (``odecam receive``): signalling, connections, checks.

:class:`KeypointReceiver` answers ``POST /offer`` (token, offer checks and connection limits from
:mod:`odecam.realtime.signalling`), keeps one connection (a session) at a time - a new offer replaces
the current one - decodes the keypoint channel with :class:`KeypointDecoder`, checks every control
message (:data:`~odecam.realtime.call.protocol.RECEIVER_CONTROL`) and avatar payload
(:mod:`odecam.realtime.call.avatar`), and renders through :class:`~odecam.realtime.call.render.RenderLoop`.
Bad payloads are refused with a logged reason (rate-limited) and the call goes on.

``on_event`` (optional) is told, in one sentence each, when a sender connects, leaves or is replaced.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence


from odecam.engine.animator import Animator
from odecam.engine.avatar import Avatar
from odecam.errors import InputImageError
from odecam.model import MotionTransferModel
from odecam.realtime.call.avatar import AvatarAssembler, AvatarRefused, decode_avatar_image
from odecam.realtime.call.protocol import (AVATAR_LABEL, CONNECT_TIMEOUT_S, KEY_REQUEST_INTERVAL_S, KP_LABEL,
                                           MAX_AVATAR_BYTES, MAX_CONTROL_MESSAGE, MAX_PACKET_BYTES, PROTOCOL,
                                           RECEIVER_CONTROL, ROUTINE_DROPS, boot_id, report_event)
from odecam.realtime.call.render import ReceiverStats, RenderLoop, Sink
from odecam.realtime.keypoint_packet import DecodedKeypoints, KeypointDecoder
from odecam.realtime.signalling import ConnectionLimits, RateLimitedLog
from odecam.realtime.validation import MessageRefused, parse_control
from odecam.realtime.virtual_camera import LatencyStats

log = logging.getLogger(__name__)

__all__ = ["KeypointReceiver", "start_receiver"]


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
    blink: float = 0.0  # the sender's last blink amount (the "blink" control message)
    closed: bool = False
    last_key_request: float = 0.0
    tasks: list = field(default_factory=list)
    connected: bool = False           # reached "connected" (told to on_event)
    bye: str | None = None            # the reason the sender gave when leaving


class KeypointReceiver(RenderLoop):
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
        limits: HTTP connection caps and timeouts of the signalling endpoint.
        on_event: called on the event loop with one sentence when a sender connects, leaves or is
            replaced (``odecam receive`` prints it).
        paste_back: emit the avatar in its whole photo (avatars with a
            :attr:`~odecam.engine.avatar.Avatar.placement`: the receiver's own ``--source``), 2 S rows high.
    """

    def __init__(self, model: MotionTransferModel, avatar: Avatar, token: str, sinks: Sequence[Sink] = (),
                 fps: float = 30.0, accept_avatar: bool = True, loopback: bool = True,
                 ice_servers: Sequence[str] = (), relative: bool = True, ode_steps: int | None = None,
                 max_avatar_bytes: int = MAX_AVATAR_BYTES, max_packet_bytes: int = MAX_PACKET_BYTES,
                 animator_factory: Callable[[Avatar], Animator] | None = None,
                 limits: ConnectionLimits | None = None, on_event: Callable[[str], None] | None = None,
                 paste_back: bool = False) -> None:
        if not 0 < fps <= 240:
            raise ValueError(f"fps must be in (0, 240], got {fps}")
        self.model = model
        self.avatar = avatar
        self.paste_back = paste_back
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
        self._ratelog = RateLimitedLog(log)
        self.limits = limits or ConnectionLimits()
        self.on_event = on_event
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

        from odecam.realtime.signalling import MAX_BODY, json_errors

        app = web.Application(client_max_size=MAX_BODY, middlewares=[json_errors])
        app.router.add_post("/offer", self._offer)
        app.router.add_get("/stats", self._stats_route)

        async def on_shutdown(_app) -> None:
            await self.close()

        app.on_shutdown.append(on_shutdown)
        return app

    def _authorized(self, request) -> None:
        from odecam.realtime.signalling import require_token

        require_token(request, self._token, "pass the --token that odecam receive printed")

    async def _stats_route(self, request):
        from aiohttp import web

        self._authorized(request)
        return web.json_response(self.summary())

    async def _offer(self, request):
        from aiohttp import web
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

        from odecam.realtime.webrtc_server import loopback_ice

        from odecam.realtime.signalling import bad_request, json_error, read_offer

        self._authorized(request)
        if self._closed:
            raise json_error(web.HTTPServiceUnavailable, "the receiver is stopping")
        body = await read_offer(request)
        if "m=application" not in body["sdp"]:
            raise bad_request("the offer has no data channel; create the 'avatar' and 'kp' data channels first")
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
            raise bad_request(f"the SDP offer could not be used ({type(exc).__name__}: {exc})") from None
        old, self.session = self.session, session
        self.stats.sessions += 1
        self.decoder.reset()
        self._pending = None
        self._last_rendered = None
        if old is not None:
            self.stats.replaced += 1
            log.info("session %s replaces session %s", session.id, old.id)
            self._event(f"a new sender (session {session.id}) replaces the current one (session {old.id})")
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
                                     "boot_id": self._boot_id, "blink": True})
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
            if pc.connectionState == "connected" and not session.connected and not session.closed:
                session.connected = True
                hello = session.hello or {}
                model = f", model {hello['model']}" if hello.get("model") else ""
                self._event(f"a sender connected (session {session.id}{model})")
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
        self._ratelog(logging.WARNING, f"control:{reason[:16]}", "session %s: refused a control message: %s",
                      session.id, reason)
        self._send(session, {"type": "error", "message": reason})

    def _on_control(self, session: _Session, message) -> None:
        """A message on the "avatar" channel (inside aiortc's handler: nothing may escape from here)."""
        if session is not self.session or session.closed:
            return
        try:
            if isinstance(message, (bytes, bytearray, memoryview)):
                self._on_avatar_chunk(session, message)
                return
            try:
                msg = parse_control(message, RECEIVER_CONTROL, MAX_CONTROL_MESSAGE)
            except MessageRefused as exc:
                session.avatar.discard()  # binary data after a broken header is junk
                self._refuse_control(session, str(exc))
                return
            self._apply_control(session, msg)
        except Exception as exc:  # noqa: BLE001 - a control message must never end the call
            log.debug("control message failed", exc_info=True)
            self._refuse_control(session, f"it could not be applied ({type(exc).__name__})")

    def _on_avatar_chunk(self, session: _Session, data) -> None:
        try:
            payload = session.avatar.chunk(data)
        except AvatarRefused as exc:
            self._refuse_avatar(session, str(exc))
            return
        if payload is not None:
            self._use_avatar(session, payload, session.avatar.name)

    def _apply_control(self, session: _Session, msg: dict) -> None:
        kind = msg["type"]
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
        elif kind == "blink":
            amount = float(msg["amount"])
            if not 0.0 <= amount <= 1.0:  # NaN included
                self._refuse_control(session, f"blink amount {msg['amount']!r} is outside 0..1")
                return
            session.blink = amount
        elif kind == "avatar":
            if not self.accept_avatar:
                self._refuse_avatar(session, "this receiver shows its own avatar (--keep-avatar)")
                session.avatar.discard()  # ignore the chunks that follow
                return
            try:
                session.avatar.header(msg)
            except AvatarRefused as exc:
                self._refuse_avatar(session, str(exc))
        elif kind == "bye":
            session.bye = msg.get("reason", "") or "bye"
            log.info("session %s: the sender is leaving (%s)", session.id, session.bye)
            self._spawn(self._close_session(session, "sender left"))

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
                if reason in ROUTINE_DROPS:
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
        if session.connected and reason not in ("replaced", "receiver stopped"):
            why = f"it said {session.bye!r}" if session.bye else f"connection {reason}"
            self._event(f"the sender left (session {session.id}, {why})")

    def _event(self, text: str) -> None:
        report_event(log, self.on_event, text)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def start_receiver(receiver: KeypointReceiver, host: str = "127.0.0.1", port: int = 8765, ssl_context=None):
    """Start the render loop and bind the signalling endpoint -> :class:`~odecam.realtime.webrtc_server.Running`
    (raises :class:`OdecamError` when the address cannot be bound)."""
    from odecam.realtime.signalling import serve_app

    await receiver.start()
    try:
        return await serve_app(receiver.app(), host, port, ssl_context, receiver.limits)
    except BaseException:
        await receiver.close()

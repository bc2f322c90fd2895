"""The sending end of a keypoint call (``odecam send``): F_K on each frame, keypoints on the wire.

:class:`KeypointSender` reads frames from a :class:`FrameSource` on a pipeline thread, runs F_K
(:data:`Extractor`: RGB (H, W, 3) uint8 -> keypoints (K, 2) and jacobians (K, 2, 2) or None) and
sends each frame's packet (:class:`~odecam.realtime.keypoint_packet.KeypointEncoder`) on the
unordered ``"kp"`` channel. It posts the offer, retries with backoff until ``connect_timeout``,
reconnects when a connection fails, and stops when a newer sender replaces it. Control messages from
the receiver are checked against :data:`~odecam.realtime.call.protocol.SENDER_CONTROL`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Protocol, Sequence

import numpy as np

from odecam.engine.animator import Animator
from odecam.errors import OdecamError
from odecam.realtime.call.protocol import (AVATAR_CHUNK, AVATAR_LABEL, CONNECT_TIMEOUT_S, KP_LABEL, MAX_BUFFERED,
                                           MAX_CONTROL_MESSAGE, PROTOCOL, SENDER_CONTROL, boot_id, describe,
                                           offer_url, report_event)
from odecam.realtime.keypoint_packet import KeypointEncoder
from odecam.realtime.validation import MessageRefused, parse_control

log = logging.getLogger(__name__)

__all__ = ["Extractor", "FrameSource", "FramedExtractor", "KeypointSender", "SenderStats", "animator_extractor"]


class FrameSource(Protocol):
    """What the sender reads frames from (:class:`~odecam.realtime.capture.LatestFrameCapture` fits)."""

    def start(self) -> object: ...

    def stop(self) -> None: ...

    def read(self, timeout: float | None = 1.0): ...  # -> object with .image (BGR) and .timestamp, or None

    @property
    def ended(self) -> bool: ...


Extractor = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None] | None]
"""RGB frame (H, W, 3) uint8 -> raw F_K keypoints (K, 2) and jacobians (K, 2, 2) or None; or None: send nothing."""


def animator_extractor(animator: Animator) -> Extractor:
    """F_K of ``animator``'s model as an :data:`Extractor`. Its ``blink`` attribute returns the blink amount the
    animator read from the last frame (blink retargeting), which the sender passes on."""
    def extract(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        value, jac = animator.keypoints(rgb)
        return value[0].cpu().numpy(), None if jac is None else jac[0].cpu().numpy()

    extract.blink = lambda: animator.blink_amount  # type: ignore[attr-defined]
    return extract


class FramedExtractor:
    """F_K on the driver's face, framed as ``live`` frames it (:class:`~odecam.realtime.framing.FaceFramer`: the face
    followed and levelled, the detector after the keypoints went out), with nobody in view the rest pose
    (:mod:`odecam.realtime.presence`): F_K is not run on the empty room and the keypoints sent glide from the last
    pose seen to the first face's (the receiver's neutral pose, so its avatar shows its photo), and back when a face
    returns. Before the first face nothing is sent (the receiver keeps the avatar's still portrait).

    ``prepare(bgr) -> rgb`` and ``__call__(rgb) -> (K, 2), (K, 2, 2) or None``, or None to send nothing, in the
    sender's pipeline thread; ``after_frame`` runs the deferred face detection; ``blink()`` the blink amount."""

    def __init__(self, animator: Animator, framing, rest_fade: float | None = 0.4) -> None:
        from odecam.realtime.framing import FaceFramer
        from odecam.realtime.presence import Presence

        self.animator = animator
        self.framer = FaceFramer(framing)
        self.presence = None if rest_fade is None else Presence(rest_fade)
        self.after_frame = self.framer.detect_deferred
        self._roll = 0.0
        self._present = True

    def prepare(self, bgr: np.ndarray) -> np.ndarray:
        framing = self.framer.process(bgr, defer_detection=True)
        self._present = self.presence is None or self.presence.in_view(framing, self.framer.config.follow_face)
        rgb, self._roll = framing.model_input_rgb()  # the face levelled for F_K; keypoints turned back in __call__
        return rgb

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None] | None:
        p = self.presence
        if p is None:
            value, jac = self.animator.keypoints(rgb, self._roll)
        else:
            weight = p.update(self._present, time.monotonic())
            if p.present:
                value, jac = p.hold(*self.animator.keypoints(rgb, self._roll))
            else:  # nobody in view: no F_K on the empty room
                self.animator.set_blink(0.0)
                value, jac = p.held
                if value is None:  # at rest: the neutral pose, or nothing before the first face
                    if self.animator.motion.neutral is None:
                        return None
                    value = self.animator.motion.neutral
            if weight < 1.0:
                value, jac = p.towards_neutral(value, jac, self.animator.motion)
            elif self.animator.motion.neutral is None:
                self.animator.motion.set_neutral(value, jac)  # the first face: the receiver's neutral too
        return value[0].cpu().numpy(), None if jac is None else jac[0].cpu().numpy()

    def blink(self) -> float:
        return self.animator.blink_amount


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
    control_refused: int = 0      # control messages from the receiver that were ignored (malformed)
    blinks_sent: int = 0          # "blink" control messages (one each time the driver's blink amount changes)
    first_send: float | None = None
    last_send: float | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        span = (self.last_send - self.first_send) if self.first_send and self.last_send else 0.0
        d["payload_kbps"] = self.bytes_sent * 8 / span / 1000 if span > 0 else None
        d["fps"] = (self.frames_sent - 1) / span if span > 0 else None
        return d


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
        after_frame: called on the frame thread once a frame's keypoints went to the sender, in the wait for
            the next frame (``odecam send``: the face detection its framing left for later).
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
        on_event: called on the event loop with one sentence when the sender connects, waits for the
            receiver, reconnects or is replaced (``odecam send`` prints it).
    """

    def __init__(self, url: str, token: str, source: FrameSource, extractor: Extractor, num_kp: int,
                 with_jacobian: bool = False, prepare: Callable[[np.ndarray], np.ndarray] | None = None,
                 avatar_bytes: bytes | None = None, avatar_name: str = "remote", model_name: str = "",
                 max_frames: int | None = None, reconnect: bool = True, connect_timeout: float = 30.0,
                 ice_servers: Sequence[str] = (), loopback: bool | None = None,
                 packet_filter: Callable[[bytes], Iterable[bytes]] | None = None,
                 keyframe_interval: int = 30, on_event: Callable[[str], None] | None = None,
                 after_frame: Callable[[], object] | None = None) -> None:
        from odecam.realtime.webrtc_server import is_loopback_host

        self.offer_url, host = offer_url(url)
        self.token = token
        self.source = source
        self.extractor = extractor
        self.prepare = prepare or _bgr_to_rgb
        self.after_frame = after_frame
        self.avatar_bytes = avatar_bytes
        self.avatar_name = avatar_name
        self.model_name = model_name
        self.max_frames = max_frames
        self.reconnect = reconnect
        self.connect_timeout = connect_timeout
        self.ice_servers = list(ice_servers)
        self.loopback = is_loopback_host(host) if loopback is None else loopback
        self.packet_filter = packet_filter
        self.on_event = on_event
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
        self._peer_blink = False            # the receiver's hello said it shows blinks
        self._blink_sent = 0.0               # what the receiver shows now (a new session starts open)

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
            await self._say_bye("done" if self.error is None else "error")
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

    async def _say_bye(self, reason: str) -> None:
        """Tell the receiver this sender is leaving (it then closes the call at once)."""
        channel = self._control
        if channel is not None and channel.readyState == "open" and self.stats.connections:
            try:
                channel.send(json.dumps({"type": "bye", "reason": reason}))
            except Exception:  # noqa: BLE001 - a closing transport: the receiver notices anyway
                log.debug("sending bye failed", exc_info=True)

    def _event(self, text: str) -> None:
        report_event(log, self.on_event, text)

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
                keypoints = self.extractor(self.prepare(frame.image))
                if keypoints is not None:  # None: nothing to send for this frame (FramedExtractor: nobody yet)
                    blink = getattr(self.extractor, "blink", None)
                    self._call(self._send_frame, *keypoints, frame.timestamp, blink() if blink else None)
                if self.after_frame is not None:
                    self.after_frame()
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
    def _send_frame(self, value: np.ndarray, jac: np.ndarray | None, timestamp: float,
                    blink: float | None = None) -> None:
        if self._finished.is_set():
            return
        if blink is not None and self._peer_blink and blink != self._blink_sent:
            self._send_blink(blink)
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

    def _send_blink(self, amount: float) -> None:
        """The driver's blink amount to the receiver, on the reliable control channel (only when it changes)."""
        control = self._control
        if control is None or control.readyState != "open":
            return
        try:
            control.send(json.dumps({"type": "blink", "amount": round(float(amount), 4)}))
        except Exception:  # noqa: BLE001 - closing transport: the next change is sent again
            log.debug("blink send failed", exc_info=True)
            return
        self._blink_sent = amount
        self.stats.blinks_sent += 1

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
        waiting_told = False
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
                                     f"({describe(exc)}); start odecam receive first, or check --to")
                        return
                    log.info("connecting to %s failed (%s); retrying in %.1f s", self.offer_url, describe(exc), backoff)
                    if not waiting_told:
                        waiting_told = True
                        self._event(f"waiting for the receiver at {self.offer_url} ({describe(exc)}); retrying for "
                                    f"up to {self.connect_timeout:.0f} s")
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                backoff = 0.25
                waiting_told = False
                await ended.event.wait()
                await self._close_pc()
                if self._finished.is_set():
                    return
                if not self.reconnect or ended.reason == "replaced":
                    self._finish(None if ended.reason == "replaced" else f"the connection ended ({ended.reason})")
                    if ended.reason == "replaced":
                        self._event("another sender took over the call; stopping")
                    return
                self._event(f"the connection ended ({ended.reason}); reconnecting")
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
        self._event(f"connected to {self.offer_url} (session {body.get('session')})")

    def _on_control(self, message, end: Callable[[str], None]) -> None:
        """A message from the receiver (inside aiortc's handler: nothing may escape from here)."""
        try:
            msg = parse_control(message, SENDER_CONTROL, MAX_CONTROL_MESSAGE)
        except MessageRefused as exc:
            self.stats.control_refused += 1
            log.warning("ignored a control message from the receiver: %s", exc)
            return
        kind = msg["type"]
        if kind == "key":
            self.stats.key_requests += 1
            self.encoder.force_keyframe()
        elif kind == "hello":
            self._peer_blink = bool(msg.get("blink"))
            self._blink_sent = 0.0  # a (re)joined receiver starts with open eyes
            if msg.get("num_kp") != self.num_kp or bool(msg.get("jacobian")) != self.with_jacobian:
                self._finish(f"the receiver's model ({msg.get('model')}) has {msg.get('num_kp')} keypoints, this "
                             f"sender's has {self.num_kp}; use the same --preset or --checkpoint on both ends")
        elif kind == "avatar" and msg.get("ok"):
            log.info("the receiver shows the avatar %r", msg.get("name"))
            self.avatar_acked.set()
        elif kind == "error":
            text = msg["message"][:500]
            if len(self.remote_errors) < 100:  # a chatty receiver must not grow this without bound
                self.remote_errors.append(text)
            log.warning("the receiver says: %s", text)
            if msg.get("fatal"):
                self._finish(f"the receiver refused the call: {text}")
        elif kind == "bye":
            end(msg.get("reason") or "bye")

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


def _bgr_to_rgb(bgr: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

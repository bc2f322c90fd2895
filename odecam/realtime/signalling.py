"""The HTTP side of WebRTC signalling, shared by ``odecam serve`` and ``odecam receive``.

Both bind a small aiohttp application that anyone who can reach the port may talk to before the
token is checked, so the connection handling itself has to hold against hostile clients:

* **Timeouts** (:class:`ConnectionLimits`): a connection with no request in progress is closed after
  ``idle_timeout_s`` without a byte (gracefully, so keep-alive clients see it closed), or ``header_timeout_s`` after the first byte of a request whose
  header never completes; a request body must arrive within ``body_timeout_s`` (HTTP 408).
* **Connection caps**: at most ``max_connections`` open connections (lowered to fit the process's
  file descriptor limit) and ``max_per_address`` per client address. A new connection over a cap
  closes the *oldest idle* connection of the address holding the most (a flood from one address
  evicts its own connections; a newcomer still gets in); it is refused only when every connection
  is busy with a request.
* **Bounded logging**: what the guard closed is reported at most once per ``log_interval_s``, as one
  line of counts; asyncio's ``accept() out of system resource`` errors are rate-limited the same way,
  and so are aiohttp's "Error handling request" reports of malformed requests (one line, no traceback).
* **Token**: ``Authorization: Bearer TOKEN`` compared in constant time on bytes, so a header that is
  not valid UTF-8 is simply a wrong token (401).
* **Offer bodies**: :func:`read_offer` reads at most :data:`MAX_BODY` bytes (413) within the body
  timeout (408) and validates them with :func:`odecam.realtime.validation.parse_offer` (400 and the
  reason: charset, depth, numbers, field types).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import resource
import ssl
import time
from dataclasses import dataclass, field

from aiohttp import web

from odecam.errors import OdecamError
from odecam.realtime.validation import MessageRefused, parse_offer

log = logging.getLogger(__name__)

#: the largest request body accepted (an SDP offer is a few KiB)
MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class ConnectionLimits:
    """How much a signalling server gives any one client (see the module docstring)."""

    max_connections: int = 256       # open HTTP connections in total (capped by the fd limit)
    max_per_address: int = 32        # open HTTP connections per client IP address
    idle_timeout_s: float = 30.0     # no request in progress and no byte received (keep-alive)
    header_timeout_s: float = 10.0   # first byte of a request -> its complete header
    body_timeout_s: float = 10.0     # reading a request body
    reserve_fds: int = 256           # file descriptors kept free for peer connections, files, ...
    backlog: int = 512               # listen() backlog
    log_interval_s: float = 10.0     # the guard reports what it closed at most this often

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_per_address < 1:
            raise ValueError("connection caps must be at least 1")
        if min(self.idle_timeout_s, self.header_timeout_s, self.body_timeout_s) <= 0:
            raise ValueError("timeouts must be positive")


LIMITS_KEY = web.AppKey("odecam_connection_limits", ConnectionLimits)


class RateLimitedLog:
    """Logs a message at once, then at most every ``interval_s`` per key with a count of the rest."""

    def __init__(self, logger: logging.Logger, interval_s: float = 5.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, level: int, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        if len(self._last) >= 1000:  # keys come from the network's reasons: keep the table bounded
            self._last.clear()
            self._suppressed.clear()
        self._last[key] = now
        more = self._suppressed.pop(key, 0)
        self.logger.log(level, message + (f" ({more} more since the last report)" if more else ""), *args)


# -- requests ----------------------------------------------------------------------------------------
def json_error(cls: type[web.HTTPException], message: str, **kw) -> web.HTTPException:
    return cls(text=json.dumps({"error": message}), content_type="application/json", **kw)


def bad_request(message: str) -> web.HTTPException:
    return json_error(web.HTTPBadRequest, message)


def token_matches(request: web.Request, token: bytes, allow_query: bool = False) -> bool:
    """Whether the request carries ``token`` (``Authorization: Bearer``, or ``?token=`` if allowed).

    Compared in constant time on bytes; header text that was not UTF-8 (aiohttp keeps such bytes as
    surrogates) is encoded back as it came, so it is just a wrong token.
    """
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        given = auth[7:]
    else:
        given = request.query.get("token", "") if allow_query else ""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token)


def require_token(request: web.Request, token: bytes, hint: str, allow_query: bool = False) -> None:
    """401 with ``{"error": "missing or wrong token; <hint>"}`` unless :func:`token_matches`."""
    if not token_matches(request, token, allow_query):
        raise json_error(web.HTTPUnauthorized, f"missing or wrong token; {hint}", headers={"WWW-Authenticate": "Bearer"})


async def read_offer(request: web.Request) -> dict:
    """The JSON body of a signalling POST, checked by :func:`~odecam.realtime.validation.parse_offer`.

    413 over :data:`MAX_BODY` bytes, 408 when the body does not arrive within the body timeout, 400
    with the reason for anything else that is not ``{"sdp": str, "type": "offer", "avatar"?: name}``.
    """
    limits = request.app.get(LIMITS_KEY) or ConnectionLimits()
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise bad_request(f"the body must not be compressed (Content-Encoding {encoding[:20]!r}); send plain JSON")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    try:
        raw = await asyncio.wait_for(request.read(), limits.body_timeout_s)
    except asyncio.TimeoutError:
        raise json_error(web.HTTPRequestTimeout,
                         f"the request body did not arrive within {limits.body_timeout_s:g} s") from None
    except web.HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 - a body aiohttp cannot read (bad chunking, ...) is the client's fault
        raise bad_request(f"the body could not be read ({type(exc).__name__})") from None
    try:
        return parse_offer(raw, request.charset)
    except MessageRefused as exc:
        raise bad_request(str(exc)) from None


@web.middleware
async def json_errors(request: web.Request, handler):
    """Errors as JSON ``{"error": ...}``; oversize bodies (413) say what the limit is."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        raise json_error(web.HTTPRequestEntityTooLarge, f"request body over {MAX_BODY} bytes", max_size=MAX_BODY,
                         actual_size=request.content_length or 0) from None


# -- connections -------------------------------------------------------------------------------------
class _Conn:
    __slots__ = ("transport", "address", "since", "first_byte", "active", "open")

    def __init__(self, transport: asyncio.BaseTransport, address: str, now: float) -> None:
        self.transport = transport
        self.address = address
        self.since = now                      # when it last started waiting for a request
        self.first_byte: float | None = None  # first byte of the request it is waiting for
        self.active = 0                       # requests being handled
        self.open = True


class _GuardedProtocol(asyncio.Protocol):
    """Admits a connection through the guard, then hands everything to aiohttp's protocol."""

    __slots__ = ("guard", "inner", "conn")

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.conn: _Conn | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.conn = self.guard._admit(transport)
        if self.conn is None:
            transport.abort()
            return
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None:
            return
        if not conn.active and conn.first_byte is None:
            conn.first_byte = time.monotonic()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.conn is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.guard._release(self.conn)
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.inner.resume_writing()


class ConnectionGuard:
    """The protocol factory a signalling server listens with: caps and timeouts around ``factory``.

    ``counts``: ``accepted``, ``refused`` (over a cap with nothing to evict), ``evicted`` (idle
    connections closed to make room), ``timed_out`` (idle or header timeout); ``open`` is the number
    of connections now open.
    """

    def __init__(self, limits: ConnectionLimits, factory) -> None:
        self.limits = limits
        self.factory = factory
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        fit = soft - limits.reserve_fds if soft != resource.RLIM_INFINITY else limits.max_connections
        self.max_connections = max(16, min(limits.max_connections, fit))
        self.counts = {"accepted": 0, "refused": 0, "evicted": 0, "timed_out": 0}
        self._reported = dict(self.counts)
        self._by_address: dict[str, dict[_Conn, None]] = {}
        self._by_transport: dict[asyncio.BaseTransport, _Conn] = {}
        self._sweeper: asyncio.Task | None = None
        self._last_report = 0.0

    @property
    def open(self) -> int:
        return len(self._by_transport)

    def __call__(self) -> _GuardedProtocol:
        return _GuardedProtocol(self, self.factory())

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.ensure_future(self._sweep())

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    # -- admission ---------------------------------------------------------------------------------
    def _admit(self, transport: asyncio.BaseTransport) -> _Conn | None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, (tuple, list)) and peer else ""
        same = self._by_address.get(address)
        if same is not None and len(same) >= self.limits.max_per_address and not self._evict(same):
            self.counts["refused"] += 1
            return None
        if len(self._by_transport) >= self.max_connections:
            groups = sorted(self._by_address.values(), key=len, reverse=True)
            if not any(self._evict(group) for group in groups):
                self.counts["refused"] += 1
                return None
        conn = _Conn(transport, address, time.monotonic())
        self._by_address.setdefault(address, {})[conn] = None
        self._by_transport[transport] = conn
        self.counts["accepted"] += 1
        return conn

    def _evict(self, group: dict[_Conn, None]) -> bool:
        for conn in group:  # oldest first
            if not conn.active:
                self._close(conn)
                self.counts["evicted"] += 1
                return True
        return False

    def _close(self, conn: _Conn) -> None:
        """Close a connection that is not in a request: gracefully (FIN) when it is idle and has nothing
        left to write, so a client's keep-alive pool sees it closed before reusing it; else reset it."""
        self._release(conn)
        transport = conn.transport
        idle = conn.first_byte is None and getattr(transport, "get_write_buffer_size", lambda: 1)() == 0
        if idle:
            transport.close()
        else:
            transport.abort()

    def _release(self, conn: _Conn) -> None:
        if not conn.open:
            return
        conn.open = False
        self._by_transport.pop(conn.transport, None)
        group = self._by_address.get(conn.address)
        if group is not None:
            group.pop(conn, None)
            if not group:
                del self._by_address[conn.address]

    # -- requests (middleware) ---------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler):
        conn = self._by_transport.get(request.transport) if request.transport is not None else None
        if conn is None:
            return await handler(request)
        conn.active += 1
        try:
            return await handler(request)
        finally:
            conn.active -= 1
            if not conn.active:
                conn.since, conn.first_byte = time.monotonic(), None

    # -- timeouts ----------------------------------------------------------------------------------
    async def _sweep(self) -> None:
        lim = self.limits
        tick = min(1.0, max(0.05, min(lim.idle_timeout_s, lim.header_timeout_s) / 4))
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for conn in list(self._by_transport.values()):
                if conn.active:
                    continue
                if conn.first_byte is None:
                    late = now - conn.since > lim.idle_timeout_s
                else:
                    late = now - conn.first_byte > lim.header_timeout_s
                if late:
                    self._close(conn)
                    self.counts["timed_out"] += 1
            self._report(now)

    def _report(self, now: float) -> None:
        if now - self._last_report < self.limits.log_interval_s:
            return
        delta = {k: v - self._reported[k] for k, v in self.counts.items() if k != "accepted"}
        if any(delta.values()):
            log.warning("connection guard: closed %d idle or slow connection(s) (timeouts), evicted %d and refused "
                        "%d over the caps (%d open; at most %d, %d per address) in the last %.0f s",
                        delta["timed_out"], delta["evicted"], delta["refused"], self.open, self.max_connections,
                        self.limits.max_per_address, now - self._last_report if self._last_report else
                        self.limits.log_interval_s)
        self._reported = dict(self.counts)
        self._last_report = now


class _OneLinePerInterval(logging.Filter):
    """For aiohttp's request-handling logger: every message at most once per ``interval_s`` (with a
    count of the rest), as one line without a traceback - malformed requests are the client's doing
    and must not flood the log."""

    def __init__(self, interval_s: float) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)[:80]
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if len(self._last) >= 100:
            self._last.clear()
            self._suppressed.clear()
        self._last[key] = now
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            text = f"{text}: {type(exc).__name__}: {first}"
        more = self._suppressed.pop(key, 0)
        record.msg, record.args = text + (f" ({more} more since the last report)" if more else ""), ()
        record.exc_info, record.exc_text = None, None
        return True


#: the logger aiohttp's request handlers use here (one line per message per interval)
http_log = logging.getLogger("odecam.realtime.signalling.http")


class _AcceptErrors:
    """A loop exception handler: socket errors (``accept() out of system resource``) at a bounded rate,
    aiortc's teardown errors (a closing peer's unretrieved ConnectionError / InvalidStateError) at debug
    level, everything else to the handler that was there before."""

    def __init__(self, previous, interval_s: float) -> None:
        self.previous = previous
        self.users = 0
        self.ratelog = RateLimitedLog(log, interval_s)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        message = str(context.get("message", ""))
        exc = context.get("exception")
        if "accept" in message or ("socket" in context and isinstance(exc, OSError)):
            self.ratelog(logging.ERROR, "accept", "%s (%s)", message, exc)
        elif message.startswith("Task exception was never retrieved") and (
                isinstance(exc, ConnectionError) or type(exc).__name__ == "InvalidStateError"):
            # aiortc's own tasks when a peer connection closes under them (sending on a closed DTLS
            # transport, ICE closed mid-connect): expected at hang-up, not worth a traceback
            self.ratelog(logging.DEBUG, "peer-teardown", "a peer connection's task ended as it closed (%s: %s)",
                         type(exc).__name__, exc)
        elif self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)


# -- running -----------------------------------------------------------------------------------------
@dataclass
class Running:
    """A started signalling server."""

    runner: web.AppRunner
    url: str  # http(s)://host:port/ (the port that was bound, also for port 0)
    server: asyncio.AbstractServer | None = None
    guard: ConnectionGuard | None = None
    _accept_errors: _AcceptErrors | None = field(default=None, repr=False)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.guard is not None:
            self.guard.close()
        await self.runner.cleanup()
        if self.server is not None:
            try:
                await asyncio.wait_for(self.server.wait_closed(), 5.0)
            except asyncio.TimeoutError:
                log.debug("the listening socket took over 5 s to close")
        handler = self._accept_errors
        if handler is not None:
            handler.users -= 1
            loop = asyncio.get_running_loop()
            if handler.users == 0 and loop.get_exception_handler() is handler:
                loop.set_exception_handler(handler.previous)


async def serve_app(app: web.Application, host: str = "127.0.0.1", port: int = 8080,
                    ssl_context: ssl.SSLContext | None = None, limits: ConnectionLimits | None = None) -> Running:
    """Bind ``app`` behind a :class:`ConnectionGuard`; raises :class:`OdecamError` if the address cannot be bound."""
    limits = limits or ConnectionLimits()
    app[LIMITS_KEY] = limits
    guard = ConnectionGuard(limits, None)
    app.middlewares.insert(0, guard.middleware)  # outermost: it sees every request's start and end
    # aiohttp's own keep-alive timer is a backstop behind the guard's idle and header timeouts
    if not any(isinstance(f, _OneLinePerInterval) for f in http_log.filters):
        http_log.addFilter(_OneLinePerInterval(limits.log_interval_s))
    runner = web.AppRunner(app, access_log=None, handle_signals=False, logger=http_log,
                           keepalive_timeout=limits.idle_timeout_s + limits.header_timeout_s,
                           lingering_time=min(10.0, limits.body_timeout_s))
    await runner.setup()
    guard.factory = runner.server
    loop = asyncio.get_running_loop()
    try:
        tls = {"ssl_handshake_timeout": limits.header_timeout_s} if ssl_context is not None else {}
        server = await loop.create_server(guard, host, port, ssl=ssl_context, backlog=limits.backlog, **tls)
    except OSError as exc:
        await runner.cleanup()
        reason = "is in use" if exc.errno in (98, 48, 10048) else f"cannot be bound ({exc.strerror or exc})"
        raise OdecamError(f"address {host}:{port} {reason}; pass another --port or --host, "
                          "or stop the program using it.") from None
    guard.start()
    handler = loop.get_exception_handler()
    if not isinstance(handler, _AcceptErrors):
        handler = _AcceptErrors(handler, limits.log_interval_s)
        loop.set_exception_handler(handler)
    handler.users += 1
    bound = server.sockets[0].getsockname()[1] if server.sockets else port
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if ssl_context else "http"
    return Running(runner, f"{scheme}://{shown}:{bound}/", server, guard, handler)

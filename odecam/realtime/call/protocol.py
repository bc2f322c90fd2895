"""The keypoint call's wire protocol: data channels, limits, control messages and their checks.

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
  ``{"type": "blink", "amount": b}``                      sender: the driver's blink, 0 (open) to 1
                                                          (shut), each time it changes; only to a
                                                          receiver whose hello says ``"blink": true``
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

Every control message is checked against :data:`RECEIVER_CONTROL` (what the receiver accepts) or
:data:`SENDER_CONTROL` (what the sender accepts) by :func:`odecam.realtime.validation.parse_control`
before it is used: JSON text of at most :data:`MAX_CONTROL_MESSAGE` bytes, a known ``type``, and
fields of the right types. A message that fails is refused with a logged reason; the call goes on.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from odecam.errors import OdecamError

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
ROUTINE_DROPS = frozenset({"duplicate", "stale", "unknown_keyframe"})

_STR, _INT, _BOOL = (str,), (int,), (bool,)
#: control messages the receiver accepts from a sender: type -> {field: (types, required)}
RECEIVER_CONTROL = {
    "hello": {"protocol": (_INT, False), "num_kp": (_INT, False), "jacobian": (_BOOL, False),
              "model": (_STR, False), "boot_id": (_STR, False)},
    "avatar": {"size": (_INT, False), "name": ((str, type(None)), False)},
    "blink": {"amount": ((int, float), True)},
    "bye": {"reason": (_STR, False)},
}
#: control messages the sender accepts from a receiver
SENDER_CONTROL = {
    "hello": {"protocol": (_INT, False), "num_kp": (_INT, False), "jacobian": (_BOOL, False),
              "model": (_STR, False), "avatar": (_STR, False), "accepts_avatar": (_BOOL, False),
              "boot_id": (_STR, False), "blink": (_BOOL, False)},
    "avatar": {"ok": (_BOOL, False), "name": (_STR, False), "size": (_INT, False)},
    "error": {"message": (_STR, True), "fatal": (_BOOL, False)},
    "key": {},
    "bye": {"reason": (_STR, False)},
}


def boot_id() -> str:
    """An id of this machine's current boot (Linux); processes with equal ids share ``time.monotonic``."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return f"pid-{os.getpid()}-{uuid.getnode():x}"  # other systems: only this process trusts itself


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


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def report_event(log: logging.Logger, on_event: Callable[[str], None] | None, text: str) -> None:
    """Log a call event (connected, left, replaced, ...) and hand it to ``on_event``, the command's printer;
    a broken printer is logged at debug level and never ends the call."""
    log.info("%s", text)
    if on_event is not None:
        try:
            on_event(text)
        except Exception:  # noqa: BLE001
            log.debug("on_event failed", exc_info=True)

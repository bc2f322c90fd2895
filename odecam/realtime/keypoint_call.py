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

Signalling limits (:mod:`odecam.realtime.signalling`): header, body and idle timeouts, a cap on open
connections in total and per client address, offers validated by schema (HTTP 400 with the reason).
Every control message is validated (:mod:`odecam.realtime.validation`); a bad one is refused with a
logged reason and the call goes on.

The code lives in :mod:`odecam.realtime.call`, one module per role (protocol, avatar transfer,
receiver, rendering, sender); this module re-exports its public names so that
``from odecam.realtime.keypoint_call import ...`` keeps working.
"""


from odecam.realtime.call.avatar import AvatarAssembler, AvatarRefused, decode_avatar_image
from odecam.realtime.call.protocol import (AVATAR_CHUNK, AVATAR_LABEL, CONNECT_TIMEOUT_S, KP_LABEL,
                                           MAX_AVATAR_BYTES, MAX_CONTROL_MESSAGE, MAX_PACKET_BYTES, PROTOCOL,
                                           RECEIVER_CONTROL, SENDER_CONTROL, boot_id, offer_url)
from odecam.realtime.call.receiver import KeypointReceiver, start_receiver
from odecam.realtime.call.render import FrameInfo, ReceiverStats, Sink
from odecam.realtime.call.sender import Extractor, FrameSource, KeypointSender, SenderStats, animator_extractor

__all__ = [
    "AVATAR_CHUNK", "AVATAR_LABEL", "CONNECT_TIMEOUT_S", "KP_LABEL", "MAX_AVATAR_BYTES", "MAX_CONTROL_MESSAGE",
    "MAX_PACKET_BYTES", "PROTOCOL", "RECEIVER_CONTROL", "SENDER_CONTROL", "AvatarAssembler", "AvatarRefused",
    "Extractor", "FrameInfo", "FrameSource", "KeypointReceiver", "KeypointSender", "ReceiverStats", "SenderStats",
    "Sink", "animator_extractor", "boot_id", "decode_avatar_image", "offer_url", "start_receiver",
]

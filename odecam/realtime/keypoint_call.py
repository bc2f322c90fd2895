"""A keypoint-only video call: ``odecam send`` and ``odecam receive``.

The sender runs F_K on each camera (or video file) frame and sends only the keypoints, a few dozen
bytes per frame (:mod:`odecam.realtime.keypoint_packet`); the receiver re-renders the face from its
own copy of the avatar portrait and shows it in a window, a virtual camera or a file.

The protocol (channels, control messages, signalling) is documented in
:mod:`odecam.realtime.call.protocol`; this module re-exports the public names of
:mod:`odecam.realtime.call` so older imports keep working.
"""


from odecam.realtime.call.avatar import AvatarAssembler, AvatarRefused, decode_avatar_image
from odecam.realtime.call.protocol import (AVATAR_CHUNK, AVATAR_LABEL, CONNECT_TIMEOUT_S, KP_LABEL,
                                           MAX_AVATAR_BYTES, MAX_CONTROL_MESSAGE, MAX_PACKET_BYTES, PROTOCOL,
                                           RECEIVER_CONTROL, SENDER_CONTROL, boot_id, offer_url)
from odecam.realtime.call.receiver import KeypointReceiver, start_receiver
from odecam.realtime.call.render import FrameInfo, ReceiverStats, Sink
from odecam.realtime.call.sender import (Extractor, FramedExtractor, FrameSource, KeypointSender, SenderStats,
                                        animator_extractor)

__all__ = [
    "AVATAR_CHUNK", "AVATAR_LABEL", "CONNECT_TIMEOUT_S", "KP_LABEL", "MAX_AVATAR_BYTES", "MAX_CONTROL_MESSAGE",
    "MAX_PACKET_BYTES", "PROTOCOL", "RECEIVER_CONTROL", "SENDER_CONTROL", "AvatarAssembler", "AvatarRefused",
    "Extractor", "FrameInfo", "FrameSource", "FramedExtractor", "KeypointReceiver", "KeypointSender", "ReceiverStats", "SenderStats",
    "Sink", "animator_extractor", "boot_id", "decode_avatar_image", "offer_url", "start_receiver",
]

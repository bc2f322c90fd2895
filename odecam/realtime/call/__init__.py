"""The keypoint-only call (``odecam send`` / ``odecam receive``), one module per role.

* :mod:`~odecam.realtime.call.protocol` - data channels, limits, control messages and their schemas;
* :mod:`~odecam.realtime.call.avatar` - the avatar file transfer and its checks;
* :mod:`~odecam.realtime.call.receiver` - signalling, connections, keypoint decoding;
* :mod:`~odecam.realtime.call.render` - the receiver's render thread and steady output clock;
* :mod:`~odecam.realtime.call.sender` - F_K on each frame, sending, reconnecting.

The overview is in :mod:`odecam.realtime.keypoint_call`, which re-exports the public names.
"""

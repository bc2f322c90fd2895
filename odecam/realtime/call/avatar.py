"""The avatar transfer of a keypoint call: the sender's portrait file, in chunks, checked on arrival.

The sender announces ``{"type": "avatar", "size": N, "name": str}`` on the ``"avatar"`` channel and
sends N bytes of a JPEG or PNG file as binary messages of :data:`AVATAR_CHUNK` bytes. The receiver
reassembles them (:class:`AvatarAssembler`), then checks the file (:func:`decode_avatar_image`: size,
format, and the engine's image checks in :func:`odecam.engine.images.decode_image_bytes`) before building an
avatar from it. Anything that breaks the rules raises :class:`AvatarRefused` with the reason.
"""

from __future__ import annotations

import numpy as np

from odecam.errors import InputImageError
from odecam.realtime.call.protocol import AVATAR_CHUNK, MAX_AVATAR_BYTES

__all__ = ["AVATAR_CHUNK", "MAX_AVATAR_BYTES", "AvatarAssembler", "AvatarRefused", "decode_avatar_image"]

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class AvatarRefused(Exception):
    """An avatar payload that is not used; ``str(exc)`` is the reason, one sentence."""


def decode_avatar_image(data: bytes, max_bytes: int = MAX_AVATAR_BYTES) -> np.ndarray:
    """Validate avatar file bytes (JPEG or PNG) with the engine's image checks -> (H, W, 3) uint8 RGB.

    Raises :class:`AvatarRefused` with the reason: over ``max_bytes``, not JPEG/PNG, or refused by
    :func:`odecam.engine.images.decode_image_bytes` (the checks every user image gets: header checked
    before decoding, at most 40 megapixels, unreadable, truncated, greyscale, too small, ...).
    """
    from odecam.engine.images import decode_image_bytes

    if len(data) > max_bytes:
        raise AvatarRefused(f"the avatar file is {len(data)} bytes, over the {max_bytes}-byte limit")
    if not (data.startswith(_PNG_MAGIC) or data.startswith(_JPEG_MAGIC)):
        raise AvatarRefused("the avatar is not a JPEG or PNG file")
    try:
        return decode_image_bytes(data, "the avatar", formats=("JPEG", "PNG"))
    except InputImageError as exc:
        raise AvatarRefused(str(exc).rstrip(".")) from None


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

    def discard(self) -> None:
        """Drop what was received and ignore chunks until the next header (after a refused header)."""
        self._reset()
        self._discarding = True

    def _reset(self) -> None:
        self._expected = None
        self._parts = []
        self._received = 0
        self._discarding = False

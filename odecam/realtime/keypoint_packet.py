"""Keypoint packet format, version 1: the wire format of a keypoint-only video call.

The sender runs the keypoint detector on each webcam frame and sends only the ``K``
keypoints (and optionally their 2x2 jacobians); the receiver re-renders the face from
its copy of the source portrait. One packet carries one frame and is meant for an
unreliable, unordered transport (a WebRTC data channel with ``ordered=False,
maxRetransmits=0``, or plain UDP): every packet is decodable on its own or from one
earlier *key frame*, so a lost packet never corrupts later ones.

Byte layout
-----------

All multi-byte integers are big-endian. ``varint`` is unsigned LEB128 (7 bits per byte,
least significant group first, high bit = "more bytes follow", canonical: no redundant
trailing zero groups). ``zigzag`` maps a signed integer ``n`` to ``2n`` if ``n >= 0``
else ``-2n - 1``.

Common header (7 bytes):

======  ======  ===================================================================
offset  bytes   field
======  ======  ===================================================================
0       1       ``0xB1``: magic ``0xB`` (high nibble) and version ``1`` (low nibble)
1       1       flags: bit 0 ``KEY`` (key frame), bit 1 ``JACOBIAN`` (jacobians
                present), bit 2 ``CRC`` (CRC trailer present); bits 3-7 are zero
2       1       ``K``, number of keypoints, 1..64
3       4       ``seq``, uint32 sequence number, +1 per frame, wraps modulo 2**32
======  ======  ===================================================================

Key frame body (``KEY`` set), 9 bytes + bitstream:

======  ======  ===================================================================
offset  bytes   field
======  ======  ===================================================================
7       8       timestamp, uint64 microseconds (sender capture time)
15      1       quantiser: ``(value_bits - 1) << 4 | (jacobian_bits - 1)``, each
                ``bits`` in 2..16
16      n       bitstream: ``2K`` value codes of ``value_bits`` each (``x0 y0 x1 y1
                ...``), then, if ``JACOBIAN``, ``4K`` jacobian codes of
                ``jacobian_bits`` each (row-major ``j00 j01 j10 j11`` per keypoint)
======  ======  ===================================================================

Delta frame body (``KEY`` clear), 3-17 bytes + bitstream:

======  ======  ===================================================================
bytes   field
======  ======  ===================================================================
1-5     key distance, varint, ``(seq - key_seq) mod 2**32``, at least 1: the delta
        is relative to the key frame with sequence number ``key_seq``
1-10    timestamp delta, zigzag varint, microseconds relative to the key frame
1       value coding byte (see below)
0/1     jacobian coding byte, only if ``JACOBIAN``
n       bitstream: ``2K`` value residuals, then ``4K`` jacobian residuals if
        ``JACOBIAN``, each field coded as its coding byte says
======  ======  ===================================================================

Trailer (``CRC`` set), 4 bytes: CRC-32 (``zlib.crc32``) of every preceding byte.

Bitstreams are written most significant bit first and zero-padded to a whole byte;
a packet must end exactly there (or at its CRC trailer).

Quantisation
------------

Mid-tread uniform quantiser with ``M = 2**(bits - 1) - 1`` steps per side, so 0 is
exact. A coordinate ``x`` (clamped to ``[-1, 1]``) has integer level
``q = round(x * M)`` in ``[-M, M]``; a jacobian entry ``j`` (clamped to
``[-4, 4]``) has ``q = round(j * M / 4)``. Key frames send ``q + M`` as an unsigned
``bits``-bit code (code ``2**bits - 1`` is invalid). The reconstruction error of an
in-range input is at most half a step plus float32 rounding (one float32 ulp at the
range limit): ``0.5 / M + 1.2e-7`` for coordinates (2.444e-4 at the default 12 bits,
i.e. 1.22e-4 of the ``[-1, 1]`` range) and ``2 / M + 4.8e-7`` for jacobians (3.91e-3
at the default 10 bits). See :func:`value_error_bound` and :func:`jacobian_error_bound`.

Delta coding
------------

A delta frame carries the residual ``r = q - q_key`` of every level against the
*last key frame* (not the previous frame), so it stays decodable whatever else was
lost. The residual of a delta frame reconstructs exactly the levels a key frame would
have sent: key and delta frames have the same error bound. The sender emits a key
frame every ``keyframe_interval`` frames, on :meth:`KeypointEncoder.force_keyframe`
(a receiver joined), and whenever a delta frame would not be smaller than a key frame.

Each residual field (values; jacobians) is coded as zigzag integers ``u`` in one of two
ways, whichever is shorter for that packet, as its coding byte says: bit 7 = mode,
bits 5-6 zero, bits 0-4 = parameter ``p``.

* mode 0, fixed width: every ``u`` as ``p`` bits, ``p`` in 0..17 (``p = 0``: all
  residuals are zero and take no bits).
* mode 1, Rice: ``u >> p`` one-bits, a zero bit, then the ``p`` low bits of ``u``,
  ``p`` in 0..16. Wins when a few keypoints move much more than the others.

Raw DEFLATE of the packet body was measured (``benchmarks/keypoint_stream.py``): for
K=10 it is 3-5 bytes longer on average and shorter for fewer than 1 packet in 1000 (a
delta bitstream is ~20 bytes of nearly incompressible bits), so version 1 has no
compression flag.

Typical sizes (K=10, 12-bit values, key frame every 30, CRC on, smooth head motion,
measured by ``benchmarks/keypoint_stream.py``): key frame 50 B, delta frame ~36 B,
mean 36-38 B per packet (8.7-9.1 kbps of payload at 30 fps); with 10-bit jacobians
100 B / ~56-60 B, mean 58-62 B (13.9-14.8 kbps). Without the CRC, 4 B less each.

Receiver policy
---------------

:class:`KeypointDecoder` never raises: a packet that is malformed, corrupt, too large,
for another ``K``, a delta whose key frame it does not hold, a duplicate, or older than
the newest frame it returned is dropped (``None``), counted in
:attr:`KeypointDecoder.stats` and logged at debug level. A renderer wants only the
newest pose, so late (reordered) packets are dropped as ``stale`` rather than returned
out of order. A key frame more than :data:`REORDER_WINDOW` packets behind the newest
is taken as a restarted sender: the decoder resets and resynchronises on it. Only the
newest few key frames are kept (default 4), so memory is bounded.
"""
from __future__ import annotations

import logging
import struct
import time
import zlib
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DROP_REASONS",
    "JACOBIAN_RANGE",
    "MAX_BITS",
    "MAX_NUM_KP",
    "MIN_BITS",
    "REORDER_WINDOW",
    "VERSION",
    "DecodedKeypoints",
    "DecoderStats",
    "KeypointDecoder",
    "KeypointEncoder",
    "jacobian_error_bound",
    "value_error_bound",
]

log = logging.getLogger(__name__)

VERSION = 1
"""Format version written in the low nibble of byte 0."""
MAX_NUM_KP = 64
"""Largest number of keypoints ``K`` a packet may carry."""
JACOBIAN_RANGE = 4.0
"""Jacobian entries are clamped to ``[-JACOBIAN_RANGE, JACOBIAN_RANGE]`` before quantisation."""
REORDER_WINDOW = 1024
"""Packets up to this many sequence numbers behind the newest are stale; a key frame
further behind is taken as a restarted sender."""

MIN_BITS, MAX_BITS = 2, 16
"""Range of ``value_bits`` and ``jacobian_bits``."""
_MAGIC = 0xB
_FIRST_BYTE = (_MAGIC << 4) | VERSION
_FLAG_KEY, _FLAG_JACOBIAN, _FLAG_CRC = 0x01, 0x02, 0x04
_KNOWN_FLAGS = _FLAG_KEY | _FLAG_JACOBIAN | _FLAG_CRC
_HEADER = struct.Struct(">BBBI")  # first byte, flags, K, seq
_KEY_BODY = struct.Struct(">QB")  # timestamp_us, quantiser
_CRC = struct.Struct(">I")
_U8 = struct.Struct(">B")
_SEQ_MOD = 1 << 32
_TS_MOD = 1 << 64
_MODE_RICE = 0x80
_MAX_FIXED_WIDTH = MAX_BITS + 1  # |r| <= 2M < 2**16 -> zigzag < 2**17
_MAX_RICE_K = MAX_BITS
_DUPLICATE_HISTORY = 64  # decoded sequence numbers remembered to report duplicates
_RICE_KS = np.arange(_MAX_RICE_K + 1, dtype=np.int64)

DROP_REASONS: tuple[str, ...] = (
    "bad_type",          # not bytes, bytearray or memoryview
    "oversize",          # longer than max_packet_bytes
    "truncated",         # ends before a field it announces
    "bad_magic",         # byte 0 high nibble is not 0xB
    "bad_version",       # byte 0 low nibble is not a supported version
    "bad_flags",         # a reserved flag bit is set
    "bad_crc",           # CRC trailer does not match
    "bad_num_kp",        # K outside 1..64, or not the decoder's num_kp
    "bad_quantiser",     # value/jacobian bits outside 2..16
    "malformed",         # bad varint/coding byte/code/padding, trailing bytes, level out of range
    "duplicate",         # this sequence number was already decoded
    "stale",             # older than the newest decoded frame
    "unknown_keyframe",  # delta frame whose key frame the decoder does not hold
    "mismatch",          # delta frame disagrees with its key frame (K, jacobians)
    "internal_error",    # a bug: should never be counted
)
"""Reasons a packet is dropped, the keys of :attr:`DecoderStats.dropped`."""


def _levels(bits: int) -> int:
    """Steps per side ``M`` of a ``bits``-bit mid-tread quantiser."""
    return (1 << (bits - 1)) - 1


def value_error_bound(bits: int = 12) -> float:
    """Largest reconstruction error of an in-range coordinate quantised with ``bits`` bits."""
    return 0.5 / _levels(bits) + float(np.spacing(np.float32(1.0)))


def jacobian_error_bound(bits: int = 10) -> float:
    """Largest reconstruction error of an in-range jacobian entry quantised with ``bits`` bits."""
    return 0.5 * JACOBIAN_RANGE / _levels(bits) + float(np.spacing(np.float32(JACOBIAN_RANGE)))


def _quantise(x: np.ndarray, limit: float, bits: int) -> np.ndarray:
    """Float array -> int64 levels in ``[-M, M]`` (same shape), clamping to ``[-limit, limit]``."""
    m = _levels(bits)
    return np.rint(np.clip(x, -limit, limit) * (m / limit)).astype(np.int64)


def _dequantise(q: np.ndarray, limit: float, bits: int) -> np.ndarray:
    """int64 levels -> float32 array (same shape)."""
    return (q * (limit / _levels(bits))).astype(np.float32)


# --------------------------------------------------------------------------- bit coding


def _zigzag(r: np.ndarray) -> np.ndarray:
    """Signed int64 array -> non-negative int64 array (0, -1, 1, -2 -> 0, 1, 2, 3)."""
    return np.where(r >= 0, 2 * r, -2 * r - 1)


def _unzigzag(u: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_zigzag`."""
    return np.where(u & 1, -(u >> 1) - 1, u >> 1)


def _varint(n: int) -> bytes:
    """Unsigned LEB128 encoding of ``n >= 0``."""
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _zigzag_int(n: int) -> int:
    """Zigzag of one Python int."""
    return 2 * n if n >= 0 else -2 * n - 1


def _msb_weights(width: int) -> np.ndarray:
    """(width,) int64 powers of two, most significant first."""
    return np.left_shift(1, np.arange(width - 1, -1, -1, dtype=np.int64))


def _fixed_bits(u: np.ndarray, width: int) -> np.ndarray:
    """Flat non-negative int64 (n,) -> bits uint8 (n * width,), ``width`` bits per element."""
    return ((u[:, None] & _msb_weights(width)) != 0).astype(np.uint8).ravel()


def _rice_bits(u: np.ndarray, k: int) -> np.ndarray:
    """Flat non-negative int64 (n,) -> Rice code bits uint8: ``u >> k`` ones, a zero, ``k`` low bits."""
    ones = u >> k
    lengths = ones + 1 + k
    starts = np.cumsum(lengths) - lengths
    offset = np.arange(int(lengths.sum())) - np.repeat(starts, lengths)
    bits = (offset < np.repeat(ones, lengths)).astype(np.uint8)
    if k:
        bits[(starts + ones + 1)[:, None] + np.arange(k)] = (u[:, None] & _msb_weights(k)) != 0
    return bits


def _code_residuals(r: np.ndarray) -> tuple[int, np.ndarray]:
    """Residual int64 array (any shape) -> (coding byte, bits uint8), the shorter of fixed/Rice."""
    u = _zigzag(r.ravel())
    width = int(u.max()).bit_length()
    rice_cost = (u[None, :] >> _RICE_KS[:, None]).sum(axis=1) + u.size * (1 + _RICE_KS)
    k = int(np.argmin(rice_cost))
    if rice_cost[k] < u.size * width:
        return _MODE_RICE | k, _rice_bits(u, k)
    return width, _fixed_bits(u, width)


def _bits_to_bytes(*parts: np.ndarray) -> bytes:
    """Bit arrays (uint8 0/1) -> bytes, MSB first, zero-padded to a whole byte."""
    return np.packbits(np.concatenate(parts)).tobytes()


class _Drop(Exception):
    """Internal: the packet is dropped for ``reason`` (one of :data:`DROP_REASONS`)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


class _ByteReader:
    """Cursor over a packet body that raises :class:`_Drop` instead of reading past the end."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def unpack(self, fmt: struct.Struct) -> tuple[int, ...]:
        end = self.pos + fmt.size
        if end > len(self.data):
            raise _Drop("truncated", f"needs {end} bytes, has {len(self.data)}")
        values = fmt.unpack_from(self.data, self.pos)
        self.pos = end
        return values

    def byte(self) -> int:
        return self.unpack(_U8)[0]

    def varint(self, max_bytes: int) -> int:
        value = shift = 0
        for i in range(max_bytes):
            b = self.byte()
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if b == 0 and i > 0:
                    raise _Drop("malformed", "non-canonical varint")
                return value
        raise _Drop("malformed", f"varint longer than {max_bytes} bytes")

    def rest(self) -> bytes:
        return self.data[self.pos:]


class _BitReader:
    """Reads fixed-width and Rice codes from a zero-padded MSB-first bitstream."""

    def __init__(self, data: bytes) -> None:
        self.bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8)).astype(np.int64)
        self.pos = 0

    def fixed(self, n: int, width: int) -> np.ndarray:
        """Read ``n`` codes of ``width`` bits -> int64 (n,)."""
        end = self.pos + n * width
        if end > len(self.bits):
            raise _Drop("truncated", "bitstream ends inside a fixed-width field")
        codes = self.bits[self.pos:end].reshape(n, width) @ _msb_weights(width)
        self.pos = end
        return codes

    def rice(self, n: int, k: int, max_value: int) -> np.ndarray:
        """Read ``n`` Rice codes with parameter ``k``, each at most ``max_value`` -> int64 (n,).

        Vectorised: ``nxt[i]`` is where a code starting at bit ``i`` ends, and the starts of
        the ``n`` codes are found by pointer doubling (log2(n) numpy steps, no Python loop
        over codes).
        """
        bits = self.bits[self.pos:]
        size = len(bits)
        # next_zero[i]: first zero bit at or after i (size if none); index size is a sentinel.
        zero_at = np.where(bits == 0, np.arange(size), size)
        next_zero = np.append(np.minimum.accumulate(zero_at[::-1])[::-1], size)
        # nxt[i]: start of the code after one starting at i; size + 1 marks "ran off the end".
        nxt = np.append(np.minimum(next_zero + 1 + k, size + 1), size + 1)
        starts, jump = np.zeros(1, dtype=np.int64), nxt
        while len(starts) < n:
            starts = np.concatenate([starts, jump[starts]])
            jump = jump[jump]
        starts = starts[:n]
        if starts[-1] > size or next_zero[starts[-1]] + 1 + k > size:
            raise _Drop("truncated", "bitstream ends inside a Rice code")
        stops = next_zero[starts]
        u = (stops - starts) << k
        if k:
            u |= bits[(stops + 1)[:, None] + np.arange(k)] @ _msb_weights(k)
        if (u > max_value).any():
            raise _Drop("malformed", "Rice code out of range")
        self.pos += int(stops[-1]) + 1 + k
        return u

    def residuals(self, coding: int, n: int, max_level: int) -> np.ndarray:
        """Read ``n`` residuals coded as ``coding`` says -> signed int64 (n,)."""
        if coding & 0x60:
            raise _Drop("malformed", f"reserved bits in coding byte {coding:#04x}")
        param = coding & 0x1F
        if coding & _MODE_RICE:
            if param > _MAX_RICE_K:
                raise _Drop("malformed", f"Rice parameter {param} > {_MAX_RICE_K}")
            u = self.rice(n, param, 4 * max_level)  # zigzag(2M) = 4M
        else:
            if param > _MAX_FIXED_WIDTH:
                raise _Drop("malformed", f"fixed width {param} > {_MAX_FIXED_WIDTH}")
            u = self.fixed(n, param)
        return _unzigzag(u)

    def finish(self) -> None:
        """Require that only the zero padding of the last byte is left."""
        tail = self.bits[self.pos:]
        if len(tail) >= 8 or tail.any():
            raise _Drop("malformed", f"{len(tail)} trailing bits after the bitstream")


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class DecodedKeypoints:
    """One decoded frame.

    Attributes:
        seq: uint32 sequence number the sender assigned.
        timestamp: sender capture time in seconds (microsecond resolution).
        keyframe: True if the packet was a key frame.
        value: (K, 2) float32 keypoints in [-1, 1], read-only.
        jacobian: (K, 2, 2) float32 jacobians in [-4, 4], read-only, or None.
    """

    seq: int
    timestamp: float
    keyframe: bool
    value: np.ndarray
    jacobian: np.ndarray | None


@dataclass
class DecoderStats:
    """Counters of a :class:`KeypointDecoder`.

    Attributes:
        decoded: packets returned as frames.
        keyframes: of those, key frames.
        resyncs: times the decoder reset on a key frame from a restarted sender.
        dropped: packets dropped, by reason (every key of :data:`DROP_REASONS`).
    """

    decoded: int = 0
    keyframes: int = 0
    resyncs: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))

    @property
    def total_dropped(self) -> int:
        """Packets dropped for any reason."""
        return sum(self.dropped.values())


@dataclass(frozen=True)
class _KeyFrame:
    """Reference state shared by encoder and decoder: levels of one key frame."""

    seq: int
    timestamp_us: int
    value_bits: int
    jacobian_bits: int
    value_q: np.ndarray  # (K, 2) int64 levels
    jacobian_q: np.ndarray | None  # (K, 2, 2) int64 levels


def _check_bits(name: str, bits: int) -> None:
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"{name} must be in {MIN_BITS}..{MAX_BITS}, got {bits}.")


def _seq_after(a: int, b: int) -> bool:
    """True if sequence number ``a`` is newer than ``b`` (serial number arithmetic)."""
    return 0 < (a - b) % _SEQ_MOD < _SEQ_MOD // 2


# --------------------------------------------------------------------------- encoder


class KeypointEncoder:
    """Turns per-frame keypoints into version-1 packets (see the module docstring).

    Args:
        num_kp: number of keypoints ``K`` per frame, 1..64.
        with_jacobian: whether every frame carries (K, 2, 2) jacobians.
        keyframe_interval: a key frame at least every this many frames (1 = all key frames).
        value_bits: quantiser bits per coordinate, 2..16.
        jacobian_bits: quantiser bits per jacobian entry, 2..16.
        crc: append a CRC-32 trailer (4 bytes) so corruption is detected.
        first_seq: sequence number of the first packet (uint32); a random one per session
            lets a receiver tell a restarted sender from late packets.
    """

    def __init__(
        self,
        num_kp: int = 10,
        with_jacobian: bool = False,
        keyframe_interval: int = 30,
        value_bits: int = 12,
        jacobian_bits: int = 10,
        crc: bool = True,
        first_seq: int = 0,
    ) -> None:
        if not 1 <= num_kp <= MAX_NUM_KP:
            raise ValueError(f"num_kp must be in 1..{MAX_NUM_KP}, got {num_kp}.")
        if keyframe_interval < 1:
            raise ValueError(f"keyframe_interval must be at least 1, got {keyframe_interval}.")
        _check_bits("value_bits", value_bits)
        _check_bits("jacobian_bits", jacobian_bits)
        self.num_kp = num_kp
        self.with_jacobian = with_jacobian
        self.keyframe_interval = keyframe_interval
        self.value_bits = value_bits
        self.jacobian_bits = jacobian_bits
        self.crc = crc
        self._seq = first_seq % _SEQ_MOD
        self._key: _KeyFrame | None = None
        self._frames_since_key = 0
        self._force_key = True

    @property
    def next_seq(self) -> int:
        """Sequence number the next packet will carry."""
        return self._seq

    def force_keyframe(self) -> None:
        """Make the next packet a key frame (call when a receiver joins or reports loss)."""
        self._force_key = True

    def encode(
        self, value: np.ndarray, jacobian: np.ndarray | None = None, timestamp: float | None = None
    ) -> bytes:
        """Encode one frame.

        Args:
            value: (K, 2) keypoints in [-1, 1]; values outside are clamped.
            jacobian: (K, 2, 2) jacobians, required iff ``with_jacobian``; clamped to [-4, 4].
            timestamp: capture time in seconds (>= 0); defaults to ``time.monotonic()``.

        Returns:
            The packet bytes (key frame or delta frame).
        """
        v = self._as_array("value", value, (self.num_kp, 2))
        if self.with_jacobian:
            if jacobian is None:
                raise ValueError("jacobian is required because the encoder has with_jacobian=True.")
            j = self._as_array("jacobian", jacobian, (self.num_kp, 2, 2))
            jq = _quantise(j, JACOBIAN_RANGE, self.jacobian_bits)
        elif jacobian is not None:
            raise ValueError("jacobian was given but the encoder has with_jacobian=False.")
        else:
            jq = None
        ts_us = self._timestamp_us(timestamp)
        vq = _quantise(v, 1.0, self.value_bits)

        packet = None
        if self._key is not None and not self._force_key and self._frames_since_key < self.keyframe_interval:
            packet = self._delta_packet(self._key, ts_us, vq, jq)
            if len(packet) >= self._keyframe_size():
                packet = None  # motion too large for a delta to pay off: refresh the key frame
        if packet is None:
            self._key = _KeyFrame(self._seq, ts_us, self.value_bits, self.jacobian_bits, vq, jq)
            packet = self._key_packet(self._key)
            self._frames_since_key = 0
            self._force_key = False
        self._frames_since_key += 1
        self._seq = (self._seq + 1) % _SEQ_MOD
        return packet

    # -- helpers

    @staticmethod
    def _as_array(name: str, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Validate a user array -> float64 copy of ``shape``."""
        arr = np.asarray(x)
        if arr.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {arr.shape}.")
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ValueError(f"{name} must be a real numeric array, got dtype {arr.dtype}.")
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} must be finite, got NaN or infinity.")
        return arr

    @staticmethod
    def _timestamp_us(timestamp: float | None) -> int:
        t = time.monotonic() if timestamp is None else timestamp
        try:
            us = round(float(t) * 1e6)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"timestamp must be a finite number of seconds >= 0, got {timestamp!r}.") from None
        if not 0 <= us < _TS_MOD:
            raise ValueError(f"timestamp must be a finite number of seconds >= 0, got {timestamp!r}.")
        return us

    def _flags(self, key: bool) -> int:
        return (
            (_FLAG_KEY if key else 0)
            | (_FLAG_JACOBIAN if self.with_jacobian else 0)
            | (_FLAG_CRC if self.crc else 0)
        )

    def _finish(self, key: bool, body: bytes) -> bytes:
        packet = _HEADER.pack(_FIRST_BYTE, self._flags(key), self.num_kp, self._seq) + body
        if self.crc:
            packet += _CRC.pack(zlib.crc32(packet))
        return packet

    def _keyframe_size(self) -> int:
        bits = 2 * self.num_kp * self.value_bits
        if self.with_jacobian:
            bits += 4 * self.num_kp * self.jacobian_bits
        return _HEADER.size + _KEY_BODY.size + (bits + 7) // 8 + (_CRC.size if self.crc else 0)

    def _key_packet(self, key: _KeyFrame) -> bytes:
        quant = (key.value_bits - 1) << 4 | (key.jacobian_bits - 1)
        parts = [_fixed_bits((key.value_q + _levels(key.value_bits)).ravel(), key.value_bits)]
        if key.jacobian_q is not None:
            parts.append(_fixed_bits((key.jacobian_q + _levels(key.jacobian_bits)).ravel(), key.jacobian_bits))
        return self._finish(True, _KEY_BODY.pack(key.timestamp_us, quant) + _bits_to_bytes(*parts))

    def _delta_packet(self, key: _KeyFrame, ts_us: int, vq: np.ndarray, jq: np.ndarray | None) -> bytes:
        head = bytearray(_varint((self._seq - key.seq) % _SEQ_MOD))
        head += _varint(_zigzag_int(ts_us - key.timestamp_us))
        coding, bits = _code_residuals(vq - key.value_q)
        head.append(coding)
        parts = [bits]
        if jq is not None and key.jacobian_q is not None:
            coding, bits = _code_residuals(jq - key.jacobian_q)
            head.append(coding)
            parts.append(bits)
        return self._finish(False, bytes(head) + _bits_to_bytes(*parts))


# --------------------------------------------------------------------------- decoder


class KeypointDecoder:
    """Turns packets back into frames; never raises (see "Receiver policy" above).

    Args:
        num_kp: expected ``K``; packets with another ``K`` are dropped. None accepts any.
        max_packet_bytes: longer packets are dropped unread. The largest valid packet
            (K=64, jacobians, 16 bits, CRC) is 788 bytes.
        max_keyframes: how many of the newest key frames to keep for delta frames.
    """

    def __init__(self, num_kp: int | None = None, max_packet_bytes: int = 1024, max_keyframes: int = 4) -> None:
        if num_kp is not None and not 1 <= num_kp <= MAX_NUM_KP:
            raise ValueError(f"num_kp must be None or in 1..{MAX_NUM_KP}, got {num_kp}.")
        if max_packet_bytes < _HEADER.size:
            raise ValueError(f"max_packet_bytes must be at least {_HEADER.size}, got {max_packet_bytes}.")
        if max_keyframes < 1:
            raise ValueError(f"max_keyframes must be at least 1, got {max_keyframes}.")
        self.num_kp = num_kp
        self.max_packet_bytes = max_packet_bytes
        self.max_keyframes = max_keyframes
        self.stats = DecoderStats()
        self._keyframes: OrderedDict[int, _KeyFrame] = OrderedDict()
        self._recent: deque[int] = deque(maxlen=_DUPLICATE_HISTORY)
        self._newest: int | None = None

    @property
    def newest_seq(self) -> int | None:
        """Sequence number of the newest frame returned, or None before the first."""
        return self._newest

    @property
    def keyframe_count(self) -> int:
        """Key frames currently held (at most ``max_keyframes``)."""
        return len(self._keyframes)

    def reset(self) -> None:
        """Forget all key frames and sequence history (the stats are kept)."""
        self._keyframes.clear()
        self._recent.clear()
        self._newest = None

    def decode(self, data: bytes) -> DecodedKeypoints | None:
        """Decode one packet -> the frame, or None if it is dropped (reason in :attr:`stats`)."""
        try:
            return self._decode(data)
        except _Drop as drop:
            self.stats.dropped[drop.reason] += 1
            log.debug("dropped keypoint packet: %s %s", drop.reason, drop.detail)
        except Exception:  # noqa: BLE001 - the decoder must never raise on input
            self.stats.dropped["internal_error"] += 1
            log.debug("dropped keypoint packet: internal_error", exc_info=True)
        return None

    # -- helpers

    def _decode(self, data: bytes) -> DecodedKeypoints:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise _Drop("bad_type", type(data).__name__)
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        if size > self.max_packet_bytes:
            raise _Drop("oversize", f"{size} > {self.max_packet_bytes} bytes")
        data = bytes(data)
        reader = _ByteReader(data, 0)
        first, flags, num_kp, seq = reader.unpack(_HEADER)
        if first >> 4 != _MAGIC:
            raise _Drop("bad_magic", f"{first:#04x}")
        if first & 0x0F != VERSION:
            raise _Drop("bad_version", f"{first & 0x0F}")
        if flags & ~_KNOWN_FLAGS:
            raise _Drop("bad_flags", f"{flags:#04x}")
        if flags & _FLAG_CRC:
            if len(data) < _HEADER.size + _CRC.size:
                raise _Drop("truncated", "no room for the CRC trailer")
            (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
            data = data[:-_CRC.size]
            if zlib.crc32(data) != crc:
                raise _Drop("bad_crc", f"seq {seq}")
            reader.data = data
        if not 1 <= num_kp <= MAX_NUM_KP or (self.num_kp is not None and num_kp != self.num_kp):
            raise _Drop("bad_num_kp", f"K={num_kp}")
        has_jac = bool(flags & _FLAG_JACOBIAN)
        if flags & _FLAG_KEY:
            return self._decode_key(reader, seq, num_kp, has_jac)
        return self._decode_delta(reader, seq, num_kp, has_jac)

    def _decode_key(self, reader: _ByteReader, seq: int, num_kp: int, has_jac: bool) -> DecodedKeypoints:
        ts_us, quant = reader.unpack(_KEY_BODY)
        vbits, jbits = (quant >> 4) + 1, (quant & 0x0F) + 1
        if vbits < MIN_BITS or jbits < MIN_BITS:
            raise _Drop("bad_quantiser", f"value_bits={vbits} jacobian_bits={jbits}")
        bits = _BitReader(reader.rest())
        vq = self._key_levels(bits, 2 * num_kp, vbits).reshape(num_kp, 2)
        jq = self._key_levels(bits, 4 * num_kp, jbits).reshape(num_kp, 2, 2) if has_jac else None
        bits.finish()
        resync = self._check_order(seq, key=True)
        key = _KeyFrame(seq, ts_us, vbits, jbits, vq, jq)
        if resync:
            self.stats.resyncs += 1
            self.reset()
        self._keyframes[seq] = key
        while len(self._keyframes) > self.max_keyframes:
            self._keyframes.popitem(last=False)
        self.stats.keyframes += 1
        return self._accept(key, seq, ts_us, vq, jq, keyframe=True)

    @staticmethod
    def _key_levels(bits: _BitReader, n: int, nbits: int) -> np.ndarray:
        codes = bits.fixed(n, nbits)
        m = _levels(nbits)
        if (codes > 2 * m).any():
            raise _Drop("malformed", "invalid key frame code")
        return codes - m

    def _decode_delta(self, reader: _ByteReader, seq: int, num_kp: int, has_jac: bool) -> DecodedKeypoints:
        distance = reader.varint(5)
        if not 0 < distance < _SEQ_MOD:
            raise _Drop("malformed", f"key distance {distance}")
        ts_delta_z = reader.varint(10)
        ts_delta = (ts_delta_z >> 1) if not ts_delta_z & 1 else -(ts_delta_z >> 1) - 1
        vcoding = reader.byte()
        jcoding = reader.byte() if has_jac else 0
        bits = _BitReader(reader.rest())
        # Residual magnitudes are checked against the key frame's quantiser below;
        # here they are only bounded by the largest possible quantiser.
        vr = bits.residuals(vcoding, 2 * num_kp, _levels(MAX_BITS)).reshape(num_kp, 2)
        jr = bits.residuals(jcoding, 4 * num_kp, _levels(MAX_BITS)).reshape(num_kp, 2, 2) if has_jac else None
        bits.finish()
        self._check_order(seq, key=False)
        key_seq = (seq - distance) % _SEQ_MOD
        key = self._keyframes.get(key_seq)
        if key is None:
            raise _Drop("unknown_keyframe", f"seq {seq} needs key frame {key_seq}")
        if key.value_q.shape[0] != num_kp or (key.jacobian_q is None) == has_jac:
            raise _Drop("mismatch", f"seq {seq} does not match key frame {key_seq}")
        vq = self._delta_levels(key.value_q, vr, key.value_bits)
        jq = None
        if jr is not None and key.jacobian_q is not None:
            jq = self._delta_levels(key.jacobian_q, jr, key.jacobian_bits)
        ts_us = key.timestamp_us + ts_delta
        if not 0 <= ts_us < _TS_MOD:
            raise _Drop("malformed", f"timestamp out of range in seq {seq}")
        return self._accept(key, seq, ts_us, vq, jq, keyframe=False)

    @staticmethod
    def _delta_levels(key_q: np.ndarray, residual: np.ndarray, nbits: int) -> np.ndarray:
        q = key_q + residual
        m = _levels(nbits)
        if (np.abs(q) > m).any():
            raise _Drop("malformed", "delta level out of range")
        return q

    def _check_order(self, seq: int, key: bool) -> bool:
        """Drop duplicates and stale packets; True if a key frame should resynchronise."""
        if seq in self._recent:
            raise _Drop("duplicate", f"seq {seq}")
        if self._newest is None or _seq_after(seq, self._newest):
            return False
        behind = (self._newest - seq) % _SEQ_MOD
        if key and behind > REORDER_WINDOW:
            return True
        raise _Drop("stale", f"seq {seq} is {behind} behind {self._newest}")

    def _accept(
        self, key: _KeyFrame, seq: int, ts_us: int, vq: np.ndarray, jq: np.ndarray | None, keyframe: bool
    ) -> DecodedKeypoints:
        value = _dequantise(vq, 1.0, key.value_bits)
        value.flags.writeable = False
        jacobian = None
        if jq is not None:
            jacobian = _dequantise(jq, JACOBIAN_RANGE, key.jacobian_bits)
            jacobian.flags.writeable = False
        self._newest = seq
        self._recent.append(seq)
        self.stats.decoded += 1
        return DecodedKeypoints(seq, ts_us / 1e6, keyframe, value, jacobian)

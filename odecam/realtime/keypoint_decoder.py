"""Keypoint packet decoder: version-1 packets -> frames, refusing hostile packets cleanly.

:class:`KeypointDecoder` never raises on input: every malformed, corrupt, oversize, duplicate or
stale packet is dropped, counted by reason in :class:`DecoderStats` and logged at debug level
(the policy is "Receiver policy" in :mod:`odecam.realtime.keypoint_packet`). A decoded frame is a
:class:`DecodedKeypoints`.
"""
from __future__ import annotations

import logging
import zlib
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

from odecam.realtime.keypoint_codec import _BitReader, _ByteReader
from odecam.realtime.keypoint_format import (
    _CRC,
    _FLAG_CRC,
    _FLAG_JACOBIAN,
    _FLAG_KEY,
    _HEADER,
    _KEY_BODY,
    _KNOWN_FLAGS,
    _MAGIC,
    _SEQ_MOD,
    _TS_MOD,
    DROP_REASONS,
    JACOBIAN_RANGE,
    MAX_BITS,
    MAX_NUM_KP,
    MIN_BITS,
    REORDER_WINDOW,
    VERSION,
    _dequantise,
    _Drop,
    _KeyFrame,
    _levels,
    _seq_after,
)

__all__ = ["DecodedKeypoints", "DecoderStats", "KeypointDecoder"]

# The logger keeps the name it had before the decoder moved out of keypoint_packet.py, so
# logging configured for "odecam.realtime.keypoint_packet" still sees the dropped packets.
log = logging.getLogger("odecam.realtime.keypoint_packet")

_DUPLICATE_HISTORY = 64  # decoded sequence numbers remembered to report duplicates


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


class KeypointDecoder:
    """Turns packets back into frames; never raises (see the module docstring).

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

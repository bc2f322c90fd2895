"""Keypoint packet format, version 1: the wire constants, the quantiser and the drop reasons.

Shared by :mod:`~odecam.realtime.keypoint_encoder` and :mod:`~odecam.realtime.keypoint_decoder`;
the byte layout these constants spell out is documented in :mod:`odecam.realtime.keypoint_packet`.
Everything else a packet needs, the bit-level coding of its body, is in
:mod:`~odecam.realtime.keypoint_codec`.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DROP_REASONS",
    "JACOBIAN_RANGE",
    "MAX_BITS",
    "MAX_NUM_KP",
    "MIN_BITS",
    "REORDER_WINDOW",
    "VERSION",
    "jacobian_error_bound",
    "value_error_bound",
]

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
_SEQ_MOD = 1 << 32
_TS_MOD = 1 << 64

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
"""Reasons a packet is dropped, the keys of :attr:`odecam.realtime.keypoint_decoder.DecoderStats.dropped`."""


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


class _Drop(Exception):
    """Internal: the packet is dropped for ``reason`` (one of :data:`DROP_REASONS`)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


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

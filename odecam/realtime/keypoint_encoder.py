"""Keypoint packet encoder: per-frame keypoints (and jacobians) -> version-1 packets.

The format, and when a key frame is sent instead of a delta frame, are specified in
:mod:`odecam.realtime.keypoint_packet`; the receiving side is
:class:`~odecam.realtime.keypoint_decoder.KeypointDecoder`.
"""
from __future__ import annotations

import time
import zlib

import numpy as np

from odecam.realtime.keypoint_codec import _bits_to_bytes, _code_residuals, _fixed_bits, _varint, _zigzag_int
from odecam.realtime.keypoint_format import (
    _CRC,
    _FIRST_BYTE,
    _FLAG_CRC,
    _FLAG_JACOBIAN,
    _FLAG_KEY,
    _HEADER,
    _KEY_BODY,
    _SEQ_MOD,
    _TS_MOD,
    JACOBIAN_RANGE,
    MAX_NUM_KP,
    _check_bits,
    _KeyFrame,
    _levels,
    _quantise,
)

__all__ = ["KeypointEncoder"]


class KeypointEncoder:
    """Turns per-frame keypoints into version-1 packets (see :mod:`odecam.realtime.keypoint_packet`).

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

"""Bit-level coding of a keypoint packet body: varint, zigzag, fixed-width and Rice codes.

The writers turn int64 arrays into MSB-first bit arrays (uint8 0/1) and bytes; the readers
(:class:`_ByteReader` for the byte fields, :class:`_BitReader` for the bitstream) raise
:class:`~odecam.realtime.keypoint_format._Drop` instead of reading past the end or accepting a
non-canonical or out-of-range code, so a hostile packet is refused, never half-read. The
codes themselves are specified in :mod:`odecam.realtime.keypoint_packet` ("Byte layout",
"Delta coding").
"""
from __future__ import annotations

import struct

import numpy as np

from odecam.realtime.keypoint_format import MAX_BITS, _Drop

_U8 = struct.Struct(">B")
_MODE_RICE = 0x80
_MAX_FIXED_WIDTH = MAX_BITS + 1  # |r| <= 2M < 2**16 -> zigzag < 2**17
_MAX_RICE_K = MAX_BITS
_RICE_KS = np.arange(_MAX_RICE_K + 1, dtype=np.int64)


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

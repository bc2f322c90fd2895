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

Modules
-------

This module is the specification and the public import path; the code is split by role:
:mod:`~odecam.realtime.keypoint_format` (wire constants, header structs, quantiser, drop
reasons), :mod:`~odecam.realtime.keypoint_codec` (varint, zigzag, fixed-width and Rice
codes, the byte and bit readers), :mod:`~odecam.realtime.keypoint_encoder`
(:class:`KeypointEncoder`) and :mod:`~odecam.realtime.keypoint_decoder`
(:class:`KeypointDecoder`, :class:`DecodedKeypoints`, :class:`DecoderStats`).
"""
from __future__ import annotations

from odecam.realtime.keypoint_decoder import DecodedKeypoints, DecoderStats, KeypointDecoder
from odecam.realtime.keypoint_encoder import KeypointEncoder
from odecam.realtime.keypoint_format import (
    DROP_REASONS,
    JACOBIAN_RANGE,
    MAX_BITS,
    MAX_NUM_KP,
    MIN_BITS,
    REORDER_WINDOW,
    VERSION,
    jacobian_error_bound,
    value_error_bound,
)

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

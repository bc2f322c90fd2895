"""Bandwidth of a keypoint-only video call: bytes per packet and kbps at 30 fps.

Encodes a realistic smooth keypoint trajectory with :class:`KeypointEncoder` (K=10,
with and without jacobians), decodes it again, and reports payload bytes per packet and
the on-the-wire bitrate over a WebRTC data channel. Also reports what raw DEFLATE would
make of each packet body, the measurement behind the format's "no compression" choice.

Per-packet overhead assumed (IPv4, WebRTC data channel, one DATA chunk per packet):

=========================  ====  ===========================================================
layer                      B     note
=========================  ====  ===========================================================
SCTP DATA chunk header     16    the chunk (header + payload) is padded to 4 bytes
SCTP common header         12
DTLS 1.2 record            29    13 B header + 16 B AEAD tag (ChaCha20-Poly1305;
                                 AES-GCM adds an 8 B explicit nonce: 37 B)
UDP                        8
IPv4                       20    IPv6: 40
=========================  ====  ===========================================================

SCTP SACKs flowing back and ICE/STUN consent checks are not counted.

Usage::

    python benchmarks/keypoint_stream.py [--frames 3000] [--json benchmarks/results/keypoint_stream.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from odecam.realtime.keypoint_packet import (
    VERSION,
    KeypointDecoder,
    KeypointEncoder,
    jacobian_error_bound,
    value_error_bound,
)

FPS = 30.0
NUM_KP = 10
SCTP_DATA_CHUNK = 16
SCTP_COMMON = 12
DTLS_RECORD = 29
UDP = 8
IPV4 = 20
HEADER_BYTES = 7
CRC_BYTES = 4


def wire_bytes(payload: int) -> int:
    """Payload bytes -> IPv4 packet bytes on the wire (SCTP chunk padded to 4 bytes)."""
    chunk = SCTP_DATA_CHUNK + payload
    chunk += -chunk % 4
    return IPV4 + UDP + DTLS_RECORD + SCTP_COMMON + chunk


def head_sway(num_frames: int, num_kp: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Talking head: sinusoidal sway, roll and zoom, mouth motion, detector jitter.

    Returns values (T, K, 2) in [-1, 1] and jacobians (T, K, 2, 2), float32.
    """
    rng = np.random.default_rng(seed)
    angle = np.linspace(0.0, 2.0 * np.pi, num_kp, endpoint=False)
    base = np.stack([0.35 * np.cos(angle), 0.45 * np.sin(angle)], axis=1) + rng.normal(0.0, 0.05, (num_kp, 2))
    base_jac = np.eye(2) + rng.normal(0.0, 0.2, (num_kp, 2, 2))
    t = np.arange(num_frames) / FPS
    tx = 0.06 * np.sin(2 * np.pi * 0.23 * t) + 0.02 * np.sin(2 * np.pi * 0.71 * t + 1.0)
    ty = 0.04 * np.sin(2 * np.pi * 0.17 * t + 2.0) + 0.015 * np.sin(2 * np.pi * 0.53 * t)
    roll = np.deg2rad(6.0) * np.sin(2 * np.pi * 0.13 * t + 0.5)
    zoom = 1.0 + 0.05 * np.sin(2 * np.pi * 0.09 * t)
    values, jacs = [], []
    for i in range(num_frames):
        c, s = np.cos(roll[i]), np.sin(roll[i])
        rot = zoom[i] * np.array([[c, -s], [s, c]])
        v = base @ rot.T + [tx[i], ty[i]]
        v[:3] += 0.02 * np.sin(2 * np.pi * 1.3 * t[i] + np.arange(3))[:, None]  # mouth / jaw
        v += rng.normal(0.0, 0.001, v.shape)  # detector jitter (~2 quantisation steps)
        values.append(np.clip(v, -1.0, 1.0))
        jacs.append(rot @ base_jac + rng.normal(0.0, 0.01, base_jac.shape))
    return np.array(values, np.float32), np.array(jacs, np.float32)


def random_walk(num_frames: int, num_kp: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Independent keypoints on a random walk with momentum (busier than a head).

    Returns values (T, K, 2) in [-1, 1] and jacobians (T, K, 2, 2), float32.
    """
    rng = np.random.default_rng(seed)
    value = rng.uniform(-0.7, 0.7, (num_kp, 2))
    jac = np.eye(2) + rng.normal(0.0, 0.3, (num_kp, 2, 2))
    vel = np.zeros_like(value)
    values, jacs = [], []
    for _ in range(num_frames):
        vel = 0.9 * vel + rng.normal(0.0, 0.002, vel.shape)
        value = np.clip(value + vel, -1.0, 1.0)
        jac = jac + rng.normal(0.0, 0.01, jac.shape)
        values.append(value)
        jacs.append(jac)
    return np.array(values, np.float32), np.array(jacs, np.float32)


@dataclass
class Result:
    """One benchmark row; byte counts are per packet, means over the whole stream."""

    trajectory: str
    jacobian: bool
    keyframe_bytes: float
    delta_bytes: float
    payload_bytes: float
    deflate_payload_bytes: float
    deflate_smaller_fraction: float
    wire_bytes: float
    payload_kbps: float
    wire_kbps: float
    float32_payload_bytes: int
    max_value_error: float
    max_jacobian_error: float | None
    encode_decode_us: float


def run(trajectory: str, values: np.ndarray, jacs: np.ndarray | None) -> Result:
    """Encode and decode one stream -> its :class:`Result`."""
    enc = KeypointEncoder(NUM_KP, with_jacobian=jacs is not None)
    dec = KeypointDecoder(NUM_KP)
    key, delta, wire, deflated, deflate_smaller = [], [], [], [], 0
    max_v, max_j = 0.0, 0.0
    start = time.perf_counter()
    for i, value in enumerate(values):
        packet = enc.encode(value, None if jacs is None else jacs[i], timestamp=i / FPS)
        out = dec.decode(packet)
        assert out is not None, "lossless channel: every packet must decode"
        max_v = max(max_v, float(np.abs(out.value - value).max()))
        if jacs is not None and out.jacobian is not None:
            max_j = max(max_j, float(np.abs(out.jacobian - jacs[i]).max()))
        (key if out.keyframe else delta).append(len(packet))
        wire.append(wire_bytes(len(packet)))
        body = packet[HEADER_BYTES:-CRC_BYTES]
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        packed = compressor.compress(body) + compressor.flush()
        deflated.append(len(packet) - len(body) + len(packed))
        deflate_smaller += len(packed) < len(body)
    elapsed_us = (time.perf_counter() - start) / len(values) * 1e6
    sizes = key + delta
    payload = float(np.mean(sizes))
    per_kp = 2 + (4 if jacs is not None else 0)
    return Result(
        trajectory=trajectory,
        jacobian=jacs is not None,
        keyframe_bytes=round(float(np.mean(key)), 2),
        delta_bytes=round(float(np.mean(delta)), 2),
        payload_bytes=round(payload, 2),
        deflate_payload_bytes=round(float(np.mean(deflated)), 2),
        deflate_smaller_fraction=round(deflate_smaller / len(values), 4),
        wire_bytes=round(float(np.mean(wire)), 2),
        payload_kbps=round(payload * 8 * FPS / 1000, 2),
        wire_kbps=round(float(np.mean(wire)) * 8 * FPS / 1000, 2),
        float32_payload_bytes=4 * per_kp * NUM_KP,
        max_value_error=max_v,
        max_jacobian_error=max_j if jacs is not None else None,
        encode_decode_us=round(elapsed_us, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3000, help="frames per stream (default 3000 = 100 s)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/keypoint_stream.json"))
    args = parser.parse_args()

    streams = {"head_sway": head_sway(args.frames, NUM_KP), "random_walk": random_walk(args.frames, NUM_KP)}
    results = []
    for name, (values, jacs) in streams.items():
        for with_jacobian in (False, True):
            results.append(run(name, values, jacs if with_jacobian else None))

    print(f"K={NUM_KP}, {FPS:g} fps, key frame every 30, 12-bit values, 10-bit jacobians, CRC on")
    print(f"wire = payload + {IPV4 + UDP + DTLS_RECORD + SCTP_COMMON + SCTP_DATA_CHUNK} B "
          "(IPv4 20 + UDP 8 + DTLS 29 + SCTP 12 + DATA chunk 16, chunk padded to 4 B)")
    header = (f"{'trajectory':<12} {'jac':<4} {'key B':>6} {'delta B':>8} {'mean B':>7} {'deflate B':>10} "
              f"{'wire B':>7} {'kbps':>6} {'wire kbps':>10} {'float32 B':>10} {'us/frame':>9}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.trajectory:<12} {'yes' if r.jacobian else 'no':<4} {r.keyframe_bytes:>6.1f} {r.delta_bytes:>8.1f} "
              f"{r.payload_bytes:>7.1f} {r.deflate_payload_bytes:>10.1f} {r.wire_bytes:>7.1f} "
              f"{r.payload_kbps:>6.1f} {r.wire_kbps:>10.1f} {r.float32_payload_bytes:>10d} {r.encode_decode_us:>9.0f}")

    report = {
        "benchmark": "keypoint_stream",
        "format_version": VERSION,
        "fps": FPS,
        "frames": args.frames,
        "num_kp": NUM_KP,
        "keyframe_interval": 30,
        "value_bits": 12,
        "jacobian_bits": 10,
        "crc": True,
        "value_error_bound": value_error_bound(12),
        "jacobian_error_bound": jacobian_error_bound(10),
        "overhead_bytes": {
            "ipv4": IPV4, "udp": UDP, "dtls_record": DTLS_RECORD,
            "sctp_common_header": SCTP_COMMON, "sctp_data_chunk_header": SCTP_DATA_CHUNK,
            "note": "SCTP DATA chunk padded to a multiple of 4 bytes; SACKs and STUN not counted",
        },
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "processor": platform.machine()},
        "results": [asdict(r) for r in results],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""Tests of the keypoint packet format (odecam.realtime.keypoint_packet)."""
from __future__ import annotations

import dataclasses
import random
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest

from odecam.realtime.keypoint_packet import (
    DROP_REASONS,
    JACOBIAN_RANGE,
    REORDER_WINDOW,
    DecodedKeypoints,
    KeypointDecoder,
    KeypointEncoder,
    jacobian_error_bound,
    value_error_bound,
)

FPS = 30.0


def smooth_walk(num_frames: int, num_kp: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random walk with momentum -> values (T, K, 2) in [-1, 1] and jacobians (T, K, 2, 2), float32."""
    rng = np.random.default_rng(seed)
    value = rng.uniform(-0.7, 0.7, (num_kp, 2))
    jac = np.eye(2) + rng.normal(0.0, 0.3, (num_kp, 2, 2))
    vel = np.zeros_like(value)
    values, jacs = [], []
    for _ in range(num_frames):
        vel = 0.9 * vel + rng.normal(0.0, 0.002, vel.shape)
        value = np.clip(value + vel, -1.0, 1.0)
        jac = np.clip(jac + rng.normal(0.0, 0.01, jac.shape), -JACOBIAN_RANGE, JACOBIAN_RANGE)
        values.append(value)
        jacs.append(jac)
    return np.array(values, np.float32), np.array(jacs, np.float32)


def encode_all(enc: KeypointEncoder, values: np.ndarray, jacs: np.ndarray | None) -> list[bytes]:
    return [
        enc.encode(v, None if jacs is None else jacs[i], timestamp=i / FPS) for i, v in enumerate(values)
    ]


def max_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


# ----------------------------------------------------------------------------- round trip


def test_bound_meets_spec() -> None:
    assert value_error_bound(12) < 2.5e-4
    assert jacobian_error_bound(10) < 4e-3


@pytest.mark.parametrize("with_jacobian", [False, True])
@pytest.mark.parametrize("num_kp", [5, 10, 20])
def test_round_trip_key_and_delta(num_kp: int, with_jacobian: bool) -> None:
    values, jacs = smooth_walk(95, num_kp, seed=num_kp)
    # The first frames hit the edges of the ranges and the exact zero.
    values[0, 0] = [-1.0, 1.0]
    values[0, 1] = [0.0, 0.0]
    values[1, 0] = [1.0, -1.0]
    jacs[0, 0] = [[-JACOBIAN_RANGE, JACOBIAN_RANGE], [0.0, 1.0]]
    enc = KeypointEncoder(num_kp, with_jacobian=with_jacobian, keyframe_interval=30)
    dec = KeypointDecoder(num_kp)
    packets = encode_all(enc, values, jacs if with_jacobian else None)
    kinds = set()
    for i, packet in enumerate(packets):
        out = dec.decode(packet)
        assert out is not None
        assert out.seq == i and out.timestamp == pytest.approx(i / FPS, abs=1e-6)
        assert out.value.shape == (num_kp, 2) and out.value.dtype == np.float32
        assert max_err(out.value, values[i]) <= value_error_bound(12)
        if with_jacobian:
            assert out.jacobian is not None and out.jacobian.shape == (num_kp, 2, 2)
            assert max_err(out.jacobian, jacs[i]) <= jacobian_error_bound(10)
        else:
            assert out.jacobian is None
        kinds.add(out.keyframe)
    assert kinds == {True, False}
    assert dec.stats.decoded == len(packets) and dec.stats.keyframes == 4  # frames 0, 30, 60, 90
    assert dec.stats.total_dropped == 0


@pytest.mark.parametrize("value_bits,jacobian_bits", [(4, 4), (8, 6), (12, 10), (16, 16)])
def test_configurable_bits(value_bits: int, jacobian_bits: int) -> None:
    values, jacs = smooth_walk(40, 10, seed=value_bits)
    enc = KeypointEncoder(10, True, value_bits=value_bits, jacobian_bits=jacobian_bits)
    dec = KeypointDecoder()
    for i, packet in enumerate(encode_all(enc, values, jacs)):
        out = dec.decode(packet)
        assert out is not None and out.jacobian is not None
        assert max_err(out.value, values[i]) <= value_error_bound(value_bits)
        assert max_err(out.jacobian, jacs[i]) <= jacobian_error_bound(jacobian_bits)


def test_out_of_range_is_clamped_and_zero_is_exact() -> None:
    enc, dec = KeypointEncoder(3, True), KeypointDecoder(3)
    value = np.array([[-3.0, 2.0], [0.0, 0.0], [0.5, -0.5]], np.float32)
    jac = np.zeros((3, 2, 2), np.float32)
    jac[0] = [[9.0, -9.0], [1.0, 0.0]]
    out = dec.decode(enc.encode(value, jac, timestamp=0.0))
    assert out is not None and out.jacobian is not None
    np.testing.assert_array_equal(out.value[0], [-1.0, 1.0])
    np.testing.assert_array_equal(out.value[1], [0.0, 0.0])
    np.testing.assert_array_equal(out.jacobian[0, 0], [JACOBIAN_RANGE, -JACOBIAN_RANGE])
    assert out.jacobian[0, 1, 1] == 0.0


def test_large_motion_falls_back_to_keyframe() -> None:
    enc, dec = KeypointEncoder(20), KeypointDecoder(20)
    for i in range(6):
        value = np.full((20, 2), 0.95 if i % 2 else -0.95, np.float32)
        out = dec.decode(enc.encode(value, timestamp=i / FPS))
        assert out is not None and out.keyframe  # a 13-bit delta would not be smaller
        assert max_err(out.value, value) <= value_error_bound(12)


def test_keyframe_interval_and_force() -> None:
    values, _ = smooth_walk(25, 10)
    enc, dec = KeypointEncoder(10, keyframe_interval=10), KeypointDecoder(10)
    keys = [dec.decode(p).keyframe for p in encode_all(enc, values, None)]  # type: ignore[union-attr]
    assert [i for i, k in enumerate(keys) if k] == [0, 10, 20]
    enc.force_keyframe()
    out = dec.decode(enc.encode(values[-1], timestamp=1.0))
    assert out is not None and out.keyframe


def test_sequence_number_wraps() -> None:
    values, _ = smooth_walk(10, 10)
    enc, dec = KeypointEncoder(10, keyframe_interval=30, first_seq=2**32 - 4), KeypointDecoder(10)
    seqs = []
    for packet in encode_all(enc, values, None):
        out = dec.decode(packet)
        assert out is not None
        seqs.append(out.seq)
    assert seqs == [2**32 - 4, 2**32 - 3, 2**32 - 2, 2**32 - 1, 0, 1, 2, 3, 4, 5]
    assert dec.stats.keyframes == 1  # the deltas after the wrap still find key frame 2**32 - 4


def test_timestamps_microseconds_and_large() -> None:
    enc, dec = KeypointEncoder(2), KeypointDecoder(2)
    value = np.zeros((2, 2), np.float32)
    t0 = 1.7e9  # wall-clock seconds: needs more than 32 bits of microseconds
    for dt in (0.0, 0.033333, 0.9, -0.5):  # deltas may even go backwards
        out = dec.decode(enc.encode(value, timestamp=t0 + dt))
        assert out is not None and out.timestamp == pytest.approx(t0 + dt, abs=1e-6)


def test_bytearray_and_memoryview_input() -> None:
    enc, dec = KeypointEncoder(4), KeypointDecoder(4)
    values, _ = smooth_walk(3, 4)
    packets = encode_all(enc, values, None)
    assert dec.decode(bytearray(packets[0])) is not None
    assert dec.decode(memoryview(packets[1])) is not None
    assert dec.decode(packets[2]) is not None


def test_decoded_keypoints_are_frozen() -> None:
    out = KeypointDecoder().decode(KeypointEncoder(2).encode(np.zeros((2, 2)), timestamp=0.0))
    assert isinstance(out, DecodedKeypoints)
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.seq = 5  # type: ignore[misc]
    with pytest.raises(ValueError):
        out.value[0, 0] = 1.0


@pytest.mark.parametrize("scale", [0, 1, 5, 300, 21_000])
def test_residual_codings_round_trip(scale: int) -> None:
    from odecam.realtime.keypoint_codec import (
        _MODE_RICE,
        _BitReader,
        _bits_to_bytes,
        _code_residuals,
        _fixed_bits,
        _rice_bits,
        _zigzag,
    )

    rng = np.random.default_rng(scale)
    r = rng.integers(-scale, scale + 1, 40)
    r[3] = 3 * scale  # an outlier (|r| <= 2 * (2**15 - 1) at 16 bits)
    u = _zigzag(r)
    for k in (0, 1, 4, 9):
        if (u >> k).sum() > 20_000:
            continue
        data = _bits_to_bytes(_rice_bits(u, k), _fixed_bits(u, 17))
        reader = _BitReader(data)
        np.testing.assert_array_equal(reader.residuals(_MODE_RICE | k, 40, 2**15), r)
        np.testing.assert_array_equal(reader.residuals(17, 40, 2**15), r)
        reader.finish()
    coding, bits = _code_residuals(r)
    reader = _BitReader(_bits_to_bytes(bits))
    np.testing.assert_array_equal(reader.residuals(coding, 40, 2**15), r)
    reader.finish()


def test_rice_coding_used_for_outliers() -> None:
    value = np.zeros((10, 2), np.float32)
    enc, dec = KeypointEncoder(10, crc=False), KeypointDecoder(10)
    assert dec.decode(enc.encode(value, timestamp=0.0)) is not None
    moved = value.copy()
    moved[:, 0] += 0.002  # everything moves a little ...
    steady = enc.encode(moved, timestamp=1 / FPS)
    moved[4] = 0.5  # ... and one keypoint a lot
    outlier = enc.encode(moved, timestamp=2 / FPS)
    # header 7 + key distance 1 + timestamp delta 3 -> value coding byte at offset 11
    assert steady[11] & 0x80 == 0 and outlier[11] & 0x80
    for packet, expected in ((steady, 1), (outlier, 2)):
        out = dec.decode(packet)
        assert out is not None and not out.keyframe and out.seq == expected
    assert max_err(out.value, moved) <= value_error_bound(12)


# ----------------------------------------------------------------------------- sizes


def test_packet_sizes_k10() -> None:
    values, jacs = smooth_walk(600, 10, seed=3)
    report = {}
    for with_jacobian in (False, True):
        enc = KeypointEncoder(10, with_jacobian=with_jacobian)
        dec = KeypointDecoder(10)
        key, delta = [], []
        for packet in encode_all(enc, values, jacs if with_jacobian else None):
            out = dec.decode(packet)
            assert out is not None
            (key if out.keyframe else delta).append(len(packet))
        report[with_jacobian] = (np.mean(key), np.mean(delta), max(delta))
        print(
            f"K=10 jacobian={with_jacobian}: key frame {np.mean(key):.1f} B, "
            f"delta mean {np.mean(delta):.1f} B (max {max(delta)} B), "
            f"overall {np.mean(key + delta):.1f} B/packet"
        )
    # key frame: 7 header + 9 + ceil(20 * 12 / 8) + 4 CRC
    assert report[False][0] == 7 + 9 + 30 + 4
    assert report[False][1] < 40 and report[False][2] < 50  # well under 64 B
    assert report[True][0] == 7 + 9 + 30 + 50 + 4
    assert report[True][1] < report[True][0]


def test_crc_is_optional() -> None:
    value = np.zeros((10, 2), np.float32)
    with_crc = KeypointEncoder(10, crc=True).encode(value, timestamp=0.0)
    without = KeypointEncoder(10, crc=False).encode(value, timestamp=0.0)
    assert len(with_crc) == len(without) + 4
    assert KeypointDecoder(10).decode(without) is not None


# ----------------------------------------------------------------------------- loss, reordering, duplicates


@pytest.mark.parametrize("with_jacobian", [False, True])
def test_lossy_reordered_duplicated_channel(with_jacobian: bool) -> None:
    num_frames, num_kp = 1000, 10
    values, jacs = smooth_walk(num_frames, num_kp, seed=7)
    enc = KeypointEncoder(num_kp, with_jacobian=with_jacobian)
    packets = encode_all(enc, values, jacs if with_jacobian else None)
    rng = random.Random(11)
    arrivals: list[tuple[float, bytes]] = []
    for i, packet in enumerate(packets):
        if rng.random() < 0.2:
            continue  # lost
        arrivals.append((i + rng.uniform(0.0, 3.0), packet))  # jitter reorders neighbours
        if rng.random() < 0.1:
            arrivals.append((i + rng.uniform(0.0, 10.0), packet))  # duplicate, possibly late
    arrivals.sort(key=lambda a: a[0])

    dec = KeypointDecoder(num_kp)
    decoded_seqs = []
    for _, packet in arrivals:
        out = dec.decode(packet)
        if out is None:
            continue
        assert max_err(out.value, values[out.seq]) <= value_error_bound(12)
        if with_jacobian:
            assert out.jacobian is not None
            assert max_err(out.jacobian, jacs[out.seq]) <= jacobian_error_bound(10)
        decoded_seqs.append(out.seq)

    stats = dec.stats
    print(f"sent {num_frames}, arrived {len(arrivals)}, decoded {stats.decoded}, dropped {stats.dropped}")
    assert decoded_seqs == sorted(set(decoded_seqs))  # only ever newer frames
    assert stats.decoded + stats.total_dropped == len(arrivals)
    assert stats.decoded > 0.4 * num_frames
    for reason in ("duplicate", "stale", "unknown_keyframe"):
        assert stats.dropped[reason] > 0
    assert stats.dropped["internal_error"] == 0
    assert dec.keyframe_count <= dec.max_keyframes


def test_delta_needs_only_its_keyframe() -> None:
    values, _ = smooth_walk(30, 10)
    packets = encode_all(KeypointEncoder(10), values, None)
    dec = KeypointDecoder(10)
    assert dec.decode(packets[0]) is not None
    out = dec.decode(packets[29])  # frames 1..28 lost
    assert out is not None and not out.keyframe
    assert max_err(out.value, values[29]) <= value_error_bound(12)


def test_receiver_joining_midstream_waits_for_keyframe() -> None:
    values, _ = smooth_walk(40, 10)
    enc, dec = KeypointEncoder(10), KeypointDecoder(10)
    packets = encode_all(enc, values[:5], None)
    assert all(dec.decode(p) is None for p in packets[1:])
    assert dec.stats.dropped["unknown_keyframe"] == 4
    enc.force_keyframe()  # the receiver asked for one
    out = dec.decode(enc.encode(values[5], timestamp=5 / FPS))
    assert out is not None and out.keyframe
    assert dec.decode(enc.encode(values[6], timestamp=6 / FPS)) is not None


def test_stale_and_duplicate() -> None:
    values, _ = smooth_walk(5, 10)
    packets = encode_all(KeypointEncoder(10), values, None)
    dec = KeypointDecoder(10)
    assert dec.decode(packets[0]) is not None
    assert dec.decode(packets[2]) is not None
    assert dec.decode(packets[1]) is None and dec.stats.dropped["stale"] == 1
    assert dec.decode(packets[2]) is None and dec.stats.dropped["duplicate"] == 1
    assert dec.decode(packets[0]) is None and dec.stats.dropped["duplicate"] == 2
    assert dec.newest_seq == 2


def test_restarted_sender_resynchronises() -> None:
    values, _ = smooth_walk(10, 10)
    dec = KeypointDecoder(10)
    old = KeypointEncoder(10, first_seq=50_000)
    for i in range(3):
        assert dec.decode(old.encode(values[i], timestamp=i / FPS)) is not None
    new = KeypointEncoder(10)  # sender restarted: seq back to 0, far behind
    assert (50_002 - 0) > REORDER_WINDOW
    assert dec.decode(new.encode(values[3], timestamp=0.0)) is not None
    assert dec.decode(new.encode(values[4], timestamp=0.1)) is not None
    assert dec.stats.resyncs == 1 and dec.newest_seq == 1


def test_keyframe_store_is_bounded() -> None:
    values, _ = smooth_walk(40, 4)
    dec = KeypointDecoder(4, max_keyframes=3)
    for p in encode_all(KeypointEncoder(4, keyframe_interval=2), values, None):
        assert dec.decode(p) is not None
        assert dec.keyframe_count <= 3
    assert dec.keyframe_count == 3


# ----------------------------------------------------------------------------- rejection reasons


def _key_packet(num_kp: int = 10, crc: bool = False) -> bytes:
    return KeypointEncoder(num_kp, crc=crc).encode(np.zeros((num_kp, 2)), timestamp=0.0)


def _seal(packet: bytes, has_crc: bool = False) -> bytes:
    """Set the CRC flag and (re)write a matching CRC trailer."""
    body = bytearray(packet[:-4] if has_crc else packet)
    body[1] |= 0x04
    return bytes(body) + struct.pack(">I", zlib.crc32(body))


@pytest.mark.parametrize(
    "packet,reason",
    [
        (None, "bad_type"),
        ("not bytes", "bad_type"),
        (12345, "bad_type"),
        (b"\xb1" * 2000, "oversize"),
        (b"", "truncated"),
        (b"\xb1\x01\x0a", "truncated"),
        (_key_packet()[:-3], "truncated"),
        (b"\x00" + _key_packet()[1:], "bad_magic"),
        (b"\xb2" + _key_packet()[1:], "bad_version"),
        (_key_packet()[:1] + b"\x09" + _key_packet()[2:], "bad_flags"),
        (_key_packet(crc=True)[:-1] + bytes([_key_packet(crc=True)[-1] ^ 1]), "bad_crc"),
        (_key_packet()[:2] + b"\x00" + _key_packet()[3:], "bad_num_kp"),
        (_key_packet(num_kp=5), "bad_num_kp"),
        (_key_packet()[:15] + b"\x0b" + _key_packet()[16:], "bad_quantiser"),
        (_key_packet() + b"\x00", "malformed"),
        (_key_packet()[:16] + b"\xff" * 30, "malformed"),  # code 4095 is invalid at 12 bits
        (_seal(_key_packet() + b"\x00"), "malformed"),  # a valid CRC does not excuse trailing bytes
    ],
)
def test_rejection_reasons(packet: object, reason: str) -> None:
    dec = KeypointDecoder(num_kp=10)
    assert dec.decode(packet) is None  # type: ignore[arg-type]
    assert dec.stats.dropped[reason] == 1 and dec.stats.total_dropped == 1


def test_mismatched_delta() -> None:
    values, jacs = smooth_walk(2, 10)
    plain = encode_all(KeypointEncoder(10), values, None)
    with_jac = encode_all(KeypointEncoder(10, with_jacobian=True), values, jacs)
    dec = KeypointDecoder(10)
    assert dec.decode(plain[0]) is not None
    assert dec.decode(with_jac[1]) is None  # refers to key frame 0, which had no jacobians
    assert dec.stats.dropped["mismatch"] == 1


def test_rejections_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("DEBUG", logger="odecam.realtime.keypoint_packet"):
        KeypointDecoder().decode(b"garbage!")
    assert "bad_magic" in caplog.text


# ----------------------------------------------------------------------------- user errors


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_kp": 0}, "num_kp"),
        ({"num_kp": 65}, "num_kp"),
        ({"keyframe_interval": 0}, "keyframe_interval"),
        ({"value_bits": 1}, "value_bits"),
        ({"jacobian_bits": 17}, "jacobian_bits"),
    ],
)
def test_encoder_bad_config(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        KeypointEncoder(**kwargs)


def test_encoder_bad_input() -> None:
    enc = KeypointEncoder(10)
    with pytest.raises(ValueError, match=r"value must have shape \(10, 2\), got \(10, 3\)\."):
        enc.encode(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="finite"):
        enc.encode(np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="with_jacobian=False"):
        enc.encode(np.zeros((10, 2)), np.zeros((10, 2, 2)))
    with pytest.raises(ValueError, match="timestamp"):
        enc.encode(np.zeros((10, 2)), timestamp=-1.0)
    with pytest.raises(ValueError, match="timestamp"):
        enc.encode(np.zeros((10, 2)), timestamp=float("nan"))
    enc_j = KeypointEncoder(10, with_jacobian=True)
    with pytest.raises(ValueError, match="jacobian is required"):
        enc_j.encode(np.zeros((10, 2)))
    with pytest.raises(ValueError, match=r"jacobian must have shape \(10, 2, 2\)"):
        enc_j.encode(np.zeros((10, 2)), np.zeros((10, 4)))
    assert enc.next_seq == 0  # failed calls consume no sequence number


# ----------------------------------------------------------------------------- fuzz


def _fuzz_corpus() -> list[bytes]:
    """Valid packets of many configurations: key and delta frames, with/without CRC and jacobians."""
    corpus = []
    configs = [
        dict(num_kp=10),
        dict(num_kp=10, with_jacobian=True),
        dict(num_kp=10, crc=False),
        dict(num_kp=10, with_jacobian=True, crc=False, keyframe_interval=5),
        dict(num_kp=1, crc=False, value_bits=2, jacobian_bits=2),
        dict(num_kp=64, with_jacobian=True, value_bits=16, jacobian_bits=16, crc=False),
        dict(num_kp=5, keyframe_interval=3, crc=False, first_seq=2**32 - 10),
    ]
    for n, cfg in enumerate(configs):
        num_kp = int(cfg["num_kp"])
        values, jacs = smooth_walk(40, num_kp, seed=n)
        enc = KeypointEncoder(**cfg)  # type: ignore[arg-type]
        corpus += encode_all(enc, values, jacs if cfg.get("with_jacobian") else None)
    return corpus


def _mutate(rng: random.Random, corpus: list[bytes]) -> object:
    base = bytearray(rng.choice(corpus))
    kind = rng.randrange(11)
    if kind == 0:
        return bytes(base)  # valid (possibly stale or duplicate)
    if kind == 1:
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(base) * 8)
            base[pos // 8] ^= 1 << (pos % 8)
    elif kind == 2:
        del base[rng.randrange(len(base)):]
    elif kind == 3:
        base += rng.randbytes(rng.randint(1, 40))
    elif kind == 4:
        return rng.randbytes(rng.randint(0, 120))
    elif kind == 5:  # random body behind a plausible header
        base = bytearray(b"\xb1" + bytes([rng.randrange(4)]) + bytes([rng.randint(1, 64)]))
        base += rng.randbytes(rng.randint(0, 200))
    elif kind == 6:
        if rng.random() < 0.05:
            return b"\xb1" * rng.randint(1025, 200_000)  # huge
        return rng.randbytes(rng.randint(1000, 1100))  # around the size limit
    elif kind == 7:
        for _ in range(rng.randint(1, 4)):
            base[rng.randrange(len(base))] = rng.randrange(256)
    elif kind == 8:  # splice header of one packet with the body of another
        other = rng.choice(corpus)
        cut = rng.randint(1, min(len(base), len(other)))
        base = base[:cut] + other[cut:]
    elif kind == 9:
        return rng.choice([None, "text", 3.5, [1, 2], np.zeros(8, np.uint8), memoryview(bytes(base))])
    else:  # mutate the body, then seal it with a valid CRC so the body parser sees it
        had_crc = bool(base[1] & 0x04)
        for _ in range(rng.randint(1, 3)):
            base[rng.randrange(7, len(base))] = rng.randrange(256)
        return _seal(bytes(base), had_crc)
    if rng.random() < 0.5 and len(base) >= 11 and base[1] & 0x04:
        return _seal(bytes(base), True)  # mutated but with a matching CRC
    return bytes(base)


def test_fuzz_never_raises_and_stays_bounded() -> None:
    corpus = _fuzz_corpus()
    rng = random.Random(1234)
    dec = KeypointDecoder(max_keyframes=4)
    n = 100_000
    decoded = 0
    start = time.perf_counter()
    tracemalloc.start()
    try:
        for _ in range(n):
            out = dec.decode(_mutate(rng, corpus))  # type: ignore[arg-type]
            if out is not None:
                decoded += 1
                assert out.value.shape[1] == 2 and np.all(np.abs(out.value) <= 1.0)
                if out.jacobian is not None:
                    assert np.all(np.abs(out.jacobian) <= JACOBIAN_RANGE)
            assert dec.keyframe_count <= 4
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - start
    stats = dec.stats
    print(f"fuzz: {n} inputs in {elapsed:.1f} s, peak {peak / 1e6:.2f} MB, decoded {decoded}, {stats.dropped}")
    assert stats.decoded == decoded and stats.decoded + stats.total_dropped == n
    assert stats.dropped["internal_error"] == 0
    assert set(DROP_REASONS) - {k for k, v in stats.dropped.items() if v} <= {"internal_error", "mismatch"}
    assert decoded > 0
    assert peak < 4e6

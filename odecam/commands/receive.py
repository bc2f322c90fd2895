"""``odecam receive``: the receiving end of a keypoint-only call.

Waits for ``odecam send`` on a small signalling endpoint (``POST /offer`` with a token), receives the
sender's face keypoints over a WebRTC data channel and renders them as the avatar into a window
(``--preview``), a virtual camera (``--virtual-camera``) and/or a file (``--record OUT.mp4``). A
restarted sender is picked up again. See :mod:`odecam.realtime.keypoint_call`.
"""

from __future__ import annotations

import argparse
import os

from odecam.commands._common import (add_keep_tilt_argument, add_paste_back_argument, fps, ode_steps, port,
                                     positive_float, stop_on_signals, threads)
from odecam.commands.serve import TOKEN_ENV
from odecam.export.options import add_backend_arguments

NAME = "receive"
HELP = "receive a keypoint-only call (odecam send) and render the avatar to a window, virtual camera or file"
DEFAULT_PORT = 8765




def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", metavar="IMAGE",
                   help="the avatar portrait to show (default: the built-in astronaut; a portrait the sender "
                        "sends replaces it unless --keep-avatar)")
    p.add_argument("--keep-avatar", action="store_true", help="refuse avatar images from the sender")
    p.add_argument("--record", metavar="OUT.mp4", help="write the rendered avatar to this video file")
    p.add_argument("--virtual-camera", action="store_true", help="send the avatar to a virtual camera device")
    p.add_argument("--camera-size", default="1280x720", metavar="WxH",
                   help="virtual camera picture size (default: 1280x720; the avatar is letterboxed)")
    p.add_argument("--camera-device", help="virtual camera device, e.g. /dev/video10 (default: the first free one)")
    p.add_argument("--preview", action="store_true", help="show the avatar in a window (q or Esc closes it)")
    p.add_argument("--fps", type=fps, default=30.0, help="output frame rate; the last frame is held when no new "
                                                            "keypoints arrive (default: 30)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on for the sender (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=port, default=DEFAULT_PORT,
                   help=f"port to listen on (default: {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                   help=f"access token the sender must present (default: ${TOKEN_ENV}, else a random one, printed)")
    p.add_argument("--cert", help="TLS certificate (PEM): serve the signalling endpoint over https (the call "
                                  "itself is always DTLS-encrypted; https also protects the token)")
    p.add_argument("--key", help="TLS private key (PEM) for --cert")
    p.add_argument("--stun", action="append", default=[], metavar="URL",
                   help="STUN/TURN server URL for senders on other networks (repeatable; default: none)")
    p.add_argument("--max-seconds", type=positive_float, help="stop after this many seconds")
    p.add_argument("--stats-json", metavar="PATH", help="write counters, frame intervals and latency here at exit")
    p.add_argument("--checkpoint", help="model weights (.safetensors), the same as the sender's; "
                                        "default: the best installed")
    p.add_argument("--preset", choices=["lite", "vox256", "tiny"], help="architecture when no checkpoint is given")
    p.add_argument("--ode-steps", type=ode_steps, default=None, help="fixed ODE steps per frame (default: the model's)")
    p.add_argument("--absolute", action="store_true", help="use absolute keypoints (no relative motion)")
    p.add_argument("--threads", type=threads, default=None,
                   help="model threads (default: one per core that other programs do not keep busy)")
    p.add_argument("--no-crop", action="store_true",
                   help="take the --source image as it is (default: crop its largest face square)")
    add_keep_tilt_argument(p, "--source photo")
    add_paste_back_argument(p, "the outputs (the photo at 2x the model's size in height; an avatar the sender sends "
                               "has no photo around it and stays a square)")
    add_backend_arguments(p)


def _camera_size(text: str) -> tuple[int, int]:
    from odecam.errors import OdecamError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise OdecamError(f"--camera-size {text!r} is not WIDTHxHEIGHT, e.g. 1280x720.") from None
    if w < 2 or h < 2 or w % 2 or h % 2 or w > 7680 or h > 4320:
        raise OdecamError(f"--camera-size {text!r} must be even numbers between 2x2 and 7680x4320.")
    return w, h


class _Outputs:
    """The sinks chosen on the command line (event loop thread)."""

    def __init__(self, stop) -> None:
        self.recorder = self.vcam = None
        self.preview = False
        self.stop = stop
        self.taken = 0  # frames an output took (recorded, sent to the camera, shown)
        self._last_sent = None
        self._bgr = None
        self._bgr_of = None

    def open(self, args: argparse.Namespace) -> None:
        from odecam.errors import OdecamError
        from odecam.realtime.virtual_camera import (FileRecorder, RecordingError, SinkConfig, VirtualCameraSink,
                                                    VirtualCameraUnavailable)

        if args.preview:
            import platform

            if platform.system() == "Linux" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
                raise OdecamError("--preview needs a display, and this session has none; use --record OUT.mp4 "
                                  "or --virtual-camera instead.")
            self.preview = True
        if args.record:
            try:
                self.recorder = FileRecorder(args.record, fps=args.fps)
            except RecordingError as exc:
                raise OdecamError(str(exc)) from None
        if args.virtual_camera:
            w, h = _camera_size(args.camera_size)
            try:
                self.vcam = VirtualCameraSink(SinkConfig(width=w, height=h, fps=args.fps,
                                                         device=args.camera_device)).start()
            except (VirtualCameraUnavailable, ValueError) as exc:
                raise OdecamError(str(exc)) from None

    def __call__(self, rgb, info) -> None:
        import cv2

        if self._bgr_of is not rgb:
            self._bgr, self._bgr_of = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), rgb
        bgr = self._bgr
        took = False
        if self.recorder is not None and info.live:
            self.recorder.write(bgr, timestamp=info.time)
            took = True
        if self.vcam is not None and self._last_sent is not rgb:
            self.vcam.submit(bgr, capture_ts=info.capture_ts if info.latency_ms is not None else None)
            self._last_sent = rgb
            took = True
        if self.preview:
            took = True
            cv2.imshow("odecam receive", bgr)
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                self.stop()
        self.taken += took

    @property
    def written(self) -> int:
        """Frames written: the recording's frame count (placed in time at --fps) when recording, else
        the frames the virtual camera or the window took."""
        return self.recorder.frames_written if self.recorder is not None else self.taken

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
        if self.vcam is not None:
            self.vcam.stop()
        if self.preview:
            import cv2

            cv2.destroyAllWindows()


def run(args: argparse.Namespace) -> int:
    import asyncio
    import json
    import time
    from pathlib import Path

    from odecam.commands.serve import _ssl_context, load_avatars
    from odecam.engine.weights import load_model
    from odecam.errors import OdecamError

    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise OdecamError("odecam receive needs the aiohttp package, which is not installed; "
                          "run: pip install aiohttp") from None
    from odecam.realtime.keypoint_call import KeypointReceiver, start_receiver
    from odecam.realtime.webrtc_server import check_token, is_loopback_host, new_token

    if not 0 < args.fps <= 240:
        raise OdecamError(f"--fps must be between 0 and 240, got {args.fps:g}.")
    if args.stats_json and not Path(args.stats_json).resolve().parent.is_dir():
        raise OdecamError(f"--stats-json: the folder of {args.stats_json!r} does not exist.")
    from odecam.commands.serve import animator_factory
    from odecam.engine.threads import ENV_THREADS, apply_thread_policy, choose_backend

    if args.threads:
        os.environ[ENV_THREADS] = str(args.threads)
    backend = choose_backend(args.backend)  # 'auto' -> onnxruntime on a CPU
    plan = apply_thread_policy(backend)
    token = check_token(args.token) if args.token else new_token()
    ssl_context = _ssl_context(args.cert, args.key)
    stop_holder: list = []
    outputs = _Outputs(lambda: stop_holder and stop_holder[0].set())
    outputs.open(args)
    try:
        loaded = load_model(args.checkpoint, args.preset, paste_back=args.paste_back)
        avatar = load_avatars(loaded.model, [args.source] if args.source else [], not args.no_crop,
                              log=lambda t: print(f"odecam receive: {t}"), level=not args.keep_tilt)[0]
        factory = animator_factory(loaded.model, backend, args.precision, not args.absolute, args.ode_steps)
        described = factory(avatar).backend.describe()  # builds (and caches) the graphs before a sender calls
    except BaseException:
        outputs.close()
        raise
    if not (args.record or args.virtual_camera or args.preview):
        print("odecam receive: note: no output chosen (--record, --virtual-camera, --preview); rendering anyway")
    receiver = KeypointReceiver(loaded.model, avatar, token, sinks=[outputs], fps=args.fps,
                                accept_avatar=not args.keep_avatar, loopback=is_loopback_host(args.host),
                                ice_servers=args.stun, relative=not args.absolute, ode_steps=args.ode_steps,
                                animator_factory=factory, paste_back=args.paste_back,
                                on_event=lambda text: print(f"odecam receive: {text}", flush=True))

    async def main() -> None:
        stop = asyncio.Event()
        stop_holder.append(stop)
        running = await start_receiver(receiver, args.host, args.port, ssl_context)
        stop_on_signals(stop)
        url = running.url.rstrip("/")
        if args.host in ("0.0.0.0", "::"):
            url = url.replace(f"//{args.host}:", "//127.0.0.1:").replace(f"//[{args.host}]:", "//127.0.0.1:")
        print(f"odecam receive: weights: {loaded.description}")
        print(f"odecam receive: backend {described}; {plan.describe()}")
        print(f"odecam receive: avatar {avatar.name}; waiting for a sender (Ctrl+C to stop):")
        print(f"  odecam send --to {url} --token {token}", flush=True)
        try:
            if args.max_seconds:
                try:
                    await asyncio.wait_for(stop.wait(), args.max_seconds)
                except asyncio.TimeoutError:
                    pass
            else:
                await stop.wait()
        finally:
            await receiver.close()
            await running.stop()

    started = time.monotonic()
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        outputs.close()
    summary = receiver.summary()
    summary["seconds"] = round(time.monotonic() - started, 2)
    summary["weights"] = loaded.description
    if args.record:
        summary["recorded_frames"] = outputs.recorder.frames_written if outputs.recorder else 0
    s = receiver.stats
    counts = s.counts(outputs.written)
    summary["counts"] = counts
    if args.stats_json:
        Path(args.stats_json).write_text(json.dumps(summary, indent=2) + "\n")
    lat = summary["latency_ms"]
    lat_text = f"; capture->render latency p50 {lat['p50_ms']:.0f} ms, p95 {lat['p95_ms']:.0f} ms" if lat else ""
    dropped = {k: v for k, v in s.dropped.items() if v}
    print(f"odecam receive: {s.sessions} call(s); frames received {counts['received']}, decoded {counts['decoded']}, "
          f"rendered {counts['rendered']}, held {counts['held']}, written {counts['written']}{lat_text}; "
          f"dropped {dropped or 'none'}")
    if args.record:
        n = summary["recorded_frames"]
        print(f"odecam receive: wrote {args.record} ({n} frames)" if n else
              f"odecam receive: nothing recorded to {args.record} (no sender connected)")
    return 0

"""``odecam send``: the sending end of a keypoint-only call.

Reads a camera (or a video file), runs the keypoint detector F_K on each frame and sends only the
keypoints, about 9 kbit/s, to ``odecam receive`` over a WebRTC data channel; optionally sends the avatar
portrait once (``--avatar``). Reconnects when the connection fails. See
:mod:`odecam.realtime.keypoint_call`.
"""

from __future__ import annotations

import argparse
import os

from odecam.commands._common import (add_keep_tilt_argument, float_range, non_negative_float, positive_float,
                                     positive_int, stop_on_signals, threads)
from odecam.commands.serve import TOKEN_ENV

NAME = "send"
HELP = "send your face's keypoints (not video) from a camera or video file to odecam receive"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", required=True, metavar="URL",
                   help="the receiver's address, as odecam receive printed it (http://HOST:PORT)")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                   help=f"the receiver's access token (default: ${TOKEN_ENV})")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", default=None, metavar="INDEX|DEVICE",
                     help="camera to read (default: 0, the first camera)")
    src.add_argument("--video", metavar="FILE", help="read this video file instead of a camera (played in real time)")
    p.add_argument("--loop", action="store_true", help="play --video again from the start when it ends")
    p.add_argument("--avatar", metavar="IMAGE",
                   help="a JPEG or PNG portrait for the receiver to show (default: the receiver's own avatar); "
                        "framed to its largest face before it is sent")
    p.add_argument("--no-crop", action="store_true", help="send the --avatar photo as it is (no face framing)")
    add_keep_tilt_argument(p, "--avatar photo")
    p.add_argument("--framing", choices=["face", "center"], default=None,
                   help="crop: follow the face, or the centre square (default: face for a camera, "
                        "center for a video file)")
    p.add_argument("--no-level", dest="level", action="store_false",
                   help="with face framing, do not level a tilted face for the keypoint detector (default: level "
                        "it and turn the keypoints back before sending)")
    p.add_argument("--rest-fade", type=float_range(0.0, 60.0), default=0.4, metavar="SECONDS",
                   help="with --framing face and nobody in view, the keypoints sent glide to the first face's pose "
                        "(the receiver's avatar rests) over this many seconds, and back when a face returns "
                        "(default: 0.4)")
    p.add_argument("--no-rest", action="store_true",
                   help="send the keypoints of whatever is in view, face or not")
    p.add_argument("--max-frames", type=positive_int, help="stop after sending this many frames")
    p.add_argument("--max-seconds", type=positive_float, help="stop after this many seconds")
    p.add_argument("--connect-timeout", type=positive_float, default=30.0,
                   help="give up when no connection opens for this many seconds (default: 30)")
    p.add_argument("--no-reconnect", action="store_true", help="stop when the connection fails instead of "
                                                               "reconnecting")
    p.add_argument("--stun", action="append", default=[], metavar="URL",
                   help="STUN/TURN server URL when the receiver is on another network (repeatable)")
    p.add_argument("--stats-json", metavar="PATH", help="write the sender's counters here at exit")
    p.add_argument("--progress", type=non_negative_float, default=5.0, metavar="SECONDS",
                   help="print a progress line every this many seconds (default: 5; 0: never)")
    p.add_argument("--checkpoint", help="model weights (.safetensors), the same as the receiver's; "
                                        "default: the best installed")
    p.add_argument("--preset", choices=["lite", "vox256", "tiny"], help="architecture when no checkpoint is given")
    p.add_argument("--threads", type=threads, default=1, help="torch CPU threads for F_K (default: 1)")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import json
    from pathlib import Path

    import torch

    from odecam import assets
    from odecam.engine import Animator, Avatar
    from odecam.engine.images import load_image
    from odecam.engine.video import open_video
    from odecam.engine.weights import load_model
    from odecam.errors import OdecamError
    from odecam.realtime.capture import CaptureConfig, LatestFrameCapture

    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise OdecamError("odecam send needs the aiohttp package, which is not installed; "
                          "run: pip install aiohttp") from None
    from odecam.realtime.keypoint_call import (AvatarRefused, FramedExtractor, KeypointSender, animator_extractor,
                                               decode_avatar_image, offer_url)
    from odecam.realtime.webrtc_server import check_token

    if not args.token:
        raise OdecamError(f"--token is required: pass the token odecam receive printed (or set ${TOKEN_ENV}).")
    token = check_token(args.token)
    offer_url(args.to)  # a clear error now for a bad address
    if not 0 <= args.progress <= 3600:
        raise OdecamError(f"--progress must be between 0 and 3600 seconds, got {args.progress:g}.")
    if args.loop and not args.video:
        raise OdecamError("--loop applies to --video files only.")
    if args.stats_json and not Path(args.stats_json).resolve().parent.is_dir():
        raise OdecamError(f"--stats-json: the folder of {args.stats_json!r} does not exist.")
    avatar_bytes = None
    if args.avatar:
        path = Path(args.avatar)
        if not path.is_file():
            raise OdecamError(f"--avatar file {args.avatar!r} does not exist; check the path.")
        avatar_bytes = path.read_bytes()
        try:
            portrait = decode_avatar_image(avatar_bytes)
        except AvatarRefused as exc:
            raise OdecamError(f"--avatar {args.avatar!r}: {exc}.") from None
        portrait, avatar_bytes = _frame_avatar(portrait, avatar_bytes, args.avatar, crop=not args.no_crop,
                                                 level=not args.keep_tilt)
    else:
        portrait = assets.AVATAR_CROP.apply(load_image(assets.default_avatar_path(), "built-in avatar"))
    if args.video:
        open_video(args.video).release()  # a clear error now rather than after connecting
        config = CaptureConfig(source=args.video, kind="file", loop=args.loop)
    else:
        config = CaptureConfig(source=args.camera if args.camera is not None else 0, kind="camera")
    framing = args.framing or ("center" if args.video else "face")

    torch.set_num_threads(args.threads)
    loaded = load_model(args.checkpoint, args.preset)
    model = loaded.model
    animator = Animator(model, Avatar(model, portrait, name="sender"))  # only its F_K is used
    if framing == "face":  # the face followed and levelled; nobody in view: the rest pose (FramedExtractor)
        from odecam.realtime.framing import FramingConfig

        extract = FramedExtractor(animator, FramingConfig(output_size=model.cfg.image_size, level_roll=args.level),
                                  rest_fade=None if args.no_rest else args.rest_fade)
        prepare, after_frame = extract.prepare, extract.after_frame
    else:
        prepare, after_frame = None, None  # BGR -> RGB; the engine takes the centre square
        extract = animator_extractor(animator)

    sender = KeypointSender(args.to, token, LatestFrameCapture(config), extract,
                            num_kp=model.cfg.keypoints.num_kp,
                            with_jacobian=bool(model.cfg.keypoints.estimate_jacobian), prepare=prepare,
                            avatar_bytes=avatar_bytes, avatar_name=Path(args.avatar).stem if args.avatar else "remote",
                            model_name=model.cfg.name, max_frames=args.max_frames,
                            reconnect=not args.no_reconnect, connect_timeout=args.connect_timeout,
                            ice_servers=args.stun, on_event=lambda text: print(f"odecam send: {text}", flush=True),
                            after_frame=after_frame)

    async def main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        loop = asyncio.get_running_loop()
        if args.max_seconds:
            loop.call_later(args.max_seconds, stop.set)
        print(f"odecam send: weights: {loaded.description}")
        print(f"odecam send: {'video ' + args.video if args.video else 'camera ' + str(config.source)} -> "
              f"{sender.offer_url} (Ctrl+C to stop)", flush=True)
        progress = asyncio.ensure_future(_progress(sender, args.progress)) if args.progress else None
        try:
            await sender.run(stop)
        finally:
            if progress is not None:
                progress.cancel()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    stats = sender.stats.as_dict()
    if args.stats_json:
        Path(args.stats_json).write_text(json.dumps({"stats": stats, "error": sender.error,
                                                     "remote_errors": sender.remote_errors}, indent=2) + "\n")
    kbps = f", {stats['payload_kbps']:.1f} kbit/s payload" if stats["payload_kbps"] else ""
    print(f"odecam send: {stats['connections']} connection(s); frames read {stats['frames_read']}, sent "
          f"{stats['frames_sent']} ({stats['keyframes']} key frames), not sent {stats['frames_unsent']} (no "
          f"connection) + {stats['frames_congested']} (congested); {stats['bytes_sent']} bytes{kbps}")
    if sender.error:
        raise OdecamError(sender.error)
    return 0


async def _progress(sender, every: float) -> None:
    """A line every ``every`` seconds: frames sent, the rate over the last interval, the connection."""
    import asyncio
    import time

    last_n, last_t = 0, time.monotonic()
    while True:
        await asyncio.sleep(every)
        n, t = sender.stats.frames_sent, time.monotonic()
        state = sender.pc.connectionState if sender.pc is not None else "not connected"
        print(f"odecam send: {n} frames sent, {(n - last_n) / (t - last_t):.1f} fps over the last {t - last_t:.1f} s, "
              f"{sender.stats.keyframes} key frames, {sender.stats.bytes_sent} bytes; {state}", flush=True)
        last_n, last_t = n, t


def _frame_avatar(portrait, data: bytes, name: str, crop: bool, level: bool = True):
    """Frame the --avatar photo to its largest face here, so the receiver gets the face crop (and face
    detection never runs on its render thread). Returns (RGB image, bytes to send: a JPEG of the crop,
    or the file as it is when no face was found or ``crop`` is False)."""
    import cv2

    from odecam.engine.portrait import describe_portrait, find_portrait

    found = find_portrait(portrait, crop, level=level)
    print(describe_portrait(found, f"avatar {os.path.basename(name)}", crop), flush=True)
    if found.box is None:
        return portrait, data
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(found.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return (found.image, jpeg.tobytes()) if ok else (portrait, data)

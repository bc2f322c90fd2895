"""``odecam live``: animate an avatar with the webcam, live, to a virtual camera / preview window / file.

See :mod:`odecam.realtime.live` for the pipeline. With neither ``--camera`` nor ``--video`` camera 0 is
used; with none of ``--virtual-camera``, ``--preview`` and ``--record`` the virtual camera is the output.
"""

from __future__ import annotations

import argparse

from odecam.commands._common import (add_blink_argument, add_keep_tilt_argument, add_lip_gain_argument,
                                     add_mouth_cavity_argument, add_paste_back_argument, finite_float, float_range,
                                     fps, non_negative_float, ode_steps, positive_float, positive_int)

NAME = "live"
HELP = "animate an avatar with your webcam, live, and stream it to a virtual camera"

BACKEND_CHOICES = ["auto", "torch", "torchscript", "onnxruntime", "tensorrt", "cuda-graph"]
MAX_AVATARS = 9


class _SourceAction(argparse.Action):
    """--source IMAGE: a new avatar; the --ref options after it belong to it."""

    def __call__(self, parser, namespace, values, option_string=None):
        avatars = [list(a) for a in (getattr(namespace, self.dest) or [])]
        if len(avatars) == 1 and avatars[0][0] is None:
            avatars[0][0] = values  # --ref given before the first --source: it belongs to this one
        else:
            avatars.append([values, []])
        setattr(namespace, self.dest, avatars)


class _RefAction(argparse.Action):
    """--ref IMAGE: an extra view of the avatar named by the last --source (or of the built-in one)."""

    def __call__(self, parser, namespace, values, option_string=None):
        avatars = [[a[0], list(a[1])] for a in (getattr(namespace, self.dest) or [])]
        if not avatars:
            avatars.append([None, []])
        avatars[-1][1].append(values)
        setattr(namespace, self.dest, avatars)


#: ``--background`` names (RGB): green and blue are the chroma-key colours video tools key out
BACKGROUNDS = {"black": (0, 0, 0), "white": (255, 255, 255), "grey": (128, 128, 128), "gray": (128, 128, 128),
               "green": (0, 177, 64), "blue": (0, 71, 187)}


def _background(text: str) -> tuple[int, int, int]:
    """``--background`` NAME or #RRGGBB -> the colour as BGR (what the canvas is drawn in)."""
    t = text.strip().lower()
    if t in BACKGROUNDS:
        r, g, b = BACKGROUNDS[t]
        return (b, g, r)
    hexa = t[1:] if t.startswith("#") else t
    if len(hexa) == 6 and all(c in "0123456789abcdef" for c in hexa):
        r, g, b = (int(hexa[i:i + 2], 16) for i in (0, 2, 4))
        return (b, g, r)
    raise argparse.ArgumentTypeError(f"{text!r} is not a colour; use {', '.join(sorted(BACKGROUNDS))} or #RRGGBB")


def _canvas(text: str) -> tuple[int, int] | None:
    if text.strip().lower() == "camera":
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT (e.g. 1280x720) or 'camera'") from None
    if w < 2 or h < 2 or w % 2 or h % 2 or w > 7680 or h > 4320:
        raise argparse.ArgumentTypeError(f"{text!r}: width and height must be even numbers from 2 to 7680x4320")
    return (w, h)






def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("avatar and model")
    g.add_argument("--source", action=_SourceAction, dest="avatars", metavar="IMAGE",
                   help="avatar portrait (repeatable, up to 9: keys 1-9 switch; default: the built-in astronaut)")
    g.add_argument("--ref", action=_RefAction, dest="avatars", metavar="IMAGE",
                   help="extra view of the avatar given by the --source before it (repeatable)")
    g.add_argument("--checkpoint", help="model weights (.safetensors); default: the best installed")
    g.add_argument("--preset", choices=["lite", "vox256", "tiny"], help="architecture when no checkpoint is given")
    g.add_argument("--no-crop", action="store_true",
                   help="take the --source/--ref images as they are (default: crop the largest face square)")
    add_keep_tilt_argument(g, "--source / --ref photo")
    g.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                   help="inference backend (default: auto = onnxruntime on a CPU, torch on CUDA)")
    g.add_argument("--precision", default="fp32", choices=["fp32", "fp16"],
                   help="precision for backends that support it (default: fp32)")
    g.add_argument("--ode-steps", type=ode_steps, default=None, help="fixed ODE steps per frame")
    g.add_argument("--no-relative", "--absolute", dest="relative", action="store_false",
                   help="use absolute driving keypoints instead of motion relative to your neutral pose")
    add_lip_gain_argument(g)
    add_blink_argument(g)
    add_mouth_cavity_argument(g)

    g = p.add_argument_group("input")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--camera", default=None, metavar="INDEX|DEVICE",
                     help="webcam index or device path (default: 0)")
    src.add_argument("--video", metavar="FILE",
                     help="a video file (or carphone, the built-in clip) instead of the webcam: every frame is "
                          "rendered, at its own speed when the machine keeps up")
    g.add_argument("--loop", action="store_true", help="play --video in a loop")
    g.add_argument("--mirror", action="store_true", help="flip the camera picture (the avatar moves like your mirror)")
    g.add_argument("--zoom", type=positive_float, default=1.0, help="zoom into the face crop (>1 closer; default 1)")
    g.add_argument("--pan-x", type=finite_float, default=0.0, help="shift the crop right (+) / left (-), in crop widths")
    g.add_argument("--pan-y", type=finite_float, default=0.0, help="shift the crop down (+) / up (-), in crop heights")
    g.add_argument("--no-follow", dest="follow", action="store_false",
                   help="do not follow the face: a fixed centre crop (zoom and pan still apply)")
    g.add_argument("--no-level", dest="level", action="store_false",
                   help="do not level a tilted face for the keypoint detector (default: level it, turn the "
                        "keypoints back)")
    g.add_argument("--rest-fade", type=float_range(0.0, 60.0), default=0.4, metavar="SECONDS",
                   help="with nobody in view (the face lost), the avatar glides to its photo's pose over this many "
                        "seconds instead of following the empty room, and back when a face returns (default: 0.4)")
    g.add_argument("--no-rest", dest="rest", action="store_false",
                   help="keep driving the avatar with the keypoints of whatever is in view, face or not")
    g.add_argument("--smoothing", choices=["on", "off"], default="on",
                   help="One Euro smoothing of the driving keypoints (default: on)")
    g.add_argument("--min-cutoff", type=positive_float, default=0.5,
                   help="smoothing cutoff in Hz when still; lower = less jitter (default: 0.5)")
    g.add_argument("--beta", type=non_negative_float, default=1.0,
                   help="smoothing speed coefficient; higher = less lag (default: 1)")

    g = p.add_argument_group("output")
    g.add_argument("--virtual-camera", action="store_true",
                   help="stream to a virtual camera (the default output when no other is given)")
    g.add_argument("--vcam-backend", default=None, help="pyvirtualcam backend (v4l2loopback, obs, unitycapture)")
    g.add_argument("--vcam-device", default=None, help="virtual camera device, e.g. /dev/video10")
    g.add_argument("--preview", action="store_true", help=f"show a preview window (hotkeys: {_hotkeys()})")
    g.add_argument("--record", metavar="OUT.mp4", help="also record what the virtual camera shows to an .mp4")
    add_paste_back_argument(g, "the canvas (virtual camera, recording, preview)")
    g.add_argument("--canvas", type=_canvas, default=(1280, 720), metavar="WxH|camera",
                   help="virtual camera / recording size (default: 1280x720; 'camera': the webcam's size)")
    g.add_argument("--background", type=_background, default=(0, 0, 0), metavar="COLOUR",
                   help="the canvas around the avatar: black (default), white, grey, green or blue (chroma-key "
                        "colours, for keying the avatar out in OBS), or #RRGGBB")
    g.add_argument("--fps", type=fps, default=30.0, help="virtual camera and recording rate (default: 30)")
    g.add_argument("--max-frames", type=positive_int, default=None, help="stop after N avatar frames")
    g.add_argument("--stats", action="store_true",
                   help="print fps (frames over wall time) with capture-to-output latency p50/p95/p99 at the end "
                        "(+ a JSON line)")


def _hotkeys() -> str:
    return "1-9 avatar, c recalibrate, o overlay, m mirror, q/Esc quit"


def _animator(model, avatar, args):
    import inspect

    from odecam.engine import Animator
    from odecam.errors import OdecamError

    params = inspect.signature(Animator.__init__).parameters
    kwargs = {}
    if "backend" in params:
        from odecam.engine.backends import get_backend
        from odecam.engine.threads import backend_options

        kwargs["backend"] = get_backend(args.backend, model, precision=args.precision, ode_steps=args.ode_steps,
                                        **backend_options(args.backend))
    elif args.backend != "torch" or args.precision != "fp32":
        raise OdecamError(f"this odecam build runs only the torch backend in fp32; --backend {args.backend} "
                          f"--precision {args.precision} is not available, leave them out.")
    if "lip_gain" in params:
        kwargs["lip_gain"] = getattr(args, "lip_gain", None)
    if "blink" in params:
        kwargs["blink"] = getattr(args, "blink", None)
    if "mouth_cavity" in params:
        kwargs["mouth_cavity"] = getattr(args, "mouth_cavity", None)
    return Animator(model, avatar, relative=args.relative, ode_steps=args.ode_steps, **kwargs)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from odecam.engine import Avatar
    from odecam.engine.weights import load_model
    from odecam.errors import OdecamError
    from odecam.realtime.live import LiveConfig, LiveSession

    entries = args.avatars or [[None, []]]
    if len(entries) > MAX_AVATARS:
        raise OdecamError(f"{len(entries)} --source images given; use at most {MAX_AVATARS} (keys 1-9).")
    if args.loop and not args.video:
        raise OdecamError("--loop only applies to --video; leave it out for a camera.")
    from odecam.engine.portrait import avatar_photo, load_portrait
    from odecam.engine.threads import apply_thread_policy, choose_backend

    args.backend = choose_backend(args.backend)  # 'auto' -> onnxruntime on a CPU
    plan = apply_thread_policy(args.backend)

    outputs = args.virtual_camera or args.preview or args.record
    config = LiveConfig(
        camera=args.camera if args.camera is not None else 0,
        video=args.video,
        loop=args.loop,
        fps=args.fps,
        canvas=args.canvas,
        background=args.background,
        virtual_camera=args.virtual_camera or not outputs,
        vcam_backend=args.vcam_backend,
        vcam_device=args.vcam_device,
        preview=args.preview,
        record=args.record,
        max_frames=args.max_frames,
        smoothing=args.smoothing == "on",
        min_cutoff=args.min_cutoff,
        beta=args.beta,
        zoom=args.zoom,
        pan_x=args.pan_x,
        pan_y=args.pan_y,
        follow_face=args.follow,
        level_roll=args.level,
        rest=args.rest,
        rest_fade=args.rest_fade,
        paste_back=args.paste_back,
        mirror=args.mirror,
        stdin_commands=True,
    )
    if args.video and not Path(args.video).is_file():
        raise OdecamError(f"--video file {args.video!r} does not exist; check the path.")

    loaded = load_model(args.checkpoint, args.preset, paste_back=args.paste_back)
    model = loaded.model
    avatars = []
    crop = not args.no_crop
    say = lambda text: print(f"odecam live: {text}")  # noqa: E731
    for source, refs in entries:
        image, placement = avatar_photo(source, model.cfg.image_size, crop, log=say,
                                         level=not args.keep_tilt)
        name = "astronaut" if source is None else Path(source).stem
        ref_images = [load_portrait(r, "reference image", crop, log=say, level=not args.keep_tilt) for r in refs]
        avatars.append(Avatar(model, image, ref_images, name=name, placement=placement))
    animator = _animator(model, avatars[0], args)
    print(f"odecam live: weights: {loaded.description}")
    names = ", ".join(f"{i + 1} {a.name}" + (f" (+{a.num_refs} refs)" if a.num_refs else "")
                      for i, a in enumerate(avatars))
    backend = getattr(animator, "backend", None)
    described = backend.describe() if backend is not None else args.backend
    print(f"odecam live: avatars: {names}; driving: {config.source_name}; backend {described}; {plan.describe()}")

    session = LiveSession(config, animator, avatars)
    session.run()
    stats = session.stats_dict()
    done = "interrupted" if session.interrupted else "stopped"
    rec = f"; wrote {args.record} ({stats.get('recorded_frames')} frames)" if session.recorder is not None else ""
    print(f"odecam live: {done} after {session.frames} frames{rec}")
    if args.stats:
        print(f"odecam live: stats: {session.stats_line()}")
        print(f"odecam live: stats json: {json.dumps(stats, sort_keys=True)}")
    return 0

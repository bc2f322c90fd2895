"""``odecam demo``: animate the embedded portrait with the embedded driving clip, offline.

Writes a side-by-side H.264 video (driving | output) and prints the achieved fps (frames over wall
time) with the model's per-frame latency percentiles beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from odecam.commands._common import (add_blink_argument, add_keep_tilt_argument, add_lip_gain_argument,
                                     add_mouth_cavity_argument, add_paste_back_argument, ode_steps, positive_int)
from odecam.export.options import add_backend_arguments

NAME = "demo"
HELP = "animate the built-in portrait with the built-in driving clip and write a side-by-side video"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default="odecam-demo.mp4", help="output video (default: odecam-demo.mp4)")
    p.add_argument("--source", help="avatar image (default: the built-in astronaut portrait); its largest face "
                                    "is cropped square, see --no-crop")
    p.add_argument("--ref", action="append", default=[], help="extra reference view of the avatar (repeatable)")
    p.add_argument("--no-crop", action="store_true",
                   help="take --source and --ref images as they are (no face detection and crop)")
    add_keep_tilt_argument(p, "--source / --ref photo")
    p.add_argument("--driving", help="driving video, or carphone (the built-in talking head, the default); its face "
                                     "is followed and cropped like odecam live crops the webcam")
    p.add_argument("--checkpoint", help="model weights (.safetensors); default: the best installed")
    p.add_argument("--preset", choices=["lite", "vox256", "tiny"], help="architecture when no checkpoint is given")
    p.add_argument("--max-frames", type=positive_int, default=None, help="stop after N driving frames")
    p.add_argument("--ode-steps", type=ode_steps, default=None, help="fixed ODE steps per frame (default: the model's)")
    p.add_argument("--absolute", action="store_true", help="use absolute driving keypoints (no relative motion)")
    add_lip_gain_argument(p)
    add_blink_argument(p)
    add_mouth_cavity_argument(p)
    add_paste_back_argument(p, "the video's right half (the photo at 2x the model's size in height)")
    p.add_argument("--no-level", dest="level", action="store_false",
                   help="do not level a tilted driving face for the keypoint detector (default: level it, turn the "
                        "keypoints back)")
    add_backend_arguments(p)


def run(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    from tqdm import tqdm

    from odecam import assets
    from odecam.engine import Animator, Avatar
    from odecam.engine.backends import get_backend
    from odecam.engine.portrait import avatar_photo, load_portrait
    from odecam.engine.threads import apply_thread_policy, backend_options, choose_backend
    from odecam.engine.timing import SUMMARY_ORDER
    from odecam.engine.video import VideoFileWriter, read_frames, video_fps
    from odecam.engine.weights import load_model
    from odecam.realtime.framing import FaceFramer, FramingConfig

    name = choose_backend(args.backend)  # 'auto' -> onnxruntime on a CPU
    plan = apply_thread_policy(name)
    loaded = load_model(args.checkpoint, args.preset, paste_back=args.paste_back)
    model = loaded.model
    size = model.cfg.image_size
    crop = not args.no_crop
    say = lambda text: print(f"odecam demo: {text}")  # noqa: E731
    source, placement = avatar_photo(args.source, size, crop, log=say, level=not args.keep_tilt)
    refs = [load_portrait(r, f"reference image {i + 1}", crop, log=say, level=not args.keep_tilt)
            for i, r in enumerate(args.ref)]
    avatar = Avatar(model, source, refs, name=Path(args.source).stem if args.source else "astronaut",
                    placement=placement)
    driving_path = assets.video_path(args.driving) if args.driving else assets.default_driving_path()
    if name != "torch":
        say(f"preparing the {name} graphs (cached after the first run) ...")
    backend = get_backend(name, model, precision=args.precision, ode_steps=args.ode_steps,
                          **backend_options(name, plan))
    animator = Animator(model, avatar, relative=not args.absolute, ode_steps=args.ode_steps, backend=backend,
                        lip_gain=args.lip_gain, blink=args.blink,
                        mouth_cavity=args.mouth_cavity)
    framer = FaceFramer(FramingConfig(output_size=size, level_roll=args.level))  # framed as live frames the webcam
    fps = video_fps(driving_path)
    say(f"weights: {loaded.description}")
    say(f"backend {backend.describe()}; {plan.describe()}")
    say(f"avatar {avatar.name} ({avatar.num_refs} reference views), driving {driving_path.name} (face-followed crop)")
    _warm_up(animator, size)
    out_path = Path(args.output)
    n = 0
    t0 = time.perf_counter()
    paste, height = None, size
    if args.paste_back and placement is not None:  # the right half: the photo, 2 S rows high, with the square blended back in
        import cv2

        from odecam.engine.paste_back import PasteBack

        height = 2 * size
        paste = PasteBack.rows(placement, height)
    width = height + (paste.shape[1] if paste is not None else size)
    with VideoFileWriter(out_path, fps, (width, height)) as writer:
        frames = read_frames(driving_path, args.max_frames)
        for frame in tqdm(frames, desc="animating", unit="frame", leave=False):
            framing = framer.process(frame, defer_detection=True)  # the detector after the frame, as live
            driving_view = framing.image  # (S, S, 3) RGB, shown as it is
            output = animator(*framing.model_input())  # F_K on the levelled face, keypoints turned back
            if paste is not None:
                driving_view = cv2.resize(driving_view, (height, height), interpolation=cv2.INTER_LINEAR)
                output = paste(output)
            writer.write(np.concatenate([driving_view, output], axis=1))
            n += 1
    wall = time.perf_counter() - t0
    pct = animator.timings.percentiles()
    total = pct["total"]
    stages = " ".join(f"{s}={pct[s]['p50']:.1f}" for s in SUMMARY_ORDER if s in pct)
    say(f"{n} frames in {wall:.1f} s: {n / wall if wall > 0 else 0.0:.1f} fps (frames over wall time: reading, "
        "framing, the model and writing)")
    print(f"latency: model per frame p50 {total['p50']:.1f} ms, p95 {total['p95']:.1f} ms, p99 {total['p99']:.1f} ms "
          f"| stages p50 ms: {stages} | ode fallbacks {animator.ode_fallbacks}")
    if animator.blink_active:
        say("blink retargeting on (the eyes stage; --no-blink switches it off)")
    if animator.mouth_active:
        say("the avatar's teeth open onto a mouth cavity when the mouth opens wide (--no-mouth-cavity: off)")
    shown = "driving | output in its photo" if paste is not None else "driving | output"
    print(f"wrote {out_path} ({n} frames, {width}x{height}, H.264, {shown})")
    return 0


def _warm_up(animator, size: int) -> None:
    """One untimed run of both graphs (lazy session / graph set-up), so the figures describe steady frames."""
    from odecam.engine.images import to_image, to_tensor

    avatar = animator.avatar
    animator.keypoints(to_image(to_tensor(avatar.source_image, size)))
    jac = avatar.jac_source if animator.model.cfg.keypoints.estimate_jacobian else None
    animator.backend.run_frame(avatar.kp_source, jac)
    animator.reset_blink()
    animator.timings.reset()

"""``odecam demo``: animate the embedded portrait with the embedded driving clip, offline.

Writes a side-by-side video (driving | output) and prints one line of latency figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from odecam.export.options import add_backend_arguments

NAME = "demo"
HELP = "animate the built-in portrait with the built-in driving clip and write a side-by-side video"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default="odecam-demo.mp4", help="output video (default: odecam-demo.mp4)")
    p.add_argument("--source", help="avatar image (default: the built-in astronaut portrait)")
    p.add_argument("--ref", action="append", default=[], help="extra reference view of the avatar (repeatable)")
    p.add_argument("--driving", help="driving video (default: the built-in 'carphone' talking head)")
    p.add_argument("--checkpoint", help="model weights (.safetensors); default: the best installed")
    p.add_argument("--preset", choices=["lite", "vox256", "tiny"], help="architecture when no checkpoint is given")
    p.add_argument("--max-frames", type=int, default=None, help="stop after N driving frames")
    p.add_argument("--ode-steps", type=int, default=None, help="fixed ODE steps per frame (default: the model's)")
    p.add_argument("--absolute", action="store_true", help="use absolute driving keypoints (no relative motion)")
    add_backend_arguments(p)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from odecam import assets
    from odecam.engine import Animator, Avatar
    from odecam.engine.images import load_image, to_image, to_tensor
    from odecam.engine.video import VideoFileWriter, read_frames, video_fps
    from odecam.engine.backends import backend_name, get_backend, torch_threads_for
    from odecam.engine.weights import load_model
    import torch

    torch.set_num_threads(torch_threads_for(args.backend))
    loaded = load_model(args.checkpoint, args.preset)
    model = loaded.model
    size = model.cfg.image_size
    if args.source:
        source = load_image(args.source, "source image")
    else:
        source = assets.AVATAR_CROP.apply(load_image(assets.default_avatar_path(), "built-in avatar"))
    avatar = Avatar(model, source, args.ref, name=Path(args.source).stem if args.source else "astronaut")
    driving_path = Path(args.driving) if args.driving else assets.default_driving_path()
    crop = None if args.driving else assets.DRIVING_CROP
    if backend_name(args.backend) != "torch":
        print(f"odecam demo: preparing the {backend_name(args.backend)} graphs (cached after the first run) ...")
    backend = get_backend(args.backend, model, precision=args.precision, ode_steps=args.ode_steps)
    animator = Animator(model, avatar, relative=not args.absolute, ode_steps=args.ode_steps, backend=backend)
    fps = video_fps(driving_path)
    print(f"odecam demo: weights: {loaded.description}")
    print(f"odecam demo: backend {backend.describe()}")
    print(f"odecam demo: avatar {avatar.name} ({avatar.num_refs} reference views), driving {driving_path.name}")
    out_path = Path(args.output)
    n = 0
    with VideoFileWriter(out_path, fps, (2 * size, size)) as writer:
        frames = read_frames(driving_path, args.max_frames)
        for frame in tqdm(frames, desc="animating", unit="frame", leave=False):
            if crop is not None:
                frame = crop.apply(frame)
            output = animator(frame)
            driving_view = to_image(to_tensor(frame, size))
            writer.write(np.concatenate([driving_view, output], axis=1))
            n += 1
    pct = animator.timings.percentiles()
    total = pct["total"]
    stages = " ".join(f"{s}={pct[s]['p50']:.1f}" for s in ("keypoints", "coarse_motion", "ode", "warp",
                                                            "appearance", "decoder", "frame") if s in pct)
    print(f"latency: {n} frames, p50 {total['p50']:.1f} ms, p95 {total['p95']:.1f} ms, "
          f"{1000.0 / total['p50']:.1f} fps | stages p50 ms: {stages} | ode fallbacks {animator.ode_fallbacks}")
    print(f"wrote {out_path} ({n} frames, {2 * size}x{size}, driving | output)")
    return 0

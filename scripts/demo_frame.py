"""Regenerate the README's picture: one frame of ``odecam demo``'s side-by-side video as a PNG.

    python scripts/demo_frame.py [--frame 74] [-o docs/demo.png] [extra odecam demo options, e.g. --checkpoint CK]

Runs ``odecam demo`` (carphone driving the built-in astronaut, the default model) into a temporary video and
writes frame ``--frame`` of it (driver | avatar, 2S x S) as it is in the video.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from odecam.cli import main as odecam  # noqa: E402
from odecam.engine.video import read_frames  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frame", type=int, default=74, help="0-based frame of the demo video (74: an open mouth)")
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "demo.png")
    args, demo_args = ap.parse_known_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "demo.mp4"
        code = odecam(["demo", "-o", str(video), "--max-frames", str(args.frame + 1), *demo_args])
        if code:
            return code
        frames = list(read_frames(video, role="demo video"))
    if len(frames) <= args.frame:
        raise SystemExit(f"the demo video has {len(frames)} frames; --frame {args.frame} is past its end")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.output), cv2.cvtColor(frames[args.frame], cv2.COLOR_RGB2BGR))
    print(f"wrote {args.output} (frame {args.frame}, {frames[args.frame].shape[1]}x{frames[args.frame].shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``odecam prepare-faces``: offline face crops with dlib 68 landmarks for ``faces:DIR`` training data.

See :mod:`odecam.data.prepare` for the crop margins and the output layout.
"""

from __future__ import annotations

import argparse

from odecam.commands._common import positive_int

NAME = "prepare-faces"
HELP = ("prepare face crops + landmarks for training: odecam prepare-faces SRC [SRC...] --out DIR "
        "[--size 256] [--max-frames-per-clip 300] [--workers 1] [--exclude GLOB ...]")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="+", metavar="SRC",
                   help="talking-head videos, portrait images, or folders of them (searched recursively)")
    p.add_argument("--out", required=True, help="output folder (videos/NAME/*.jpg + landmarks.npy, stills/)")
    p.add_argument("--size", type=positive_int, default=256, help="side of the square crops in pixels (default 256)")
    p.add_argument("--max-frames-per-clip", type=positive_int, default=300,
                   help="keep at most this many evenly spaced frames per video (default 300)")
    p.add_argument("--workers", type=positive_int, default=1, help="worker processes (default 1)")
    p.add_argument("--exclude", nargs="+", default=[], metavar="GLOB",
                   help="leave out files whose name matches (e.g. clips held out for evaluation: '*driving__d6.mp4')")
    p.add_argument("--redo", action="store_true", help="prepare again the sources already listed in DIR/prepared.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from odecam.data.prepare import PrepareConfig, PrepareError, list_sources, prepare_all
    from odecam.errors import OdecamError

    try:
        cfg = PrepareConfig(size=args.size, max_frames_per_clip=args.max_frames_per_clip)
        videos, stills = list_sources(args.sources, args.exclude)
    except (PrepareError, ValueError) as exc:
        raise OdecamError(str(exc).rstrip(".") + ".") from None
    print(f"odecam prepare-faces: {len(videos)} video(s), {len(stills)} still(s) -> {args.out} "
          f"({args.size} px, face box x{cfg.face_scale} centred {abs(cfg.face_offset_y)} face sides above the face)")
    index = prepare_all(videos, stills, args.out, cfg, workers=args.workers, progress=not args.no_progress,
                        redo=args.redo)
    res = index["sources"].values()
    clips = sum(len(r.get("clips", [])) for r in res)
    frames = sum(r.get("frames", 0) for r in res)
    n_stills = sum(len(r.get("stills", [])) for r in res)
    errors = [r for r in res if r.get("error")]
    no_face = [r for r in res if not r.get("clips") and not r.get("stills") and not r.get("error")]
    print(f"odecam prepare-faces: {clips} clip(s), {frames} frames, {n_stills} still(s) in {args.out}"
          + (f"; {len(no_face)} source(s) without a usable face" if no_face else "")
          + (f"; {len(errors)} unreadable (see {args.out}/prepared.json)" if errors else ""))
    return 0

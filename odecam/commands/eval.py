"""``odecam eval``: the paper's protocols and metrics, expression transfer, and the no-motion baseline."""

from __future__ import annotations

import argparse

from odecam.commands._common import (add_blink_argument, add_keep_tilt_argument, add_lip_gain_argument,
                                     add_mouth_cavity_argument, num_refs, positive_int)
from odecam.export.options import add_backend_arguments

NAME = "eval"
HELP = ("evaluate a checkpoint: odecam eval --data PATH --protocol reconstruction|animation --refs N "
        "[--source IMAGE|astronaut]")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="model weights (.safetensors); default: the installed default model")
    p.add_argument("--data", required=True, help="a video file, a folder of videos, a FOMM layout (test/ split), or "
                                                 "carphone (the built-in clip, never trained on)")
    p.add_argument("--protocol", choices=["reconstruction", "animation"], default="reconstruction")
    p.add_argument("--source", metavar="IMAGE|astronaut",
                   help="animation: animate this photo (framed to its face; 'astronaut' is the built-in one) "
                        "with every --data video, framed like live, N=0, relative motion")
    p.add_argument("--no-crop", action="store_true", help="take the --source photo as it is (no face framing)")
    add_keep_tilt_argument(p, "--source photo")
    p.add_argument("--no-level", dest="level", action="store_false",
                   help="with --source: do not level a tilted driving face for the keypoint detector "
                        "(as live --no-level)")
    add_lip_gain_argument(p)
    add_blink_argument(p)
    add_mouth_cavity_argument(p)
    p.add_argument("--refs", type=num_refs, default=0, help="reference views N from the source video (default 0)")
    p.add_argument("--json", help="write the metrics here")
    p.add_argument("--save-frames", help="write each evaluated pair as NNNNN_real.png (driving) / NNNNN_fake.png here")
    p.add_argument("--compare", action="append", default=[], metavar="NAME=CKPT",
                   help="more rows in the table (e.g. the ablations: no-evolution=runs/noevo/last.safetensors)")
    p.add_argument("--max-frames", type=positive_int, help="use at most this many frames of each video")
    p.add_argument("--no-fid", action="store_true", help="skip FID (Inception is slow on a CPU)")
    p.add_argument("--no-face-metrics", action="store_true",
                   help="skip the dlib metrics: AKD, CSIM and expression transfer")
    p.add_argument("--no-baseline", action="store_true", help="skip the no-motion baseline row")
    add_backend_arguments(p)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from odecam.checkpoint import load_checkpoint
    from odecam.engine.weights import load_model
    from odecam.errors import OdecamError
    from odecam.evaluation.protocols import evaluate, load_videos, model_method, no_motion
    from odecam.evaluation.report import markdown_table

    if args.refs < 0 or args.refs > 6:
        raise OdecamError(f"--refs {args.refs} is out of range; use 0 to 6 reference views.")
    if args.source and args.protocol != "animation":
        raise OdecamError("--source animates a photo: use it with --protocol animation.")
    if args.source and args.refs:
        raise OdecamError(f"the photo animation uses the photo alone (N=0); drop --refs {args.refs}.")
    from odecam.engine.threads import apply_thread_policy, choose_backend

    backend = choose_backend(getattr(args, "backend", None) or "auto")  # 'auto' -> onnxruntime on a CPU
    apply_thread_policy(backend)
    precision = getattr(args, "precision", None) or "fp32"
    loaded = load_model(args.checkpoint)
    model = loaded.model
    size = model.cfg.image_size
    source = placement = None
    if args.source:
        from odecam.evaluation.animation import load_framed_videos, load_source_photo

        photo = load_source_photo(args.source, size, crop=not args.no_crop, level=not args.keep_tilt)
        print(f"odecam eval: {photo.description}")
        source, placement = photo.tensor, photo.placement
        videos = load_framed_videos(args.data, size, args.max_frames, level=args.level)
    else:
        videos = load_videos(args.data, size, args.max_frames, min_frames=args.refs + 2)
    what = f"source {photo.name} driven by" if args.source else "protocol " + args.protocol + " on"
    print(f"odecam eval: {loaded.description}; {what} {len(videos)} video(s) at {size}x{size}, N={args.refs}")
    kw = dict(fid=not args.no_fid, face_metrics=not args.no_face_metrics, source=source, driver_signals={})
    rows = {}
    from odecam.engine.animator import lip_retargeting

    _, lip_gain = lip_retargeting(model, args.lip_gain)  # a gain the model cannot use is refused here
    method = model_method(model, backend, precision, lip_gain=args.lip_gain, blink=args.blink,
                          mouth_cavity=args.mouth_cavity, placement=placement)
    main = evaluate(method, videos, args.protocol, args.refs,
                    save_frames=Path(args.save_frames) if args.save_frames else None, desc="model", **kw)
    rows[f"odecam {model.cfg.name} (N={args.refs})"] = main
    for item in args.compare:
        if "=" not in item:
            raise OdecamError(f"--compare {item!r} needs the form NAME=CHECKPOINT.")
        name, ckpt = item.split("=", 1)
        other = load_checkpoint(ckpt)
        if other.cfg.image_size != size:
            raise OdecamError(f"--compare {name}: its image size {other.cfg.image_size} differs from {size}.")
        method = model_method(other, backend, precision, lip_gain=args.lip_gain, blink=args.blink,
                              mouth_cavity=args.mouth_cavity, placement=placement)
        rows[name] = evaluate(method, videos, args.protocol, args.refs,
                              desc=name, **kw)
    if not args.no_baseline:
        rows["no motion (output = source)"] = evaluate(no_motion, videos, args.protocol, args.refs, desc="no motion", **kw)
    print(markdown_table(rows))
    if args.json:
        out = dict(main.as_json(), protocol=args.protocol, refs=args.refs,
                   checkpoint=args.checkpoint or loaded.description, image_size=size,
                   data=[v.name for v in videos], lip_gain=lip_gain if args.protocol == "animation" else None,
                   blink="auto" if args.blink is None else args.blink,
                   mouth_cavity="auto" if args.mouth_cavity is None else args.mouth_cavity,
                   baselines={k: v.as_json() for k, v in rows.items() if v is not main})
        if args.source:
            out.update(source=photo.name, source_crop=photo.box, driving_framing="live FaceFramer",
                       level_roll=args.level)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0

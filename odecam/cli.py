"""The ``odecam`` command line. Subcommands live in :mod:`odecam.commands`, one module each.

User mistakes print one sentence and exit with status 2, never a traceback:

* :class:`~odecam.errors.OdecamError` raised by a command (the sentence names the bad input and the fix);
* flags out of range (shared argparse types in :mod:`odecam.commands._common`) and unknown flags: that
  subcommand's usage and one sentence;
* checks every command shares, made here before it runs (:func:`preflight`): an unknown ``--backend``,
  ``--backend tensorrt`` without CUDA, a missing file or a still image given as ``--driving`` / ``--video``.

OpenCV's and FFmpeg's own log lines, and other libraries' logged warnings, are silenced unless ``--verbose``:
odecam says what went wrong itself.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import os
import sys

from odecam import __version__
from odecam.commands import COMMANDS
from odecam.errors import OdecamError

#: flags that take a driving video, and the attribute argparse stores them in
VIDEO_FLAGS = {"driving": "--driving", "video": "--video"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="odecam", description="Real-time motion transfer: animate a portrait "
                                     "with the motion of a driving video or webcam.")
    parser.add_argument("--version", action="version", version=f"odecam {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages (and OpenCV's own)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = importlib.import_module(f"odecam.commands.{name}")
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _parser=p)
    return parser


def quiet_video_libraries() -> None:
    """Silence OpenCV's logger and its FFmpeg backend (a missing camera otherwise prints ten lines of
    warnings before odecam's one sentence). Must run before cv2 is imported; also applied if it was."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        try:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        except AttributeError:
            pass


def unknown_arguments(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """One sentence for arguments ``parser`` does not take, with the closest option when one is near."""
    first = extras[0]
    if first.startswith("-"):
        flag = first.split("=", 1)[0]
        near = difflib.get_close_matches(flag, [o for o in parser._option_string_actions if o.startswith("--")], 1)
        hint = f"did you mean {near[0]}? " if near else ""
        return f"unknown option {flag}; {hint}run '{parser.prog} --help' for the options it takes."
    return f"unexpected argument {first!r}; run '{parser.prog} --help' for what it takes."


def preflight(args: argparse.Namespace) -> None:
    """Checks shared by every command, before it loads anything; :class:`OdecamError` with one sentence."""
    backend = getattr(args, "backend", None)
    if backend is not None:
        from odecam.export import options

        choices = tuple(getattr(options, "BACKEND_CHOICES", options.BACKENDS))
        for name in backend if isinstance(backend, list) else [backend]:
            key = options.ALIASES.get(str(name).lower(), str(name).lower())
            if key not in choices:
                raise OdecamError(f"unknown backend {name!r} for --backend; choose one of {', '.join(choices)}.")
            if key == "tensorrt" and not isinstance(backend, list):  # bench lists backends and skips those it lacks
                import torch

                if not torch.cuda.is_available():
                    raise OdecamError("--backend tensorrt needs a CUDA GPU and this machine has none; on a CPU use "
                                      "--backend onnxruntime (the fastest there) or --backend torch.")
    from odecam.assets import EMBEDDED_CLIP, video_path

    for attr, flag in VIDEO_FLAGS.items():
        value = getattr(args, attr, None)
        if value == EMBEDDED_CLIP:  # the built-in clip, by name (a file of that name here wins)
            value = str(video_path(value))
            setattr(args, attr, value)
        if isinstance(value, str) and "://" not in value and not os.path.exists(value):
            raise OdecamError(f"{flag} file {value!r} does not exist; check the path.")
        if isinstance(value, str) and os.path.isdir(value):
            raise OdecamError(f"{flag} {value!r} is a folder; pass a video file (such as an MP4).")
        if isinstance(value, str) and os.path.isfile(value):
            from odecam.engine.images import still_image_format

            fmt = still_image_format(value)
            if fmt is not None:
                options = getattr(getattr(args, "_parser", None), "_option_string_actions", {})
                avatar = next((o for o in ("--source", "--avatar") if o in options), "--source")
                raise OdecamError(f"{flag} {value!r} is a still {fmt} image, not a video; pass a video file (such as "
                                  f"an MP4) as {flag}, or use this photo as the avatar with {avatar} {value}.")


def sentence(exc: BaseException, args: argparse.Namespace | None = None) -> str:
    """An error message as one line ending in a full stop; a camera that cannot be opened, on a command
    that also reads video files, names ``--video``."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text if text.endswith((".", "?", "!")) else text + "."
    capture = sys.modules.get("odecam.realtime.capture")
    failed = getattr(capture, "CaptureError", ()) if capture is not None else ()
    camera = failed and (isinstance(exc, failed) or isinstance(exc.__context__, failed))  # also when re-raised
    if camera and args is not None and hasattr(args, "video") and args.video is None and "--video" not in text:
        text = text[:-1] + ", or pass --video FILE to use a video file instead."
    return text


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if not args.verbose:
        quiet_video_libraries()
    if extras:
        sub = getattr(args, "_parser", parser)
        sub.print_usage(sys.stderr)
        print(f"{sub.prog}: error: {unknown_arguments(sub, extras)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # other libraries' warnings (onnx_ir, onnxscript, ...) are not the user's business
        for handler in logging.getLogger().handlers:
            handler.addFilter(lambda r: r.name.split(".")[0] == "odecam" or r.levelno >= logging.ERROR)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        preflight(args)
        return int(args._run(args) or 0)
    except OdecamError as exc:
        print(f"odecam {args.command}: error: {sentence(exc, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"odecam {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The ``odecam`` command line. Subcommands live in :mod:`odecam.commands`, one module each.

User mistakes (:class:`~odecam.errors.OdecamError`) print one sentence and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from odecam import __version__
from odecam.commands import COMMANDS
from odecam.errors import OdecamError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="odecam", description="Real-time motion transfer: animate a portrait "
                                     "with the motion of a driving video or webcam.")
    parser.add_argument("--version", action="version", version=f"odecam {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = importlib.import_module(f"odecam.commands.{name}")
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except OdecamError as exc:
        print(f"odecam {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"odecam {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

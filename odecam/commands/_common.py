"""Helpers shared by the subcommands: argparse value types and stopping an asyncio command on signals.

Every number a command takes is range-checked here, at parse time, the same way on every command: a bad
value prints that command's usage and one sentence (``argument --ode-steps: -3 is out of range; use a
whole number from 1 to 64``), exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
from typing import Callable

from odecam.config import MAX_ODE_STEPS, RULES

MAX_REFS = RULES[""]["num_refs"][2]


def int_range(lo: int, hi: int | None = None, multiple: int = 1) -> Callable[[str], int]:
    """argparse type: a whole number from ``lo`` to ``hi`` (no upper bound when None), a multiple of ``multiple``."""
    span = f"from {lo} to {hi}" if hi is not None else f"of at least {lo}"
    steps = f" in multiples of {multiple}" if multiple > 1 else ""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; use one {span}{steps}") from None
        if value < lo or (hi is not None and value > hi) or value % multiple:
            raise argparse.ArgumentTypeError(f"{value} is out of range; use a whole number {span}{steps}")
        return value

    parse.__name__ = "whole number"
    return parse


def float_range(lo: float, hi: float | None = None, lo_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number in [lo, hi] ((lo, hi] when ``lo_open``; no upper bound when None)."""
    low = f"greater than {lo:g}" if lo_open else f"at least {lo:g}"
    span = f"{low} and at most {hi:g}" if hi is not None else low
    if not math.isfinite(lo) and hi is None:
        span = "that is finite"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; use one {span}") from None
        ok = math.isfinite(value) and (value > lo if lo_open else value >= lo) and (hi is None or value <= hi)
        if not ok:
            raise argparse.ArgumentTypeError(f"{text} is out of range; use a number {span}")
        return value

    parse.__name__ = "number"
    return parse


#: a whole number >= 1 (frames, steps, peers, ...)
positive_int = int_range(1)
#: a whole number >= 0
non_negative_int = int_range(0)
#: a number > 0, finite (also used for seconds)
positive_float = float_range(0.0, lo_open=True)
#: a number >= 0, finite
non_negative_float = float_range(0.0)
#: any finite number (pan offsets, ...)
finite_float = float_range(-math.inf)
#: fixed ODE steps per frame: what a model config may ask for
ode_steps = int_range(1, MAX_ODE_STEPS)
#: reference views N: what a model config may hold
num_refs = int_range(0, MAX_REFS)
#: frames per second of an output
fps = float_range(0.0, 240.0, lo_open=True)
#: CPU threads
threads = int_range(1, 1024)
#: a model's square output size
image_size = int_range(*RULES[""]["image_size"][1:])


def port(text: str) -> int:
    """argparse type: a TCP port, 0 picks a free one."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535; 0 picks a free one)") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535; 0 picks a free one)")
    return value


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGINT / SIGTERM (where the running loop supports signal handlers)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass


def add_keep_tilt_argument(p, what: str = "avatar photo") -> None:
    """``--keep-tilt``: take a tilted avatar photo as it is instead of turning its face upright
    (:func:`odecam.engine.portrait.find_portrait`'s ``level``)."""
    from odecam.config import LEVEL_MIN_ROLL

    p.add_argument("--keep-tilt", action="store_true",
                   help=f"keep a tilted {what}'s tilt (default: a face rolled more than {LEVEL_MIN_ROLL:g} degrees "
                        "is turned upright before cropping, which is how the model follows head roll best)")


def add_paste_back_argument(p, where: str = "the output") -> None:
    """``--paste-back``: the avatar shown in its whole photo, the rendered square blended back where it was cut
    from (:mod:`odecam.engine.paste_back`)."""
    p.add_argument("--paste-back", action="store_true",
                   help=f"show the avatar in its whole photo: each rendered face square is blended back into the "
                        f"--source photo where it was cut from, and {where} shows the photo (default: the square alone)")


def add_blink_argument(p) -> None:
    """``--blink`` / ``--no-blink``: blink retargeting (:mod:`odecam.engine.blink`); default: on when it can be."""
    import argparse

    p.add_argument("--blink", action=argparse.BooleanOptionalAction, default=None,
                   help="the avatar closes its eyes when you do (default: on with a model whose keypoints sit on the "
                        "eyelids, like the shipped one, and an avatar whose eyes are found; --no-blink: off)")


def add_mouth_cavity_argument(p) -> None:
    """``--mouth-cavity`` / ``--no-mouth-cavity``: mouth retargeting (:mod:`odecam.engine.mouth`); default on."""
    import argparse

    p.add_argument("--mouth-cavity", action=argparse.BooleanOptionalAction, default=None,
                   help="an avatar photographed with its teeth showing opens onto a dark mouth under its upper "
                        "teeth when you open wide, instead of stretched teeth (default: on where the model and "
                        "photo allow it; --no-mouth-cavity: off)")


def add_lip_gain_argument(p) -> None:
    """``--lip-gain G``: lip retargeting (:func:`odecam.engine.animator.lip_retargeting`); default: the engine's."""
    from odecam.config import DEFAULT_LIP_GAIN, LIP_GAIN_RANGE

    p.add_argument("--lip-gain", type=float_range(*LIP_GAIN_RANGE), default=None, metavar="G",
                   help=f"the avatar's mouth opens G times as far as yours beyond your neutral pose (default "
                        f"{DEFAULT_LIP_GAIN:g} with a model whose keypoints sit on the lips, like the shipped one; "
                        "1 = as it is)")

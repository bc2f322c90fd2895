"""Spin-waiting chosen at run time: onnxruntime's threads spin while a graph runs only when that is faster now.

onnxruntime's intra-op threads can spin-wait for work between the nodes of a graph, or sleep. On an idle 2-core
machine spinning makes a frame 1.15x faster (benchmarks/RESULTS.md, ``benchmarks/spin_ab.py``); beside one
CPU-bound program (a video call, a browser) it makes it 1.3x to 1.7x slower, because the spinning threads take
the core the straggler needs. Which holds changes while odecam runs, and a session's setting is fixed when it is
built, so ``spin="auto"`` keeps two sessions of each graph, one of each setting, and :class:`SpinChooser` picks
per run:

* it runs the chosen setting and, every ``probe_every``-th run, the other one; a probe faster than the chosen
  setting's median is followed by another probe at once;
* it keeps the last ``keep`` run times of each setting and switches when the other's median is faster than the
  chosen one's by more than ``margin``.

A probe costs one slow run in ``probe_every`` when the other setting is the slower one; a change of load is
followed within about ``keep / 2`` runs when the chosen setting turns slow (its own times) and within
``probe_every`` plus ``keep / 2`` runs when the other one turns fast (its probes, back to back).

The cost of 'auto': a second session per graph, about 36 MB more memory per backend (the default model at N=1,
after 100 frames: 150 against 115 MB) and 0.04 s more to build (the ONNX bytes are shared).
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

SPIN_MODES = ("off", "on", "auto")


def spin_mode(spin: bool | str | None) -> str:
    """``False`` / ``None`` / 'off' -> 'off', ``True`` / 'on' -> 'on', 'auto' -> 'auto'."""
    if spin is None or spin is False:
        return "off"
    if spin is True:
        return "on"
    if isinstance(spin, str) and spin in SPIN_MODES:
        return spin
    raise ValueError(f"spin must be one of {', '.join(SPIN_MODES)} (got {spin!r}).")


@dataclass
class SpinChooser:
    """Which setting (spin-waiting or sleeping threads) the next run of one graph uses; fed its run times."""

    probe_every: int = 48
    keep: int = 9
    margin: float = 0.05
    spinning: bool = True  # the setting chosen now
    runs: int = 0
    spun: int = 0  # runs that used the spinning session (probes included)
    _times: dict[bool, deque] = field(default_factory=dict, repr=False)
    _probe_again: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.probe_every < 2 or self.keep < 3:
            raise ValueError("SpinChooser needs probe_every >= 2 and keep >= 3.")
        self._times = {True: deque(maxlen=self.keep), False: deque(maxlen=self.keep)}

    def next(self) -> bool:
        """The setting of the next run: the chosen one, or the other one to probe it (first runs included)."""
        self.runs += 1
        other = not self.spinning
        if self._probe_again or len(self._times[other]) < 3 or self.runs % self.probe_every == 0:
            self._probe_again = False
            return other
        return self.spinning

    def record(self, spin: bool, seconds: float) -> None:
        """A run of setting ``spin`` took ``seconds``: keep it, and switch when the other setting is faster."""
        self.spun += spin
        self._times[spin].append(seconds)
        mine, other = self._times[self.spinning], self._times[not self.spinning]
        if len(mine) < 3:
            return
        bar = statistics.median(mine) * (1 - self.margin)
        if len(other) >= 3 and statistics.median(other) < bar:
            self.spinning = not self.spinning
        elif spin != self.spinning and seconds < bar:  # a promising probe: its setting's old times may be stale
            self._probe_again = True

    def median_ms(self) -> dict[str, float | None]:
        """The median of the kept run times per setting, in ms (None before any)."""
        return {("spin" if s else "sleep"): (statistics.median(t) * 1000.0 if t else None) for s, t in self._times.items()}

    @property
    def spin_share(self) -> float:
        """The share of runs so far that spun."""
        return self.spun / self.runs if self.runs else 0.0


class AdaptiveSpinSession:
    """Two onnxruntime sessions of one graph (``sessions[False]`` sleeping threads, ``sessions[True]`` spinning
    threads that stop when the run returns), run through a :class:`SpinChooser`. Same outputs either way: the
    setting changes when a thread waits, not what it computes."""

    def __init__(self, sessions: dict[bool, Any], chooser: SpinChooser | None = None) -> None:
        self.sessions = sessions
        self.chooser = chooser or SpinChooser()

    def run(self, output_names: list[str] | None, feed: dict[str, Any]) -> list[Any]:
        spin = self.chooser.next()
        start = time.perf_counter()
        out = self.sessions[spin].run(output_names, feed)
        self.chooser.record(spin, time.perf_counter() - start)
        return out

    def __getattr__(self, name: str) -> Any:  # get_inputs, get_outputs, ... of the (identical) graph
        return getattr(self.sessions[False], name)

"""Per-stage latency bookkeeping for the per-frame path."""

from __future__ import annotations

import time
from collections import deque
from contextlib import contextmanager
from typing import Iterator

import numpy as np

#: the per-frame stages, in order
STAGES = ("keypoints", "coarse_motion", "ode", "warp", "appearance", "decoder")

#: the order of :meth:`StageTimes.summary`: the model's stages, blink retargeting's eye reading after F_K, and the
#: compiled backends' one ``frame`` stage
SUMMARY_ORDER = STAGES[:1] + ("eyes",) + STAGES[1:] + ("frame",)


class StageTimes:
    """Rolling per-stage wall-clock times in milliseconds (the last ``history`` frames)."""

    def __init__(self, history: int = 1000) -> None:
        self.history = history
        self.samples: dict[str, deque[float]] = {}
        self.last: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - t0) * 1000.0)

    def add(self, name: str, ms: float) -> None:
        self.last[name] = ms
        q = self.samples.get(name)
        if q is None:
            q = self.samples[name] = deque(maxlen=self.history)
        q.append(ms)

    def percentiles(self, qs: tuple[float, ...] = (50, 95, 99)) -> dict[str, dict[str, float]]:
        """{stage: {'p50': ms, 'p95': ms, 'p99': ms, 'n': count}}."""
        out = {}
        for name, q in self.samples.items():
            arr = np.fromiter(q, dtype=np.float64)
            out[name] = {f"p{int(p)}": float(np.percentile(arr, p)) for p in qs} | {"n": len(arr)}
        return out

    def summary(self) -> str:
        """One line of per-frame latency: 'latency p50: total 12.3 | keypoints 2.1 | ... ms'. No fps: a rate is
        frames over wall time, which only the caller that ran the loop knows."""
        pct = self.percentiles((50,))
        parts = []
        if "total" in pct:
            t = pct["total"]["p50"]
            parts.append(f"latency p50: total {t:.1f}")
        parts += [f"{s} {pct[s]['p50']:.1f}" for s in SUMMARY_ORDER if s in pct]
        return " | ".join(parts) + " ms"

    def reset(self) -> None:
        self.samples.clear()
        self.last.clear()

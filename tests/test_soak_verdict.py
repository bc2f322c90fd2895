"""benchmarks/soak_serve.py's verdict on recorded samples: churn is not growth, a leak is."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "soak_serve.py"


def _samples(leak_tasks_per_min: float, seed: int = 0) -> list[dict]:
    """A 600 s soak sampled once a second: 4 steady peers plus 0-2 churn peers (random), 10 asyncio tasks
    and 2 fds per peer, RSS settled; then 40 s after every client left. ``leak_tasks_per_min`` tasks that
    are never released accumulate over the soak."""
    rng = np.random.default_rng(seed)
    out = []
    # the churn peers: fewer in the second quarter, more in the last (what made a 300 s run read as growth)
    for t in range(1, 601):
        churn = rng.choice(3, p=[0.6, 0.3, 0.1] if t < 300 else [0.1, 0.3, 0.6])
        peers = 4 + int(churn)
        out.append({"t": float(t), "rss_mib": 390.0 + rng.normal(0, 0.3), "fds": 16 + 2 * peers,
                    "threads": 8, "tasks": 30 + 10 * peers + int(leak_tasks_per_min * t / 60), "peers": peers,
                    "http_open": 4, "lag_p50_ms": 0.5, "lag_max_ms": 2.0, "phase": "soak"})
    for t in range(601, 641):
        out.append({"t": float(t), "rss_mib": 390.0, "fds": 8, "threads": 4, "tasks": 3, "peers": 0,
                    "http_open": 0, "lag_p50_ms": 0.4, "lag_max_ms": 1.0, "phase": "after"})
    return out


def test_more_churn_peers_late_in_the_soak_is_not_growth():
    verdict = runpy.run_path(str(SCRIPT))["verdict"]
    v = verdict(_samples(0.0))
    assert v["unbounded_growth"] == []
    assert v["tasks"]["median_q4"] == v["tasks"]["median_q2"]  # compared at the same number of peers
    assert v["after_all_left"]["fds_back_to_start"] and v["after_all_left"]["peers_closed"]


def test_tasks_that_are_never_released_are_growth():
    verdict = runpy.run_path(str(SCRIPT))["verdict"]
    v = verdict(_samples(1.5))  # 1.5 tasks a minute: 7-8 more in the last quarter than in the second
    assert v["unbounded_growth"] == ["tasks"]
    assert v["tasks"]["median_q4"] - v["tasks"]["median_q2"] >= 6

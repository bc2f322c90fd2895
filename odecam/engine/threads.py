"""Backend choice and CPU thread policy for every path that runs the model (demo, live, serve,
receive, eval).

``--backend auto`` (the default of the rendering commands) is :func:`choose_backend`: onnxruntime on
a CPU when it is installed (the fastest and the steadiest under load there: see
``benchmarks/bench_load.py``), torch where CUDA is available.

A multi-threaded operator finishes only when its slowest thread does. On cores shared with other
busy programs some of our threads are descheduled for a whole time slice (milliseconds) in every
parallel region, and the spin-waiting of the others burns the share of the CPU that the straggler
needs: the default torch set-up fell from about 20 fps to 0.4-1.5 fps beside one CPU-bound program.
So the policy is:

* count the cores this process may run on (``os.sched_getaffinity``) and how many of them other
  programs at normal priority keep busy right now (``/proc/stat`` sampled over ``SAMPLE_S``; niced
  background jobs yield their cores and do not count; the 1-minute load average where that file is
  missing), and use one intra-op thread per *free* core, at least one;
* never spin-wait where it can hurt: OpenMP's ``OMP_WAIT_POLICY`` is ``PASSIVE`` (set by
  ``odecam/__init__.py`` before torch loads its OpenMP runtime), and onnxruntime's threads spin only while
  a graph runs and only while that is measured to be faster (``OnnxRuntimeBackend``'s ``spin='auto'``,
  :mod:`odecam.engine.spin`: it stops spinning within a few frames when another program takes a core);
* beside a compiled backend (onnxruntime, tensorrt) torch only converts frames: one torch thread.

``ODECAM_THREADS=N`` overrides the measured count (N intra-op threads); ``OMP_NUM_THREADS`` is
respected as an upper bound for torch, as torch itself does. ``ODECAM_SPIN=auto|on|off`` sets onnxruntime's
spin-waiting (default auto; ``off`` for a laptop on battery: spinning threads burn power while they wait).

Usage (once per process, before the backend is built)::

    plan = apply_thread_policy("onnxruntime")   # sets torch's threads; ORT sessions read plan.threads
    print(plan.describe())
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from odecam.errors import OdecamError

__all__ = ["ThreadPlan", "cpu_cores", "busy_cores", "plan_threads", "apply_thread_policy", "current_plan",
           "choose_backend", "backend_options", "ENV_THREADS", "ENV_SPIN", "AUTO"]

AUTO = "auto"

ENV_THREADS = "ODECAM_THREADS"
ENV_SPIN = "ODECAM_SPIN"  # onnxruntime's spin-waiting in the rendering commands: auto (default), on, off
#: how long /proc/stat is sampled to see how busy the cores are
SAMPLE_S = 0.25
#: a core counts as taken by others when they use at least this fraction of it (rounded core count)
_ROUND = 0.5

_PLAN: "ThreadPlan | None" = None


@dataclass(frozen=True)
class ThreadPlan:
    """The thread counts chosen for this process.

    Attributes:
        cores: cores this process may run on (its CPU affinity).
        busy: cores' worth of CPU time other programs used while sampled (0 .. cores).
        threads: intra-op threads for the model's runtime (onnxruntime, or torch when torch computes).
        torch_threads: threads torch was set to (1 beside onnxruntime / tensorrt).
        source: ``"measured"`` or ``"ODECAM_THREADS"``.
    """

    cores: int
    busy: float
    threads: int
    torch_threads: int
    source: str = "measured"

    def describe(self) -> str:
        why = (f"{self.cores} cores, {self.busy:.1f} busy with other programs" if self.source == "measured"
               else f"{ENV_THREADS}={self.threads}")
        return f"{self.threads} model thread{'s' if self.threads != 1 else ''} ({why})"


def cpu_cores() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _cpu_times(cpus: set[int] | None) -> tuple[float, float] | None:
    """(busy, total) jiffies summed over ``cpus`` (all when None) from /proc/stat, or None; busy leaves out
    idle, iowait and niced time."""
    try:
        with open("/proc/stat") as f:
            lines = f.readlines()
    except OSError:
        return None
    busy = total = 0.0
    for line in lines:
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *vals = line.split()
        try:
            idx = int(name[3:])
        except ValueError:
            continue
        if cpus is not None and idx not in cpus:
            continue
        v = [float(x) for x in vals[:8]] + [0.0] * max(0, 8 - len(vals))
        # user, system, irq, softirq, steal; not nice: niced programs (background jobs) yield the core to us
        total += sum(v)
        busy += v[0] + v[2] + v[5] + v[6] + v[7]
    return (busy, total) if total > 0 else None


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def busy_cores(sample_s: float = SAMPLE_S) -> float:
    """Cores' worth of CPU time that *other* programs use right now, among this process's cores.

    Measured from /proc/stat over ``sample_s`` (this process's own use subtracted); falls back to the
    1-minute load average, capped at the core count.
    """
    cores = cpu_cores()
    try:
        cpus = set(os.sched_getaffinity(0))
    except AttributeError:
        cpus = None
    a = _cpu_times(cpus)
    own_a = _own_cpu_seconds()
    if a is not None:
        time.sleep(sample_s)
        b = _cpu_times(cpus)
        own_b = _own_cpu_seconds()
        if b is not None and b[1] > a[1]:
            frac = (b[0] - a[0]) / (b[1] - a[1])  # fraction of the cores busy, all programs
            hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
            wall_jiffies = (b[1] - a[1]) / max(1, len(cpus) if cpus else cores)
            own = (own_b - own_a) * hz / max(1e-9, wall_jiffies)  # our own cores' worth
            return float(min(cores, max(0.0, frac * cores - own)))
    try:
        return float(min(cores, os.getloadavg()[0]))
    except (AttributeError, OSError):
        return 0.0


def plan_threads(backend: str = "torch", sample_s: float = SAMPLE_S) -> ThreadPlan:
    """The thread plan for ``backend`` (a canonical backend name) on this machine, now."""
    cores = cpu_cores()
    env = os.environ.get(ENV_THREADS, "").strip()
    if env.isdigit() and int(env) > 0:
        threads, busy, source = min(int(env), 256), 0.0, ENV_THREADS
    else:
        busy = busy_cores(sample_s)
        threads, source = max(1, min(cores, int(cores - busy + _ROUND))), "measured"
    if backend in ("onnxruntime", "tensorrt"):
        torch_threads = 1
    else:
        torch_threads = threads
        omp = os.environ.get("OMP_NUM_THREADS", "").strip()
        if omp.isdigit() and int(omp) > 0:
            torch_threads = min(torch_threads, int(omp))
    return ThreadPlan(cores=cores, busy=round(busy, 2), threads=threads, torch_threads=torch_threads, source=source)


def apply_thread_policy(backend: str = "torch", sample_s: float = SAMPLE_S) -> ThreadPlan:
    """Choose the plan for ``backend`` and apply torch's part (``torch.set_num_threads``); the plan is
    kept for onnxruntime sessions built later in this process (see :func:`current_plan`)."""
    global _PLAN
    import torch

    plan = plan_threads(backend, sample_s)
    torch.set_num_threads(plan.torch_threads)
    _PLAN = plan
    return plan


def current_plan() -> ThreadPlan | None:
    """The plan last applied in this process (None before :func:`apply_thread_policy`)."""
    return _PLAN


def choose_backend(name: str | None = AUTO) -> str:
    """The canonical backend for ``--backend NAME``: ``auto`` (or None) is onnxruntime on a CPU when it is
    installed, else torch; torch where CUDA is available. Other names are checked by
    :func:`odecam.engine.backends.backend_name` (:class:`~odecam.engine.backends.BackendError` for unknown
    ones)."""
    if name is None or (isinstance(name, str) and name.strip().lower() == AUTO):
        import importlib.util

        import torch

        if torch.cuda.is_available():
            return "torch"
        return "onnxruntime" if importlib.util.find_spec("onnxruntime") is not None else "torch"
    from odecam.engine.backends import backend_name

    return backend_name(name)


def backend_options(backend: str, plan: ThreadPlan | None = None) -> dict:
    """Keyword options for :func:`odecam.engine.backends.get_backend` that carry the thread plan
    (onnxruntime's ``threads``; the other backends take none)."""
    plan = plan or current_plan()
    if backend != "onnxruntime":
        return {}
    options: dict = {"threads": plan.threads} if plan is not None else {}
    spin = os.environ.get(ENV_SPIN, "").strip()
    if spin:
        from odecam.engine.spin import SPIN_MODES

        if spin not in SPIN_MODES:
            raise OdecamError(f"{ENV_SPIN}={spin!r} is not a spin-waiting setting; use one of {', '.join(SPIN_MODES)} "
                              "(or leave it unset for auto).")
        options["spin"] = spin
    return options

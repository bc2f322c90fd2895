"""Fixed-step ODE solvers for F_E (paper Eq. 4): unrolled for inference and export, torchdiffeq for training.

Both integrate dy/dt = f(t, y) from t = 0 to t = 1 on the same uniform grid of ``steps`` steps and
compute the same function: the unrolled steps copy torchdiffeq's fixed-grid formulas exactly
(``euler``, ``midpoint``, and ``rk4``, which torchdiffeq implements as the 3/8-rule variant).
The unrolled form is plain tensor arithmetic, so TorchScript, ONNX and TensorRT see a static graph.

Public API: :data:`SOLVERS` (the registry), :func:`odeint_unrolled`, :func:`odeint_torchdiffeq`.
"""

from __future__ import annotations

from typing import Callable

import torch

ODEFunc = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # f(t, y) -> dy/dt
StepFunc = Callable[[ODEFunc, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

_ONE_THIRD = 1 / 3
_TWO_THIRDS = 2 / 3


def _euler_step(f: ODEFunc, t0: torch.Tensor, dt: torch.Tensor, t1: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
    return dt * f(t0, y0)


def _midpoint_step(f: ODEFunc, t0: torch.Tensor, dt: torch.Tensor, t1: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
    half_dt = 0.5 * dt
    y_mid = y0 + f(t0, y0) * half_dt
    return dt * f(t0 + half_dt, y_mid)


def _rk4_38_step(f: ODEFunc, t0: torch.Tensor, dt: torch.Tensor, t1: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
    k1 = f(t0, y0)
    k2 = f(t0 + dt * _ONE_THIRD, y0 + dt * k1 * _ONE_THIRD)
    k3 = f(t0 + dt * _TWO_THIRDS, y0 + dt * (k2 - k1 * _ONE_THIRD))
    k4 = f(t1, y0 + dt * (k1 - k2 + k3))
    return (k1 + 3 * (k2 + k3) + k4) * dt * 0.125


#: method name -> (step function, function evaluations per step)
SOLVERS: dict[str, tuple[StepFunc, int]] = {
    "euler": (_euler_step, 1),
    "midpoint": (_midpoint_step, 2),
    "rk4": (_rk4_38_step, 4),
}


def _check_method(method: str, steps: int) -> StepFunc:
    if method not in SOLVERS:
        raise ValueError(f"unknown ODE method {method!r}; choose one of {sorted(SOLVERS)}")
    if steps < 1:
        raise ValueError(f"the ODE needs at least one step, got steps={steps}")
    return SOLVERS[method][0]


def time_grid(steps: int, like: torch.Tensor) -> torch.Tensor:
    """The uniform grid 0 = t_0 < ... < t_steps = 1 shared by both integrators."""
    return torch.linspace(0.0, 1.0, steps + 1, dtype=like.dtype, device=like.device)


def odeint_unrolled(f: ODEFunc, y0: torch.Tensor, method: str = "euler", steps: int = 4) -> torch.Tensor:
    """Integrate dy/dt = f(t, y) over [0, 1] with ``steps`` fixed steps; returns y(1) (shape of y0)."""
    step = _check_method(method, steps)
    grid = time_grid(steps, y0)
    y = y0
    for i in range(steps):
        t0, t1 = grid[i], grid[i + 1]
        y = y + step(f, t0, t1 - t0, t1, y)
    return y


def odeint_torchdiffeq(f: ODEFunc, y0: torch.Tensor, method: str = "euler", steps: int = 4,
                       adjoint: bool = False, adjoint_params: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
    """The same integral through torchdiffeq (``odeint`` or ``odeint_adjoint``), for training."""
    import torchdiffeq

    _check_method(method, steps)
    grid = time_grid(steps, y0)
    t = grid[[0, -1]]
    # the grid follows the requested interval, so the adjoint's backward solve (1 -> 0) gets it too
    options = {"grid_constructor": lambda func, y, tt: torch.linspace(tt[0], tt[-1], steps + 1,
                                                                       dtype=tt.dtype, device=tt.device)}
    if adjoint:
        return torchdiffeq.odeint_adjoint(f, y0, t, method=method, options=options,
                                          adjoint_params=adjoint_params)[-1]
    return torchdiffeq.odeint(f, y0, t, method=method, options=options)[-1]

"""F_E: motion evolution (paper Eq. 4). dT/dt = F_E(T^(t), t) for t in [0, 1], T^(0) = T~.

The state T is the displacement field (V, 2, h, w). F_E is a small convolutional network over
[T, t, c] where c is a fixed context computed once per frame from F_C's features (a constant input
of the dynamics, so the ODE is still Eq. 4 for a given frame; ``context_channels = 0`` drops it).
The last layer is zero-initialised: an untrained F_E is the identity map T^(1) = T~.
"""

from __future__ import annotations

import torch
from torch import nn

from odecam.config import EvolutionConfig
from odecam.model.ode_solvers import odeint_torchdiffeq, odeint_unrolled


class EvolutionField(nn.Module):
    """The vector field F_E(T, t; c): (V, 2, h, w) -> (V, 2, h, w)."""

    def __init__(self, cfg: EvolutionConfig, feature_channels: int) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.context_channels
        self.context = nn.Conv2d(feature_channels, c, 1) if c > 0 else None
        layers: list[nn.Module] = []
        ch = 2 + 1 + c
        for _ in range(cfg.num_layers - 1):
            layers += [nn.Conv2d(ch, cfg.hidden, 3, padding=1), nn.Tanh()]
            ch = cfg.hidden
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(ch, 2, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def make_context(self, features: torch.Tensor) -> torch.Tensor | None:
        """F_C features (V, F, h, w) -> context (V, c, h, w), or None."""
        return self.context(features) if self.context is not None else None

    def forward(self, t: torch.Tensor, state: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """The state T stays in its own dtype (fp32, also in fp16 models); the convolutions run in the
        weights' dtype and dT/dt comes back in the state's."""
        v, _, h, w = state.shape
        dtype = self.out.weight.dtype
        tt = (t * torch.ones_like(state[:, :1])).to(state.dtype)
        x = [state.to(dtype), tt.to(dtype)] if context is None else [state.to(dtype), tt.to(dtype), context.to(dtype)]
        return self.out(self.body(torch.cat(x, dim=1))).to(state.dtype)


class MotionEvolution(nn.Module):
    """F_E with its solver: T~ (V, 2, h, w) -> T^(1) (V, 2, h, w).

    ``solver='unrolled'`` (inference, export) or ``'torchdiffeq'`` (training; ``cfg.adjoint`` picks
    ``odeint_adjoint``). Both use ``cfg.method`` with ``cfg.steps`` fixed steps and agree to float
    rounding.
    """

    def __init__(self, cfg: EvolutionConfig, feature_channels: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.field = EvolutionField(cfg, feature_channels)

    def forward(self, coarse: torch.Tensor, features: torch.Tensor, solver: str = "unrolled",
                steps: int | None = None) -> torch.Tensor:
        steps = steps or self.cfg.steps
        context = self.field.make_context(features)
        if solver == "unrolled":
            return odeint_unrolled(lambda t, y: self.field(t, y, context), coarse, self.cfg.method, steps)
        if solver != "torchdiffeq":
            raise ValueError(f"unknown solver {solver!r}; use 'unrolled' or 'torchdiffeq'")
        if not self.cfg.adjoint:
            return odeint_torchdiffeq(lambda t, y: self.field(t, y, context), coarse, self.cfg.method, steps)
        # adjoint: carry the context in the state (with zero dynamics) so its gradient flows through y0
        n = coarse.shape[1]

        def augmented(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            ctx = y[:, n:] if context is not None else None
            dy = self.field(t, y[:, :n], ctx)
            return torch.cat([dy, torch.zeros_like(y[:, n:])], dim=1)

        y0 = coarse if context is None else torch.cat([coarse, context], dim=1)
        y1 = odeint_torchdiffeq(augmented, y0, self.cfg.method, steps, adjoint=True,
                                adjoint_params=tuple(self.field.parameters()))
        return y1[:, :n]

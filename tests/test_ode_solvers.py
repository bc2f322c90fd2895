"""F_E's solvers: the unrolled fixed-step solver computes what torchdiffeq computes."""

import math

import pytest
import torch

from odecam.config import EvolutionConfig
from odecam.model.motion_evolution import MotionEvolution
from odecam.model.ode_solvers import SOLVERS, odeint_torchdiffeq, odeint_unrolled


@pytest.mark.parametrize("method", sorted(SOLVERS))
@pytest.mark.parametrize("steps", [1, 3, 4, 7])
def test_unrolled_matches_torchdiffeq_on_random_fields(method, steps):
    torch.manual_seed(steps)
    cfg = EvolutionConfig(hidden=16, num_layers=3, context_channels=4, method=method, steps=steps)
    evo = MotionEvolution(cfg, feature_channels=12)
    with torch.no_grad():
        for p in evo.parameters():
            p.normal_(0, 0.3)
    coarse = torch.randn(2, 2, 16, 20) * 0.2
    feats = torch.randn(2, 12, 16, 20)
    with torch.no_grad():
        a = evo(coarse, feats, solver="unrolled")
        b = evo(coarse, feats, solver="torchdiffeq")
    assert (a - coarse).abs().max() > 1e-3  # the field really moves the state
    assert (a - b).abs().max().item() <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method,steps,tol", [("euler", 1000, 1e-3), ("midpoint", 50, 1e-4), ("rk4", 10, 1e-6)])
def test_known_answer_exponential_decay(dtype, method, steps, tol):
    y0 = torch.tensor([1.0, 2.0], dtype=dtype)
    y1 = odeint_unrolled(lambda t, y: -y, y0, method, steps)
    expected = y0 * math.exp(-1.0)
    tol = max(tol, 1e-6 if dtype == torch.float32 else 0)
    assert torch.allclose(y1, expected, atol=tol, rtol=0)
    assert torch.allclose(y1, odeint_torchdiffeq(lambda t, y: -y, y0, method, steps), atol=1e-6)


@pytest.mark.parametrize("method", ["midpoint", "rk4"])
def test_time_dependent_field_exact(method):
    # dy/dt = t  ->  y(1) = y0 + 1/2, exact for second order and up
    y0 = torch.zeros(3)
    y1 = odeint_unrolled(lambda t, y: t * torch.ones_like(y), y0, method, 3)
    assert torch.allclose(y1, torch.full((3,), 0.5), atol=1e-6)


def test_untrained_evolution_is_identity():
    evo = MotionEvolution(EvolutionConfig(), feature_channels=8)
    coarse = torch.randn(1, 2, 8, 8)
    assert torch.equal(evo(coarse, torch.randn(1, 8, 8, 8)), coarse)


def test_adjoint_gradients_match_direct():
    torch.manual_seed(1)
    cfg = EvolutionConfig(hidden=8, num_layers=2, context_channels=3, method="rk4", steps=8)
    evo = MotionEvolution(cfg, feature_channels=5)
    with torch.no_grad():
        for p in evo.parameters():
            p.normal_(0, 0.1)
    coarse = torch.randn(1, 2, 6, 6, requires_grad=True)
    feats = torch.randn(1, 5, 6, 6, requires_grad=True)
    grads = []
    for adjoint in (False, True):
        evo.cfg.adjoint = adjoint
        out = evo(coarse, feats, solver="torchdiffeq")
        g = torch.autograd.grad(out.square().sum(), [coarse, feats, evo.field.out.weight])
        grads.append(g)
    for a, b in zip(*grads):  # the adjoint solves the continuous adjoint ODE: equal up to solver error
        assert (a - b).abs().max() <= 1e-3 * b.abs().max()


def test_bad_method_is_refused():
    with pytest.raises(ValueError, match="unknown ODE method"):
        odeint_unrolled(lambda t, y: y, torch.zeros(1), "dopri5", 2)

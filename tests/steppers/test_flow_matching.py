"""Conditional flow matching: the path and velocity in closed form, exact sampling with an oracle
velocity field, operator calls per step, seeding, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from sciflow.steppers.flow_matching import FlowMatching, make_time_grid
from tests.steppers.helpers import NX, CallCounter, make_stepper

SCALE = 0.5


def fm(**kw) -> FlowMatching:
    return make_stepper({"class_path": "flow_matching", "init_args": kw}, residual_scale=[SCALE])


class PointOracle(nn.Module):
    """The exact velocity field that carries N(0, I) to the point ``x1`` along the path
    ``x_tau = (1 - (1 - s) tau) x0 + tau x1``: ``v(x, tau) = (x1 - (1 - s) x) / (1 - (1 - s) tau)``.
    It reads the noised state from the last input channel and tau from the last cond entry."""

    def __init__(self, x1: Tensor, sigma_min: float):
        super().__init__()
        self.x1, self.s = x1, sigma_min

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        state, tau = x[:, -1:], cond[:, -1].view(-1, 1, 1)
        return (self.x1 - (1 - self.s) * state) / (1 - (1 - self.s) * tau)


def test_interpolant_and_velocity_closed_form():
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(3, 1, NX, generator=g), torch.randn(3, 1, NX, generator=g)
    tau = torch.tensor([0.0, 0.3, 1.0])
    for s in (0.0, 0.1):
        f = fm(sigma_min=s)
        xt = f.interpolate(x0, x1, tau)
        for b in range(3):
            t = float(tau[b])
            torch.testing.assert_close(xt[b], (1 - (1 - s) * t) * x0[b] + t * x1[b])
        torch.testing.assert_close(xt[0], x0[0])
        torch.testing.assert_close(xt[2], x1[2] + s * x0[2])
        torch.testing.assert_close(f.velocity(x0, x1), x1 - (1 - s) * x0)
        # the velocity is the derivative of the path
        h = 1e-3
        fd = (f.interpolate(x0, x1, tau.clamp(max=1 - h) + h) - f.interpolate(x0, x1, tau.clamp(max=1 - h))) / h
        torch.testing.assert_close(fd, f.velocity(x0, x1), atol=1e-3, rtol=1e-3)


def test_oracle_velocity_has_zero_training_loss():
    """Checks the operator sees x_tau in its state channel and tau in its last cond entry."""
    g = torch.Generator().manual_seed(1)
    prev, target = torch.randn(4, 1, 1, NX, generator=g), torch.randn(4, 1, NX, generator=g)
    f = fm(sigma_min=0.05)
    y = (target - prev[:, -1]) / SCALE
    f.operator = PointOracle(y, 0.05)
    loss = f.loss_at(prev, target, torch.zeros(4, 1), None, level=torch.tensor([0.0, 0.2, 0.7, 0.99]),
                     noise=torch.randn(4, 1, NX, generator=g))
    assert float(loss) < 1e-9
    f.operator = PointOracle(torch.zeros_like(y), 0.05)  # a wrong field is penalised
    assert float(f.loss(prev, target, torch.zeros(4, 1))) > 0.1


@pytest.mark.parametrize("solver, n_steps, grid, sigma_min", [
    ("euler", 1, "uniform", 0.0),
    ("midpoint", 1, "uniform", 0.0),
    ("euler", 3, "cosine", 0.0),
    ("midpoint", 2, "uniform", 0.0),
    ("euler", None, [0.0, 0.1, 0.5, 1.0], 0.0),
    ("heun", 1, "uniform", 0.01),  # Heun evaluates at tau = 1, where sigma_min = 0 is singular
    ("heun", 4, "cosine", 0.01),
    ("midpoint", 3, "cosine", 0.01),
])
def test_oracle_sampling_lands_on_the_endpoint(solver, n_steps, grid, sigma_min):
    """Straight paths make every solver exact: the sample is x1 + sigma_min x0, x0 the start noise."""
    g = torch.Generator().manual_seed(2)
    prev, x1 = torch.randn(3, 1, 1, NX, generator=g), torch.randn(3, 1, NX, generator=g)
    f = fm(solver=solver, n_steps=n_steps, time_grid=grid, sigma_min=sigma_min)
    f.operator = PointOracle(x1, sigma_min)
    out = f.step(prev, torch.zeros(3, 1), generator=torch.Generator().manual_seed(7))
    x0 = torch.randn(3, 1, NX, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(out, prev[:, -1] + SCALE * (x1 + sigma_min * x0), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("solver, n_steps, grid, calls", [
    ("euler", 1, "uniform", 1), ("euler", 4, "uniform", 4), ("midpoint", 3, "cosine", 6),
    ("heun", 3, "uniform", 6), ("heun", None, [0.0, 0.5, 1.0], 4), ("euler", None, "uniform", 4),
])
def test_operator_calls_per_step(solver, n_steps, grid, calls):
    f = fm(solver=solver, n_steps=n_steps, time_grid=grid)
    assert f.calls_per_step == calls
    f.operator = CallCounter(f.operator)
    f.step(torch.randn(2, 1, 1, NX), torch.zeros(2, 1), generator=torch.Generator().manual_seed(0))
    assert f.operator.calls == calls


def test_time_grids():
    assert make_time_grid("uniform", 4) == [0.0, 0.25, 0.5, 0.75, 1.0]
    cos = make_time_grid("cosine", 2)
    assert cos == pytest.approx([0.0, 0.5, 1.0])
    assert make_time_grid("cosine", 4)[1] == pytest.approx(0.5 * (1 - math.cos(math.pi / 4)))
    assert make_time_grid([0, 0.3, 1], None) == [0.0, 0.3, 1.0]


def test_time_densities_lie_in_unit_interval():
    torch.manual_seed(0)
    for density in ("uniform", "logit_normal"):
        tau = fm(time_density=density).draw_levels(1000, torch.device("cpu"))
        assert tau.shape == (1000,) and float(tau.min()) >= 0 and float(tau.max()) <= 1
    # logit-normal concentrates at intermediate times
    t = fm(time_density="logit_normal").draw_levels(4000, torch.device("cpu"))
    assert float(((t > 0.25) & (t < 0.75)).float().mean()) > 0.6


@pytest.mark.parametrize("kw, word", [
    ({"solver": "rk4"}, "rk4"),
    ({"time_grid": "linear"}, "linear"),
    ({"time_grid": [0.0, 0.5]}, "time_grid"),
    ({"time_grid": [0.0, 0.6, 0.4, 1.0]}, "time_grid"),
    ({"time_grid": [0.0, 0.5, 1.0], "n_steps": 3}, "n_steps"),
    ({"n_steps": 0}, "n_steps"),
    ({"sigma_min": 1.0}, "sigma_min"),
    ({"time_density": "beta"}, "beta"),
])
def test_bad_options_raise(kw, word):
    with pytest.raises(ValueError, match=word):
        fm(**kw)

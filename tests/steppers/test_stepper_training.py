"""Every stepper learns a toy linear PDE (advection-diffusion, exact solution) in 150 Adam steps:
its loss falls clearly and a sampled step beats copying the input."""

from __future__ import annotations

import pytest
import torch

from tests.steppers.helpers import NX, SPECS, make_stepper, toy_batch

STEPS, BATCH = 150, 16


def _train(spec):
    torch.manual_seed(0)
    s = make_stepper(spec, residual_scale=[0.3])
    opt = torch.optim.Adam(s.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(STEPS):
        prev, target, cond = toy_batch(BATCH, g)
        loss = s.loss(prev, target, cond)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return s, sum(losses[:20]) / 20, sum(losses[-20:]) / 20


def _one_step_nmse(s) -> tuple[float, float]:
    prev, target, cond = toy_batch(64, torch.Generator().manual_seed(99))
    with torch.no_grad():
        out = s.step(prev, cond, generator=torch.Generator().manual_seed(0))
    ref = (target**2).mean()
    return float(((out - target) ** 2).mean() / ref), float(((prev[:, -1] - target) ** 2).mean() / ref)


def _level_losses(s) -> list[float]:
    prev, target, cond = toy_batch(64, torch.Generator().manual_seed(5))
    noise = torch.randn(64, 1, NX, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        return [float(s.loss_at(prev, target, cond, None, level=torch.full((64,), k), noise=noise))
                for k in range(s.K + 1)]


# Measured on this toy (last-20 / first-20 mean loss): deterministic 0.002, flow matching 0.07,
# refiner 0.59 (its noise levels at sigma <= 0.02 stay near 1 this early), refiner with
# min_noise_std 0.1 0.26. The bounds leave room for other seeds and platforms.
@pytest.mark.slow
@pytest.mark.parametrize("name, ratio", [("deterministic", 0.05), ("flow_matching", 0.2), ("refiner", 0.8)])
def test_training_lowers_the_loss(name, ratio):
    s, first, last = _train(SPECS[name])
    assert last < ratio * first, f"{name}: mean loss {first:.4f} (first 20 steps) -> {last:.4f} (last 20)"
    nmse, copy = _one_step_nmse(s)
    assert nmse < 0.05 * copy, f"{name}: one-step nMSE {nmse:.2e} vs copying the input {copy:.2e}"


@pytest.mark.slow
def test_refiner_learns_the_noise_at_moderate_levels():
    spec = {"class_path": "refiner", "init_args": {"K": 2, "min_noise_std": 0.1}}
    torch.manual_seed(0)
    before = _level_losses(make_stepper(spec, residual_scale=[0.3]))
    s, first, last = _train(spec)
    after = _level_losses(s)
    assert last < 0.5 * first
    assert after[0] < 0.05 * before[0]
    assert after[1] < 0.6 * before[1] and after[2] < 0.8 * before[2], f"levels {before} -> {after}"

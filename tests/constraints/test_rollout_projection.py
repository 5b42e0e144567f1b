"""Projections in rollouts: b stays anchored over 1000 steps, the hook's sampler projection
reaches the right rows, and flow-matching samples satisfy the law when projected in the sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sciflow.constraints import (
    ConservationMonitor,
    Grid,
    constraints_from_card,
    project,
    projection_hook,
)
from sciflow.rollout import rollout
from sciflow.steppers import build_stepper
from sciflow.surrogate import Surrogate

N = 32
SPEC = {
    "card": "toy", "card_hash": "", "channels": ["u"], "params": ["m"], "spatial_dims": ["x"],
    "spatial_shape": [N], "has_mask": False, "periodic": True, "history": 1, "time_step": 1, "dt": 0.1,
    "stats": {"mean": [0.3], "std": [2.0], "mean_delta": [0.0], "std_delta": [0.5],
              "params_mean": [1.0], "params_std": [0.5]},
}
TINY = {"class_path": "fno", "init_args": {"width": 8, "modes": 4, "n_layers": 1, "embed_dim": 8}}


class Drifting(Surrogate):
    """A model that keeps the state and adds float32 noise with a non-zero mean: the integral
    drifts by about 1e-3 of its size per step unless projected."""

    def predict_next(self, history, params, mask=None, *, generator=None, project=None):
        z = torch.randn(history[:, -1].shape, generator=generator)
        return (history[:, -1] + 1e-3 * (z + 0.5)).float()


def _grid(B):
    return Grid(["u"], ["x"], [{"x": np.arange(N) * 0.25} for _ in range(B)], np.ones((B, 1)), ["m"],
                None, periodic=True)


def _monitor(initial, entry=None):
    entry = entry or {"kind": "integral", "field": "u"}
    cons = constraints_from_card([entry], _grid(initial.shape[0]))
    return ConservationMonitor(cons, initial[:, -1], 0.0, 0.1)


@pytest.mark.slow
def test_b_stays_anchored_to_the_initial_amount_over_1000_steps():
    """Each step's model output is float32 and is fed back in float32: anchored to the initial
    amount the projected integral never moves; anchored to the previous step (the mistake the
    budget avoids), the float32 round-off of every step would add up."""
    torch.manual_seed(0)
    model = Drifting(TINY, data_spec=SPEC)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 1, 1, N, generator=g) + 3.0
    mon = _monitor(x0)
    hook = projection_hook("probconserv", mon)
    amount0 = mon.law.apply(x0[:, -1].double())
    size = mon.law.magnitude(x0[:, -1].double())
    worst, last = 0.0, None
    for step in rollout([model], x0, torch.ones(2, 1), 1000, samples=3, project=hook, seed=2):
        assert step.members.dtype == torch.float64
        worst = max(worst, float(((mon.law.apply(step.members) - amount0).abs() / size).max()))
        last = step.members
    assert worst < 1e-13
    # the same 1000 steps with b re-anchored each time to the previous (float32-fed) state
    state, ones = x0[:, -1], torch.ones(2, 1, N, dtype=torch.float64)
    for _ in range(1000):
        out = state + 1e-3 * (torch.randn(state.shape, generator=g) + 0.5)
        x = project(mon.law, out.double(), mon.law.apply(state.double()), ones)
        state = x.float()  # what the model sees next
    drift = float(((mon.law.apply(x) - amount0).abs() / size).max())
    assert drift > 1e-9 > worst  # the float32 round-off of every step adds up
    unprojected = list(rollout([model], x0, torch.ones(2, 1), 50, samples=3, seed=2))[-1].members
    assert float(((mon.law.apply(unprojected.double()) - amount0).abs() / size).max()) > 1e-3
    assert torch.isfinite(last).all()


def test_sampler_projection_reaches_the_right_rows():
    calls = []

    class Hook:
        def __call__(self, members, k):
            return members

        def sampler(self, k, member, batch):
            calls.append((k, member.tolist(), batch.tolist()))
            return lambda states: states + 1.0

    class Model(Surrogate):
        # counted as stochastic so that each model gives `samples` members (a deterministic one gives one)
        stochastic = True

        def predict_next(self, history, params, mask=None, *, generator=None, project=None):
            return project(history[:, -1].double()).float()

    models = [Model(TINY, data_spec=SPEC), Model(TINY, data_spec=SPEC)]
    x0 = torch.zeros(3, 1, 1, N)
    steps = list(rollout(models, x0, torch.ones(3, 1), 2, samples=2, project=Hook(), max_batch=4))
    # rows s * B + b, chunked by 4; model i's members are i * samples + s
    assert calls[:4] == [
        (1, [0, 0, 0, 1], [0, 1, 2, 0]), (1, [1, 1], [1, 2]),
        (1, [2, 2, 2, 3], [0, 1, 2, 0]), (1, [3, 3], [1, 2]),
    ]
    assert float(steps[-1].members.min()) == 2.0


def _flow_model(seed=0, noise="implied"):
    torch.manual_seed(seed)
    stepper = {"class_path": "flow_matching", "init_args": {"n_steps": 3, "projection_noise": noise}}
    return Surrogate(TINY, stepper=stepper, data_spec=SPEC).eval()


def test_flow_matching_samples_satisfy_the_law_when_projected_in_the_sampler():
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(2, 1, 1, N, generator=g)
    params = torch.ones(2, 1)
    entry = {"kind": "integral", "field": "u", "cumulative_flux": "0.7 * t"}
    for noise, method in (("implied", "insampler"), ("fresh", "insampler"), ("implied", "insampler_probconserv")):
        model = _flow_model(noise=noise)
        mon = _monitor(x0, entry)
        hook = projection_hook(method, mon)
        b = mon.target(1)
        # the stepper's own sample, projected inside the sampler: the law holds to float32 round-off
        fn = hook.sampler(1, torch.zeros(2, dtype=torch.long), torch.arange(2))  # one row each: HardC
        inside = model.predict_next(x0, params, generator=torch.Generator().manual_seed(4), project=fn)
        plain = model.predict_next(x0, params, generator=torch.Generator().manual_seed(4))
        scale = mon.law.magnitude(plain.double())
        assert float(((mon.law.apply(inside.double()) - b).abs() / scale).max()) < 1e-6
        assert float(((mon.law.apply(plain.double()) - b).abs() / scale).max()) > 1e-3
        # post-hoc projection of the plain sample lands elsewhere on the law
        post = projection_hook("hardc", _monitor(x0, entry))(plain[None].double(), 1)[0]
        assert (post - inside.double()).abs().max() > 1e-4
        # in a rollout the hook removes the float32 round-off: exact in float64
        steps = list(rollout([model], x0, params, 3, samples=2, project=hook, seed=5))
        for s in steps:
            assert mon.errors(s.members, s.index).relative.max() < 1e-10


def test_weighted_sampler_projection_follows_the_samples_spread():
    """Rows of one batch element are weighted by their spread: a cell where the samples agree is
    barely moved; rows of another element do not count."""
    x0 = torch.zeros(2, 1, 1, N)
    mon = _monitor(x0, {"kind": "integral", "field": "u", "cumulative_flux": "t"})
    fn = projection_hook("insampler_probconserv", mon).sampler(1, torch.tensor([0, 1, 2, 0]), torch.tensor([0, 0, 0, 1]))
    g = torch.Generator().manual_seed(8)
    states = torch.randn(4, 1, N, generator=g, dtype=torch.float64)
    states[:3, :, :4] = 0.5  # the three samples of element 0 agree on the first cells
    out = fn(states)
    b = mon.target(1)
    assert (mon.law.take(torch.tensor([0, 0, 0, 1])).apply(out) - b[[0, 0, 0, 1]]).abs().max() < 1e-13
    moved = (out - states).abs()[:3, 0]
    assert moved[:, :4].max() < 1e-3 * moved[:, 4:].mean()
    # the lone row of element 1 is projected without weights: a uniform shift
    shift = (out - states)[3, 0]
    torch.testing.assert_close(shift, shift.mean().expand(N))


def test_identity_projection_leaves_the_implied_noise_sampler_unchanged():
    model = _flow_model()
    g = torch.Generator().manual_seed(6)
    x0 = torch.randn(3, 1, 1, N, generator=g)
    a = model.predict_next(x0, torch.ones(3, 1), generator=torch.Generator().manual_seed(7))
    b = model.predict_next(x0, torch.ones(3, 1), generator=torch.Generator().manual_seed(7), project=lambda u: u)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_a_stepper_without_sampler_projection_refuses_one():
    det = Surrogate(TINY, data_spec=SPEC)
    x0 = torch.zeros(1, 1, 1, N)
    try:
        det.predict_next(x0, torch.ones(1, 1), project=lambda u: u)
    except ValueError as e:
        assert "cannot project inside its sampler" in str(e)
    else:
        raise AssertionError("a deterministic stepper accepted a sampler projection")
    refiner = build_stepper({"class_path": "refiner", "init_args": {"K": 1}}, operator=TINY, n_channels=1,
                            n_dims=1, n_params=1)
    try:
        refiner.step(x0, torch.ones(1, 1), project=lambda z: z)
    except ValueError as e:
        assert "cannot project" in str(e)
    else:
        raise AssertionError("the refiner accepted a sampler projection")

"""PDE-Refiner: the noise schedule, calls per step, level 0 as the deterministic MSE, exact
denoising with an oracle noise predictor, level weights, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from sciflow.steppers.refiner import Refiner
from tests.steppers.helpers import NX, CallCounter, HistoryOnly, make_stepper

SCALE = 0.5


def refiner(**kw) -> Refiner:
    return make_stepper({"class_path": "refiner", "init_args": kw}, residual_scale=[SCALE])


class NoiseOracle(nn.Module):
    """Knows the clean target ``y``: at level 0 it predicts ``y``, at level k >= 1 the exact noise
    ``(noised - y) / sigma_k``, reading the level from the last cond entry (k / K)."""

    def __init__(self, y: Tensor, sigmas: Tensor, K: int):
        super().__init__()
        self.y, self.sigmas, self.K = y, sigmas, K

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        k = torch.round(cond[:, -1] * self.K).long()
        sigma = self.sigmas[k].view(-1, 1, 1)
        eps = (x[:, -1:] - self.y) / sigma
        return torch.where((k == 0).view(-1, 1, 1), self.y, eps)


def test_noise_schedule():
    sig = Refiner.noise_stds(4, 1e-2)
    torch.testing.assert_close(sig, torch.tensor([1.0, 10**-0.5, 1e-1, 10**-1.5, 1e-2]))
    r = refiner(K=3)
    assert r.min_noise_std**2 == pytest.approx(2e-7)  # the paper's KS setting, as a std
    torch.testing.assert_close(r.sigmas, torch.tensor([r.min_noise_std ** (k / 3) for k in range(4)]))
    assert float(r.sigmas[-1]) == pytest.approx(math.sqrt(2e-7))


@pytest.mark.parametrize("K", [1, 3])
def test_operator_calls_per_step(K):
    r = refiner(K=K)
    assert r.calls_per_step == K + 1
    r.operator = CallCounter(r.operator)
    r.step(torch.randn(2, 1, 1, NX), torch.zeros(2, 1), generator=torch.Generator().manual_seed(0))
    assert r.operator.calls == K + 1


def test_level_zero_loss_is_the_deterministic_mse():
    g = torch.Generator().manual_seed(0)
    prev, target = torch.randn(5, 1, 1, NX, generator=g), torch.randn(5, 1, NX, generator=g)
    cond = torch.randn(5, 1, generator=g)
    mask = torch.rand(5, NX, generator=g) > 0.2
    shared = HistoryOnly(1, 1)
    det = make_stepper("deterministic", residual_scale=[SCALE], has_mask=True)
    det.operator = shared
    expected = det.loss(prev, target, cond, mask)
    r = make_stepper({"class_path": "refiner", "init_args": {"K": 3}}, residual_scale=[SCALE], has_mask=True)
    r.operator = shared
    shared.seen.clear()
    got = r.loss_at(prev, target, cond, mask, level=torch.zeros(5, dtype=torch.long),
                    noise=torch.randn(5, 1, NX, generator=g))
    torch.testing.assert_close(got, expected)
    x, c = shared.seen[-1]
    assert torch.all(x[:, -1] == 0), "level 0 must see a zero noised estimate"
    assert torch.all(c[:, -1] == 0) and torch.equal(c[:, :1], cond)
    # level_weights that only draw level 0 make the random loss the deterministic one as well
    r0 = make_stepper({"class_path": "refiner", "init_args": {"K": 3, "level_weights": [1, 0, 0, 0]}},
                      residual_scale=[SCALE], has_mask=True)
    r0.operator = shared
    torch.testing.assert_close(r0.loss(prev, target, cond, mask), expected)


def test_noised_levels_regress_the_noise():
    g = torch.Generator().manual_seed(1)
    prev, target = torch.randn(4, 1, 1, NX, generator=g), torch.randn(4, 1, NX, generator=g)
    noise = torch.randn(4, 1, NX, generator=g)
    r = refiner(K=2, min_noise_std=0.01)
    y = (target - prev[:, -1]) / SCALE
    x, want, c = r.corrupt(y, noise, torch.tensor([0, 1, 2, 1]))
    torch.testing.assert_close(x[1], y[1] + 0.1 * noise[1])
    torch.testing.assert_close(x[2], y[2] + 0.01 * noise[2])
    torch.testing.assert_close(want[1:], noise[1:])
    torch.testing.assert_close(want[0], y[0])
    torch.testing.assert_close(c, torch.tensor([0.0, 0.5, 1.0, 0.5]))
    r.operator = NoiseOracle(y, r.sigmas, 2)
    loss = r.loss_at(prev, target, torch.zeros(4, 1), None, level=torch.tensor([0, 1, 2, 2]), noise=noise)
    assert float(loss) < 1e-8


def test_oracle_denoising_recovers_the_clean_state():
    g = torch.Generator().manual_seed(2)
    prev, target = torch.randn(3, 1, 1, NX, generator=g), torch.randn(3, 1, NX, generator=g)
    r = refiner(K=3)
    y = (target - prev[:, -1]) / SCALE
    r.operator = NoiseOracle(y, r.sigmas, 3)
    out = r.step(prev, torch.zeros(3, 1), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, target, atol=1e-5, rtol=1e-5)
    # one refinement from a wrong first guess: denoising with the true noise undoes the noising
    noise = torch.randn(3, 1, NX, generator=g)
    noised = y + r.sigmas[2] * noise
    torch.testing.assert_close(r.denoise(noised, noise, 2), y)


def test_fresh_noise_at_every_refinement():
    """Each refinement draws new noise from the caller's generator, in order."""
    r = refiner(K=2, min_noise_std=0.5)
    stub = HistoryOnly(1, 1)
    nn.init.zeros_(stub.conv.weight), nn.init.zeros_(stub.conv.bias)  # predicts 0 everywhere
    r.operator = stub
    r.step(torch.zeros(2, 1, 1, NX), torch.zeros(2, 1), generator=torch.Generator().manual_seed(0))
    (x0, _), (x1, _), (x2, _) = stub.seen
    g = torch.Generator().manual_seed(0)
    n1, n2 = torch.randn(2, 1, NX, generator=g), torch.randn(2, 1, NX, generator=g)
    assert torch.all(x0[:, -1:] == 0)
    torch.testing.assert_close(x1[:, -1:], r.sigmas[1] * n1)
    # a zero noise prediction keeps the noised estimate, which is noised again with new noise
    torch.testing.assert_close(x2[:, -1:], r.sigmas[1] * n1 + r.sigmas[2] * n2)


def test_level_weights_set_the_training_frequencies():
    torch.manual_seed(0)
    r = refiner(K=3, level_weights=[2, 1, 1, 0])
    k = r.draw_levels(8000, torch.device("cpu"))
    freq = torch.bincount(k, minlength=4).float() / 8000
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.25, 0.25, 0.0]), atol=0.02, rtol=0)
    k = refiner(K=3).draw_levels(8000, torch.device("cpu"))
    assert set(k.tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize("kw, word", [
    ({"K": 0}, "K"),
    ({"K": 1.5}, "K"),
    ({"min_noise_std": 0.0}, "min_noise_std"),
    ({"min_noise_std": 1.0}, "min_noise_std"),
    ({"K": 2, "level_weights": [1, 1]}, "level_weights"),
    ({"K": 1, "level_weights": [1, -1]}, "level_weights"),
    ({"K": 1, "level_weights": [0, 0]}, "level_weights"),
])
def test_bad_options_raise(kw, word):
    with pytest.raises(ValueError, match=word):
        refiner(**kw)


def test_bad_levels_raise():
    r = refiner(K=2)
    prev, target = torch.randn(2, 1, 1, NX), torch.randn(2, 1, NX)
    with pytest.raises(ValueError, match="0..2"):
        r.loss_at(prev, target, torch.zeros(2, 1), None, level=torch.tensor([0, 3]), noise=torch.randn(2, 1, NX))
    with pytest.raises(ValueError, match="level must have shape"):
        r.loss_at(prev, target, torch.zeros(2, 1), None, level=torch.tensor([0]), noise=torch.randn(2, 1, NX))

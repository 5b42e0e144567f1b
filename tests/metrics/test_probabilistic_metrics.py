"""Probabilistic scores against closed forms and Monte Carlo limits (seeded)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sciflow.metrics import (
    calibration_error,
    crps_ensemble,
    crps_gaussian,
    ensemble_quantiles,
    gaussian_interval_coverage,
    gaussian_nll,
    gaussian_reliability_curve,
    interval_coverage,
    pit_cdf,
    rank_histogram,
    reliability_curve,
    spread_skill_ratio,
    spread_skill_terms,
    truth_ranks,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _calibrated(M: int, B: int, n: int, seed: int, member_scale: float = 1.0):
    """Truth and members drawn from the same N(mu, sigma^2) per cell (members optionally
    rescaled): ``members (M, B, 1, n)``, ``truth (B, 1, n)``, ``mu``, ``sigma``."""
    g = _gen(seed)
    mu = torch.randn(B, 1, n, generator=g, dtype=torch.float64)
    sigma = 0.5 + torch.rand(B, 1, n, generator=g, dtype=torch.float64)
    truth = mu + sigma * torch.randn(B, 1, n, generator=g, dtype=torch.float64)
    noise = torch.randn(M, B, 1, n, generator=g, dtype=torch.float64)
    return mu + member_scale * sigma * noise, truth, mu, sigma


def test_fair_crps_matches_pairwise_definition():
    g = _gen(0)
    x = torch.randn(5, 2, 3, 4, generator=g, dtype=torch.float64)
    y = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    M = 5
    skill = (x - y).abs().mean(0)
    pair = (x[:, None] - x[None, :]).abs().sum(dim=(0, 1))
    want_fair = (skill - pair / (2 * M * (M - 1))).mean(dim=(1, 2))
    want_plain = (skill - pair / (2 * M * M)).mean(dim=(1, 2))
    torch.testing.assert_close(crps_ensemble(x, y), want_fair)
    torch.testing.assert_close(crps_ensemble(x, y, fair=False), want_plain)
    assert crps_ensemble(x, y, per_channel=True).shape == (2, 3)


def test_crps_of_repeated_value_is_absolute_error():
    y = torch.randn(2, 1, 6, generator=_gen(1), dtype=torch.float64)
    x = torch.full((2, 1, 6), 0.7, dtype=torch.float64)
    members = x.expand(4, 2, 1, 6)
    torch.testing.assert_close(crps_ensemble(members, y), (x - y).abs().mean(dim=(1, 2)))
    torch.testing.assert_close(
        crps_ensemble(x[None], y, fair=False), (x - y).abs().mean(dim=(1, 2))
    )
    with pytest.raises(ValueError, match="M >= 2"):
        crps_ensemble(x[None], y)


def test_gaussian_crps_closed_forms():
    y = torch.tensor([[[0.3, -1.2, 2.0]]], dtype=torch.float64)
    mu = torch.tensor([[[1.0, -1.0, 2.0]]], dtype=torch.float64)
    err = (y - mu).abs().mean(dim=(1, 2))
    torch.testing.assert_close(crps_gaussian(mu, torch.zeros_like(mu), y), err)
    torch.testing.assert_close(
        crps_gaussian(mu, torch.full_like(mu, 1e-9), y), err, atol=1e-9, rtol=0
    )
    # at y = mu: sigma (2 phi(0) - 1/sqrt(pi)) = sigma (sqrt(2/pi) - 1/sqrt(pi))
    s = 1.7
    at_mean = crps_gaussian(mu, torch.full_like(mu, s), mu).item()
    assert at_mean == pytest.approx(s * (math.sqrt(2 / math.pi) - 1 / math.sqrt(math.pi)))
    # scalar std broadcasts
    torch.testing.assert_close(
        crps_gaussian(mu, torch.tensor(s), mu), torch.tensor([at_mean], dtype=torch.float64)
    )


def test_gaussian_crps_equals_large_ensemble_crps():
    M, n = 4000, 64
    members, truth, mu, sigma = _calibrated(M, 1, n, seed=2)
    ens = crps_ensemble(members, truth).item()
    exact = crps_gaussian(mu, sigma, truth).item()
    # the fair estimator is unbiased; its Monte Carlo error per cell is O(sigma / sqrt(M))
    assert ens == pytest.approx(exact, rel=0.01)


def test_spread_skill_is_one_for_samples_from_the_predictive_distribution():
    members, truth, _, _ = _calibrated(5, 64, 256, seed=3)
    spread2, skill2 = spread_skill_terms(members, truth)
    assert math.sqrt(spread2.mean() / skill2.mean()) == pytest.approx(1.0, abs=0.03)
    assert spread_skill_ratio(members, truth).mean().item() == pytest.approx(1.0, abs=0.05)
    # members at half the true spread: ratio ~ 0.5 * sqrt((M+1)/M) / sqrt(1/(4M) + 1) -> overconfident
    narrow, truth2, _, _ = _calibrated(5, 64, 256, seed=3, member_scale=0.5)
    s2, k2 = spread_skill_terms(narrow, truth2)
    want = math.sqrt(0.25 * 6 / 5 / (0.25 / 5 + 1))
    assert math.sqrt(s2.mean() / k2.mean()) == pytest.approx(want, abs=0.03)


def test_coverage_of_standard_normal_samples():
    g = _gen(4)
    members = torch.randn(400, 4, 1, 1024, generator=g, dtype=torch.float64)
    truth = torch.randn(4, 1, 1024, generator=g, dtype=torch.float64)
    cov, width = interval_coverage(members, truth, levels=(0.5, 0.9))
    assert cov.shape == width.shape == (4, 2)
    assert cov[:, 1].mean().item() == pytest.approx(0.9, abs=0.015)
    assert cov[:, 0].mean().item() == pytest.approx(0.5, abs=0.02)
    z90 = 1.6448536269514722
    assert width[:, 1].mean().item() == pytest.approx(2 * z90, rel=0.02)
    gcov, gwidth = gaussian_interval_coverage(
        torch.zeros_like(truth), torch.ones_like(truth), truth, levels=(0.9,)
    )
    assert gcov.mean().item() == pytest.approx(0.9, abs=0.015)
    torch.testing.assert_close(gwidth, torch.full((4, 1), 2 * z90, dtype=torch.float64))


def test_quantiles_use_plotting_positions():
    x = torch.randn(7, 3, 5, generator=_gen(5), dtype=torch.float64)
    p = [1 / 8, 0.2, 0.5, 0.77, 7 / 8]  # inside [1/(M+1), M/(M+1)]: numpy's "weibull"
    want = np.quantile(x.numpy(), p, axis=0, method="weibull")
    torch.testing.assert_close(ensemble_quantiles(x, p), torch.from_numpy(want))
    # the i-th smallest member is the i/(M+1) quantile; beyond the members, linear extrapolation
    xs = torch.tensor([[1.0], [2.0], [4.0]], dtype=torch.float64)  # M = 3: positions 1/4, 1/2, 3/4
    q = ensemble_quantiles(xs, [0.25, 0.5, 0.75, 0.0, 1.0, 0.05])
    torch.testing.assert_close(q[:, 0], torch.tensor([1.0, 2.0, 4.0, 0.0, 6.0, 0.2], dtype=torch.float64))
    torch.testing.assert_close(ensemble_quantiles(xs[:1], [0.1, 0.9]), torch.ones(2, 1, dtype=torch.float64))


@pytest.mark.parametrize("M", [2, 5, 10])
def test_a_perfect_small_ensemble_is_calibrated(M):
    """Members and truth from the same distribution: coverage at 50 / 90 %, the reliability curve
    and the rank histogram are nominal within Monte Carlo error at the ensemble sizes users run."""
    B, n = 32, 1024
    members, truth, _, _ = _calibrated(M, B, n, seed=10 + M)
    N = B * n
    cov, width = interval_coverage(members, truth, levels=(0.5, 0.9))
    for j, a in enumerate((0.5, 0.9)):
        # 4 standard errors of a frequency over N independent cells
        assert cov[:, j].mean().item() == pytest.approx(a, abs=4 * math.sqrt(a * (1 - a) / N))
    assert bool((width[:, 1] > width[:, 0]).all())
    levels, obs = reliability_curve(members, truth)
    tol = 4 * math.sqrt(0.25 / N)
    assert (obs.mean(0) - levels).abs().max().item() < tol
    hist = rank_histogram(members, truth)
    assert hist.shape == (B, M + 1)
    torch.testing.assert_close(hist.sum(-1), torch.ones(B, dtype=torch.float64))
    p = 1 / (M + 1)
    assert (hist.mean(0) - p).abs().max().item() < 4 * math.sqrt(p * (1 - p) / N)


@pytest.mark.parametrize("M", [2, 5, 10])
def test_a_miscalibrated_small_ensemble_is_caught(M):
    """Members at 0.4 of the true spread under-cover and give a U-shaped rank histogram; members
    shifted by one standard deviation give a sloped one."""
    narrow, truth, _, _ = _calibrated(M, 16, 512, seed=20 + M, member_scale=0.4)
    cov, _ = interval_coverage(narrow, truth, levels=(0.5, 0.9))
    N = 16 * 512
    for j, a in enumerate((0.5, 0.9)):  # below nominal by more than Monte Carlo error
        assert cov[:, j].mean().item() < a - 4 * math.sqrt(a * (1 - a) / N)
    hist = rank_histogram(narrow, truth).mean(0)
    assert min(hist[0], hist[-1]) > 1.2 / (M + 1) > hist[1:-1].max()  # U-shaped
    members, truth, _, sigma = _calibrated(M, 16, 512, seed=30 + M)
    high = rank_histogram(members + sigma, truth).mean(0)  # members too high: truth ranks low
    assert high[0] > high[-1] * 3


def test_ranks_and_pit_with_ties():
    members = torch.tensor([0.0, 1.0, 1.0, 2.0], dtype=torch.float64).reshape(4, 1, 1, 1)
    truth = torch.tensor([1.0], dtype=torch.float64).reshape(1, 1, 1)
    below, ties = truth_ranks(members, truth)
    assert below.item() == 1 and ties.item() == 2
    # u uniform on [1, 4] / 5: P(u <= p) = clip((5 p - 1) / 3, 0, 1)
    cdf = pit_cdf(members, truth, [0.1, 0.5, 0.9])
    torch.testing.assert_close(cdf.flatten(), torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    # tied ranks 1, 2, 3 share the cell's weight
    torch.testing.assert_close(
        rank_histogram(members, truth), torch.tensor([[0.0, 1 / 3, 1 / 3, 1 / 3, 0.0]], dtype=torch.float64)
    )


def test_gaussian_nll_closed_form():
    mu = torch.zeros(2, 1, 3, dtype=torch.float64)
    y = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64).expand(2, 1, 3)
    var = torch.full_like(mu, 4.0)
    want = (0.5 * (math.log(2 * math.pi * 4.0) + y[0, 0] ** 2 / 4.0)).mean()
    torch.testing.assert_close(gaussian_nll(mu, var, y), want.expand(2))
    assert torch.isfinite(gaussian_nll(mu, torch.zeros_like(mu), y)).all()


def test_reliability_and_calibration_error():
    members, truth, mu, sigma = _calibrated(200, 8, 512, seed=6)
    levels, obs = reliability_curve(members, truth)
    assert levels.shape == (19,) and obs.shape == (8, 19)
    good = calibration_error(levels, obs.mean(0)).item()
    assert good < 0.02
    _, gobs = gaussian_reliability_curve(mu, sigma, truth)
    assert calibration_error(levels, gobs.mean(0)).item() < 0.02
    narrow, truth2, _, _ = _calibrated(200, 8, 512, seed=6, member_scale=0.3)
    _, bad_obs = reliability_curve(narrow, truth2)
    assert calibration_error(levels, bad_obs.mean(0)).item() > 5 * good
    # truth below all 3 members: its PIT is uniform on [0, 1/4], so P(u <= 0.2) = 0.8, P(u <= 0.8) = 1
    obs_low = reliability_curve(torch.ones(3, 1, 1, 4), torch.zeros(1, 1, 4), levels=[0.2, 0.8])[1]
    torch.testing.assert_close(obs_low, torch.tensor([[0.8, 1.0]], dtype=torch.float64))


def test_masks_select_cells():
    members, truth, mu, sigma = _calibrated(6, 2, 10, seed=7)
    mask = torch.arange(10) % 3 == 0
    torch.testing.assert_close(
        crps_ensemble(members, truth, mask), crps_ensemble(members[..., mask], truth[..., mask])
    )
    torch.testing.assert_close(
        crps_gaussian(mu, sigma, truth, mask),
        crps_gaussian(mu[..., mask], sigma[..., mask], truth[..., mask]),
    )
    torch.testing.assert_close(
        interval_coverage(members, truth, mask=mask)[0],
        interval_coverage(members[..., mask], truth[..., mask])[0],
    )


def test_bad_shapes_raise():
    members = torch.zeros(4, 2, 1, 8)
    with pytest.raises(ValueError, match=r"members \(4, 2, 1, 8\), truth \(3, 1, 8\)"):
        crps_ensemble(members, torch.zeros(3, 1, 8))
    with pytest.raises(ValueError, match=r"\(2, 1, 8\) and \(2, 1, 7\)"):
        crps_gaussian(torch.zeros(2, 1, 8), torch.ones(2, 1, 8), torch.zeros(2, 1, 7))
    with pytest.raises(ValueError, match=r"std of shape \(3,\) does not broadcast"):
        crps_gaussian(torch.zeros(2, 1, 8), torch.ones(3), torch.zeros(2, 1, 8))
    with pytest.raises(ValueError, match="std must be >= 0"):
        crps_gaussian(torch.zeros(2, 1, 8), -torch.ones(2, 1, 8), torch.zeros(2, 1, 8))
    with pytest.raises(ValueError, match="levels"):
        interval_coverage(members, torch.zeros(2, 1, 8), levels=(1.5,))
    with pytest.raises(ValueError, match=r"\(2, 5\) and \(19,\)"):
        calibration_error(torch.linspace(0.05, 0.95, 19), torch.zeros(2, 5))

"""Correlation metrics: closed-form correlations, correlation times, sample decorrelation."""

from __future__ import annotations

import math

import pytest
import torch

from sciflow.metrics import (
    DecorrelationTracker,
    decorrelation_times,
    high_correlation_time,
    pearson_correlation,
    sample_decorrelation,
)


def _orthonormal_centred(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two zero-mean, unit-norm, orthogonal vectors of length n."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, 2, generator=g, dtype=torch.float64)
    a = a - a.mean(dim=0)
    q, _ = torch.linalg.qr(a)  # columns orthonormal and still zero-mean
    return q[:, 0], q[:, 1]


def test_correlation_with_itself_negative_and_affine():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 16, generator=g)
    one = torch.ones(3, dtype=torch.float64)
    torch.testing.assert_close(pearson_correlation(x, x), one)
    torch.testing.assert_close(pearson_correlation(-x, x), -one)
    torch.testing.assert_close(pearson_correlation(2.5 * x + 7.0, x), one)


@pytest.mark.parametrize("theta", [0.3, 1.2, 2.5])
def test_correlation_is_cosine_of_angle(theta):
    u, v = _orthonormal_centred(64)
    truth = u.reshape(1, 2, 32)
    pred = (math.cos(theta) * u + math.sin(theta) * v).reshape(1, 2, 32)
    assert pearson_correlation(pred, truth).item() == pytest.approx(math.cos(theta), abs=1e-12)


def test_correlation_mask_and_constant_field():
    u, v = _orthonormal_centred(10)
    truth = torch.zeros(1, 1, 16, dtype=torch.float64)
    pred = torch.zeros_like(truth)
    truth[0, 0, :10] = u
    pred[0, 0, :10] = 0.6 * u + 0.8 * v
    pred[0, 0, 10:] = torch.arange(6.0) * 100  # outside the mask: must not count
    mask = torch.arange(16) < 10
    assert pearson_correlation(pred, truth, mask).item() == pytest.approx(0.6, abs=1e-12)
    assert pearson_correlation(pred, truth).item() != pytest.approx(0.6, abs=1e-3)
    const = torch.full_like(truth, 3.0)
    assert pearson_correlation(const, truth).item() == 0.0


def test_high_correlation_time_of_hand_made_curve():
    times = 0.2 * torch.arange(7)
    corr = torch.tensor([1.0, 0.97, 0.93, 0.85, 0.79, 0.9, 0.5])
    assert high_correlation_time(corr, times, 0.8) == pytest.approx(0.8)  # index 4
    assert high_correlation_time(corr, times, 0.9) == pytest.approx(0.6)  # index 3
    assert high_correlation_time(corr, times, 0.95) == pytest.approx(0.4)
    assert high_correlation_time(corr, times, 0.3) == pytest.approx(1.2)  # never: last time
    # ... which is censored (a lower bound), and says so; a real drop is not
    assert high_correlation_time(corr, times, 0.3, return_censored=True) == (pytest.approx(1.2), True)
    assert high_correlation_time(corr, times, 0.8, return_censored=True) == (pytest.approx(0.8), False)
    # a drop at the very last step is not censored
    assert high_correlation_time(corr, times, 0.6, return_censored=True) == (pytest.approx(1.2), False)


def test_high_correlation_time_averages_trajectories_first():
    times = torch.arange(4.0)
    corr = torch.tensor([[1.0, 1.0], [0.7, 0.95], [0.7, 0.95], [0.6, 0.5]])  # (T, B)
    # mean: 1, 0.825, 0.825, 0.55 -> first below 0.8 at t=3; per trajectory: t=1 and t=3
    assert high_correlation_time(corr, times, 0.8) == pytest.approx(3.0)
    per = high_correlation_time(corr, times, 0.8, per_trajectory=True)
    torch.testing.assert_close(per, torch.tensor([1.0, 3.0], dtype=torch.float64))
    per = high_correlation_time(corr, times, 0.4, per_trajectory=True)
    torch.testing.assert_close(per, torch.tensor([3.0, 3.0], dtype=torch.float64))
    per, censored = high_correlation_time(corr, times, 0.55, per_trajectory=True, return_censored=True)
    torch.testing.assert_close(per, torch.tensor([3.0, 3.0], dtype=torch.float64))
    assert censored.tolist() == [True, False]  # 0.6 never drops below 0.55; 0.5 does at t = 3


def test_decorrelation_times_from_stream():
    curve = [1.0, 0.97, 0.93, 0.85, 0.79, 0.5]
    stream = ((0.2 * i, torch.tensor([c, c])) for i, c in enumerate(curve))
    out = decorrelation_times(stream)
    assert out == pytest.approx({0.8: 0.8, 0.9: 0.6, 0.95: 0.4})
    tracker = DecorrelationTracker()
    tracker.update(0.0, 1.0)
    with pytest.raises(ValueError, match="increase"):
        tracker.update(0.0, 0.9)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        tracker.update(0.2, torch.ones(2))


def test_sample_decorrelation_closed_forms():
    u, v = _orthonormal_centred(32)
    x = u.reshape(1, 1, 32)
    same = torch.stack([x, 2 * x + 1, x])  # (M=3, B=1, C=1, 32)
    assert sample_decorrelation(same).item() == pytest.approx(1.0, abs=1e-12)
    opposite = torch.stack([x, -x])
    assert sample_decorrelation(opposite).item() == pytest.approx(-1.0, abs=1e-12)
    # pairs (a, b), (a, c), (b, c) with correlations 0, 0.6, 0.8 -> mean 1.4 / 3
    a, b = x, v.reshape(1, 1, 32)
    c = 0.6 * a + 0.8 * b
    assert sample_decorrelation(torch.stack([a, b, c])).item() == pytest.approx(1.4 / 3)


def test_sample_decorrelation_matches_pairwise_pearson_with_mask():
    g = torch.Generator().manual_seed(3)
    members = torch.randn(4, 2, 3, 5, 5, generator=g)
    mask = torch.rand(2, 5, 5, generator=g) > 0.3
    pairs = [
        pearson_correlation(members[i], members[j], mask) for i in range(4) for j in range(i + 1, 4)
    ]
    torch.testing.assert_close(sample_decorrelation(members, mask), torch.stack(pairs).mean(0))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\(2, 1, 4\) and \(2, 1, 5\)"):
        pearson_correlation(torch.zeros(2, 1, 4), torch.zeros(2, 1, 5))
    with pytest.raises(ValueError, match="M >= 2"):
        sample_decorrelation(torch.zeros(1, 2, 1, 4))
    with pytest.raises(ValueError, match=r"corr \(5,\) and times \(4,\)"):
        high_correlation_time(torch.ones(5), torch.arange(4.0))


def test_high_correlation_time_counts_nan_as_decorrelated():
    times = torch.arange(6) * 0.5
    corr = torch.tensor([1.0, 0.99, 0.95, float("nan"), 0.97, 0.9])
    assert high_correlation_time(corr, times, 0.8) == pytest.approx(1.5)
    per = high_correlation_time(torch.stack([corr, torch.ones(6)], 1), times, 0.8, per_trajectory=True)
    assert per.tolist() == [1.5, 2.5]

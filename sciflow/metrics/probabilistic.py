"""Scores of probabilistic predictions: CRPS, spread-skill, interval coverage, NLL, calibration.

Shapes: ensemble ``members: (M, B, C, *S)``; Gaussian predictions ``mean``, ``std`` or ``var``
``(B, C, *S)``; ``truth: (B, C, *S)``; ``mask: (B, *S)`` or ``(*S)`` bool. Pointwise scores are
averaged over masked cells and channels into ``(B,)`` (``per_channel=True``: ``(B, C)``), in
float64. Formulas: REFERENCES.md, "Ensembles and uncertainty metrics".

Calibration of an ensemble is judged from the rank of the truth among the ``M`` members (its
probability integral transform, PIT), not from interpolated quantiles: for members and truth drawn
from the same distribution the rank is uniform on ``0..M`` whatever ``M``, so coverage,
reliability and the rank histogram of a perfect ensemble are right in expectation at ``M = 2``
as at ``M = 200``. Quantiles at ``p (M - 1)`` are not: a perfect 5-member ensemble covers about
34 % and 63 % of the truth at nominal 50 % and 90 % with them.

The PIT is randomised within the truth's rank: with ``below`` members under the truth and
``ties`` equal to it, ``u`` is uniform on ``[below, below + ties + 1] / (M + 1)``. Scores use its
expectation ``P(u <= p) = clip((p (M + 1) - below) / (ties + 1), 0, 1)`` per cell, so no random
numbers are drawn and the result is exact in expectation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from sciflow.metrics.spatial import as_float64, check_same_shape, masked_mean

DEFAULT_LEVELS = (0.5, 0.9)


def _ensemble(members: Tensor, truth: Tensor, min_members: int = 1) -> tuple[Tensor, Tensor]:
    x = as_float64(members, "members", min_ndim=4)
    y = as_float64(truth, "truth")
    if x.shape[1:] != y.shape:
        raise ValueError(
            f"members (M, B, C, *S) and truth (B, C, *S) disagree: members {tuple(x.shape)}, "
            f"truth {tuple(y.shape)}"
        )
    if x.shape[0] < min_members:
        raise ValueError(f"need M >= {min_members} members, got members {tuple(x.shape)}")
    return x, y


def _gaussian(mean: Tensor, scale: Tensor, truth: Tensor, scale_name: str) -> tuple[Tensor, ...]:
    mu = as_float64(mean, "mean")
    y = as_float64(truth, "truth")
    check_same_shape("mean", mu, "truth", y)
    s = torch.as_tensor(scale).to(dtype=torch.float64, device=mu.device)
    try:
        s = s.expand_as(mu)
    except RuntimeError:
        raise ValueError(
            f"{scale_name} of shape {tuple(s.shape)} does not broadcast to mean {tuple(mu.shape)}"
        ) from None
    if bool((s < 0).any()) or bool(torch.isnan(s).any()):
        raise ValueError(f"{scale_name} must be >= 0 everywhere")
    return mu, s, y


def crps_cells(members: Tensor, truth: Tensor, *, fair: bool = True) -> Tensor:
    """Ensemble CRPS per cell, ``members (M, B, ...)``, ``truth (B, ...)`` -> ``(B, ...)``.

    ``mean_m |x_m - y| - sum_{m,k} |x_m - x_k| / (2 M (M - 1))`` (``fair``; ``2 M^2`` otherwise).
    Keeps the dtype and is differentiable (a training loss uses it); no reduction, no checks
    beyond ``M >= 2`` for the fair form.
    """
    M = members.shape[0]
    if fair and M < 2:
        raise ValueError(f"the fair CRPS needs M >= 2 members, got members {tuple(members.shape)}")
    skill = (members - truth.unsqueeze(0)).abs().mean(dim=0)
    # sum_{m,k} |x_m - x_k| = 2 sum_i (2 i - M - 1) x_(i) over the sorted members (i = 1..M):
    # O(M log M) instead of O(M^2) memory.
    xs = members.sort(dim=0).values
    rank = torch.arange(1, M + 1, dtype=members.dtype, device=members.device)
    coef = (2 * rank - M - 1).reshape(M, *([1] * (members.ndim - 1)))
    pair_sum = 2 * (coef * xs).sum(dim=0)
    return skill - (pair_sum / (2 * M * (M - 1)) if fair else pair_sum / (2 * M * M))


def crps_ensemble(
    members: Tensor,
    truth: Tensor,
    mask: Tensor | None = None,
    *,
    fair: bool = True,
    per_channel: bool = False,
) -> Tensor:
    """Ensemble CRPS ``mean_m |x_m - y| - sum_{m,k} |x_m - x_k| / (2 M (M - 1))``.

    ``fair=True`` (default, needs ``M >= 2``) is the unbiased estimate of the CRPS of the
    distribution the members are drawn from; ``fair=False`` divides the spread term by
    ``2 M^2`` (the CRPS of the empirical distribution; with one member it is the absolute
    error). Returns ``(B,)`` or ``(B, C)``.
    """
    x, y = _ensemble(members, truth, min_members=2 if fair else 1)
    return masked_mean(crps_cells(x, y, fair=fair), mask, per_channel=per_channel)


def crps_gaussian(
    mean: Tensor,
    std: Tensor,
    truth: Tensor,
    mask: Tensor | None = None,
    *,
    per_channel: bool = False,
) -> Tensor:
    """Closed-form CRPS of ``N(mean, std^2)``: ``std [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)]``.

    ``z = (truth - mean) / std``; where ``std == 0`` the score is ``|truth - mean|`` (the limit).
    ``std`` broadcasts to ``mean``. Returns ``(B,)`` or ``(B, C)``.
    """
    mu, s, y = _gaussian(mean, std, truth, "std")
    pos = s > 0
    safe = torch.where(pos, s, torch.ones_like(s))
    z = (y - mu) / safe
    pdf = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    crps = safe * (z * (2 * torch.special.ndtr(z) - 1) + 2 * pdf - 1 / math.sqrt(math.pi))
    crps = torch.where(pos, crps, (y - mu).abs())
    return masked_mean(crps, mask, per_channel=per_channel)


def spread_skill_terms(
    members: Tensor,
    truth: Tensor,
    mask: Tensor | None = None,
    *,
    per_channel: bool = False,
) -> tuple[Tensor, Tensor]:
    """Squared spread and squared skill, each ``(B,)`` or ``(B, C)``.

    spread^2 = (M + 1) / M * mean over cells of the unbiased ensemble variance; skill^2 = MSE
    of the ensemble mean. For members and truth drawn from the same distribution both have
    expectation ``(M + 1) / M * sigma^2``. Average these over samples and steps first, then take
    ``sqrt(spread2 / skill2)``: a ratio of averages is far less noisy than an average of ratios.
    """
    x, y = _ensemble(members, truth, min_members=2)
    M = x.shape[0]
    var = x.var(dim=0, correction=1)
    spread2 = (M + 1) / M * masked_mean(var, mask, per_channel=per_channel)
    skill2 = masked_mean((x.mean(dim=0) - y) ** 2, mask, per_channel=per_channel)
    return spread2, skill2


def spread_skill_ratio(
    members: Tensor,
    truth: Tensor,
    mask: Tensor | None = None,
    *,
    per_channel: bool = False,
) -> Tensor:
    """``sqrt(spread^2 / skill^2)`` per sample (see :func:`spread_skill_terms`).

    1 is calibrated, below 1 overconfident, above 1 underconfident. ``(B,)`` or ``(B, C)``.
    """
    spread2, skill2 = spread_skill_terms(members, truth, mask, per_channel=per_channel)
    return (spread2 / skill2).sqrt()


def ensemble_quantiles(members: Tensor, probs: Sequence[float] | Tensor) -> Tensor:
    """Quantiles of ``members: (M, ...)`` along axis 0 with plotting positions ``i / (M + 1)``:
    ``(P, ...)``.

    The ``i``-th smallest member (``i = 1..M``) is the ``i / (M + 1)`` quantile (for exchangeable
    members and truth, ``P(y <= x_(i)) = i / (M + 1)`` exactly); levels in between are linearly
    interpolated, levels outside ``[1 / (M + 1), M / (M + 1)]`` extrapolated linearly from the
    two outermost members (a small ensemble's members do not reach its tails). ``M = 1``: the
    member itself. Inside the range this is numpy's ``method="weibull"``.
    """
    x = torch.as_tensor(members).to(torch.float64)
    p = torch.as_tensor(probs, dtype=torch.float64, device=x.device).reshape(-1)
    if bool(((p < 0) | (p > 1)).any()):
        raise ValueError(f"quantile levels must lie in [0, 1], got {p.tolist()}")
    M = x.shape[0]
    xs = x.sort(dim=0).values
    if M == 1:
        return xs.expand(p.shape[0], *xs.shape[1:]).clone()
    pos = p * (M + 1) - 1  # fractional 0-based index of the order statistic
    lo = pos.floor().clamp(0, M - 2).to(torch.int64)
    frac = (pos - lo).reshape(-1, *([1] * (x.ndim - 1)))
    return xs[lo] + frac * (xs[lo + 1] - xs[lo])


def _check_levels(levels: Sequence[float], what: str) -> list[float]:
    out = [float(v) for v in levels]
    if not out or any(not 0 < v < 1 for v in out):
        raise ValueError(f"{what} must lie strictly between 0 and 1, got {out}")
    return out


def truth_ranks(members: Tensor, truth: Tensor) -> tuple[Tensor, Tensor]:
    """Where the truth falls among the members, per cell: ``(below, ties)``, each ``(B, C, *S)``
    int64: the number of members strictly below the truth and equal to it."""
    x, y = _ensemble(members, truth, min_members=1)
    return (x < y).sum(dim=0), (x == y).sum(dim=0)


def pit_cdf(members: Tensor, truth: Tensor, probs: Sequence[float] | Tensor) -> Tensor:
    """``P(u <= p)`` of the truth's randomised PIT ``u`` per cell and level: ``(L, B, C, *S)``.

    ``u`` is uniform on ``[below, below + ties + 1] / (M + 1)`` (see the module docstring), so
    for a calibrated ensemble ``u ~ U(0, 1)`` and the expectation of this is ``p`` at any ``M``.
    """
    M = torch.as_tensor(members).shape[0]
    below, ties = truth_ranks(members, truth)
    p = torch.as_tensor(probs, dtype=torch.float64, device=below.device).reshape(-1)
    p = p.reshape(-1, *([1] * below.ndim))
    return ((p * (M + 1) - below) / (ties + 1)).clamp(0.0, 1.0)


def interval_coverage(
    members: Tensor,
    truth: Tensor,
    levels: Sequence[float] = DEFAULT_LEVELS,
    mask: Tensor | None = None,
    *,
    per_channel: bool = False,
) -> tuple[Tensor, Tensor]:
    """Coverage and mean width of the ensemble's central intervals.

    Coverage at level ``a`` is the fraction of masked cells whose PIT lies in
    ``[(1 - a) / 2, (1 + a) / 2]`` (in expectation over the randomised PIT, see
    :func:`pit_cdf`): ``a`` in expectation for a calibrated ensemble of any size ``M >= 1``.
    The width is that of the interval between the :func:`ensemble_quantiles` at those levels.
    Returns ``(coverage, width)``, each ``(B, L)`` (``per_channel``: ``(B, C, L)``).
    """
    x, y = _ensemble(members, truth, min_members=1)
    lv = _check_levels(levels, "levels")
    bounds = [q for a in lv for q in ((1 - a) / 2, (1 + a) / 2)]
    cdf = pit_cdf(x, y, bounds)
    quant = ensemble_quantiles(x, bounds)
    cov, width = [], []
    for i in range(len(lv)):
        cov.append(masked_mean(cdf[2 * i + 1] - cdf[2 * i], mask, per_channel=per_channel))
        width.append(masked_mean(quant[2 * i + 1] - quant[2 * i], mask, per_channel=per_channel))
    return torch.stack(cov, dim=-1), torch.stack(width, dim=-1)


def rank_histogram(members: Tensor, truth: Tensor, mask: Tensor | None = None) -> Tensor:
    """Frequency of each rank ``0..M`` of the truth among the members: ``(B, M + 1)``.

    Rank ``r`` = number of members below the truth; a cell whose truth ties with members spreads
    its weight evenly over the tied ranks. Each row sums to 1 over the masked cells; a calibrated
    ensemble is flat (``1 / (M + 1)`` each), an overconfident one U-shaped, a biased one sloped.
    """
    x, y = _ensemble(members, truth, min_members=1)
    below, ties = truth_ranks(x, y)
    share = 1.0 / (ties + 1).to(torch.float64)
    bins = [
        masked_mean(torch.where((below <= r) & (r <= below + ties), share, 0.0), mask)
        for r in range(x.shape[0] + 1)
    ]
    return torch.stack(bins, dim=-1)


def gaussian_interval_coverage(
    mean: Tensor,
    std: Tensor,
    truth: Tensor,
    levels: Sequence[float] = DEFAULT_LEVELS,
    mask: Tensor | None = None,
    *,
    per_channel: bool = False,
) -> tuple[Tensor, Tensor]:
    """Coverage and mean width of ``mean +- z_a std`` with ``z_a = Phi^-1((1 + a) / 2)``.

    Same returns as :func:`interval_coverage`: ``(B, L)`` each (``per_channel``: ``(B, C, L)``).
    """
    mu, s, y = _gaussian(mean, std, truth, "std")
    lv = _check_levels(levels, "levels")
    cov, width = [], []
    for a in lv:
        half = float(torch.special.ndtri(torch.tensor((1 + a) / 2, dtype=torch.float64))) * s
        inside = ((y - mu).abs() <= half).double()
        cov.append(masked_mean(inside, mask, per_channel=per_channel))
        width.append(masked_mean(2 * half, mask, per_channel=per_channel))
    return torch.stack(cov, dim=-1), torch.stack(width, dim=-1)


def gaussian_nll(
    mean: Tensor,
    var: Tensor,
    truth: Tensor,
    mask: Tensor | None = None,
    *,
    per_channel: bool = False,
    min_var: float = 1e-12,
) -> Tensor:
    """Gaussian negative log-likelihood ``0.5 [log(2 pi var) + (truth - mean)^2 / var]``.

    Per cell, averaged over masked cells and channels: ``(B,)`` or ``(B, C)``. ``var`` is
    clamped below at ``min_var`` so that a collapsed variance gives a large, finite score.
    """
    mu, v, y = _gaussian(mean, var, truth, "var")
    v = v.clamp_min(min_var)
    nll = 0.5 * (torch.log(2 * math.pi * v) + (y - mu) ** 2 / v)
    return masked_mean(nll, mask, per_channel=per_channel)


def _default_probs(levels: Sequence[float] | None) -> Tensor:
    if levels is None:
        return torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    return torch.tensor(_check_levels(levels, "probability levels"), dtype=torch.float64)


def reliability_curve(
    members: Tensor,
    truth: Tensor,
    mask: Tensor | None = None,
    levels: Sequence[float] | None = None,
) -> tuple[Tensor, Tensor]:
    """Observed frequency of ``PIT <= p`` against the nominal probability ``p``.

    The PIT is the truth's randomised rank among the members (:func:`pit_cdf`), so a calibrated
    ensemble lies on the diagonal in expectation at any ``M``; an overconfident one is too flat
    (S-shaped), a biased one shifted. Returns ``(levels: (L,), observed: (B, L))`` (default
    levels 0.05, 0.10, ..., 0.95).
    """
    x, y = _ensemble(members, truth, min_members=1)
    p = _default_probs(levels).to(x.device)
    cdf = pit_cdf(x, y, p)  # (L, B, C, *S)
    obs = [masked_mean(cdf[i], mask) for i in range(p.shape[0])]
    return p, torch.stack(obs, dim=-1)


def gaussian_reliability_curve(
    mean: Tensor,
    std: Tensor,
    truth: Tensor,
    mask: Tensor | None = None,
    levels: Sequence[float] | None = None,
) -> tuple[Tensor, Tensor]:
    """Reliability curve of ``N(mean, std^2)``: frequency of ``Phi((truth - mean) / std) <= p``.

    Returns ``(levels: (L,), observed: (B, L))``. ``std`` must be > 0.
    """
    mu, s, y = _gaussian(mean, std, truth, "std")
    if bool((s == 0).any()):
        raise ValueError("std must be > 0 for a Gaussian reliability curve")
    p = _default_probs(levels).to(mu.device)
    pit = torch.special.ndtr((y - mu) / s)
    obs = [masked_mean((pit <= p[i]).double(), mask) for i in range(p.shape[0])]
    return p, torch.stack(obs, dim=-1)


def calibration_error(levels: Tensor, observed: Tensor) -> Tensor:
    """RMS gap between observed and nominal frequencies: ``observed (..., L)`` -> ``(...)``.

    Pass the output of :func:`reliability_curve`; average ``observed`` over samples first to
    get the calibration error of the whole set.
    """
    p = torch.as_tensor(levels, dtype=torch.float64)
    o = torch.as_tensor(observed, dtype=torch.float64)
    if o.shape[-1:] != p.shape:
        raise ValueError(
            f"observed (..., L) and levels (L,) disagree: {tuple(o.shape)} and {tuple(p.shape)}"
        )
    return ((o - p.to(o.device)) ** 2).mean(dim=-1).sqrt()


__all__ = [
    "DEFAULT_LEVELS",
    "calibration_error",
    "crps_cells",
    "crps_ensemble",
    "crps_gaussian",
    "ensemble_quantiles",
    "gaussian_interval_coverage",
    "gaussian_nll",
    "gaussian_reliability_curve",
    "interval_coverage",
    "pit_cdf",
    "rank_histogram",
    "reliability_curve",
    "spread_skill_ratio",
    "spread_skill_terms",
    "truth_ranks",
]

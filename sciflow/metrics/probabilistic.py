"""Scores of probabilistic predictions: CRPS, spread-skill, interval coverage, NLL, calibration.

Shapes: ensemble ``members: (M, B, C, *S)``; Gaussian predictions ``mean``, ``std`` or ``var``
``(B, C, *S)``; ``truth: (B, C, *S)``; ``mask: (B, *S)`` or ``(*S)`` bool. Pointwise scores are
averaged over masked cells and channels into ``(B,)`` (``per_channel=True``: ``(B, C)``), in
float64. Formulas: REFERENCES.md, "Ensembles and uncertainty metrics".
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
    ``2 M^2`` (the CRPS of the empirical distribution). Returns ``(B,)`` or ``(B, C)``.
    """
    x, y = _ensemble(members, truth, min_members=2 if fair else 1)
    M = x.shape[0]
    skill = (x - y).abs().mean(dim=0)
    # sum_{m,k} |x_m - x_k| = 2 sum_i (2 i - M - 1) x_(i) over the sorted members (i = 1..M):
    # O(M log M) instead of O(M^2) memory.
    xs = x.sort(dim=0).values
    rank = torch.arange(1, M + 1, dtype=torch.float64, device=x.device)
    coef = (2 * rank - M - 1).reshape(M, *([1] * (x.ndim - 1)))
    pair_sum = 2 * (coef * xs).sum(dim=0)
    spread = pair_sum / (2 * M * (M - 1)) if fair else pair_sum / (2 * M * M)
    return masked_mean(skill - spread, mask, per_channel=per_channel)


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
    """Empirical quantiles of ``members: (M, ...)`` along axis 0: ``(P, ...)``.

    Linear interpolation between order statistics (``torch.quantile``'s "linear"), done by
    sorting so that it works on any tensor size.
    """
    x = torch.as_tensor(members).to(torch.float64)
    p = torch.as_tensor(probs, dtype=torch.float64, device=x.device).reshape(-1)
    if bool(((p < 0) | (p > 1)).any()):
        raise ValueError(f"quantile levels must lie in [0, 1], got {p.tolist()}")
    M = x.shape[0]
    xs = x.sort(dim=0).values
    pos = p * (M - 1)
    lo = pos.floor().to(torch.int64)
    hi = pos.ceil().to(torch.int64)
    frac = (pos - lo).reshape(-1, *([1] * (x.ndim - 1)))
    return xs[lo] + frac * (xs[hi] - xs[lo])


def _check_levels(levels: Sequence[float], what: str) -> list[float]:
    out = [float(v) for v in levels]
    if not out or any(not 0 < v < 1 for v in out):
        raise ValueError(f"{what} must lie strictly between 0 and 1, got {out}")
    return out


def interval_coverage(
    members: Tensor,
    truth: Tensor,
    levels: Sequence[float] = DEFAULT_LEVELS,
    mask: Tensor | None = None,
    *,
    per_channel: bool = False,
) -> tuple[Tensor, Tensor]:
    """Coverage and mean width of the ensemble's central intervals.

    For each level ``a`` the interval runs between the empirical ``(1 - a) / 2`` and
    ``(1 + a) / 2`` quantiles of the members. Returns ``(coverage, width)``, each ``(B, L)``
    (``per_channel``: ``(B, C, L)``): the fraction of masked cells whose truth lies inside and
    the mean interval width. With few members the empirical interval is narrower than the
    nominal one, so coverage falls short of ``a`` even for a perfect ensemble.
    """
    x, y = _ensemble(members, truth, min_members=2)
    lv = _check_levels(levels, "levels")
    cov, width = [], []
    for a in lv:
        lo, hi = ensemble_quantiles(x, [(1 - a) / 2, (1 + a) / 2])
        cov.append(masked_mean(((y >= lo) & (y <= hi)).double(), mask, per_channel=per_channel))
        width.append(masked_mean(hi - lo, mask, per_channel=per_channel))
    return torch.stack(cov, dim=-1), torch.stack(width, dim=-1)


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
    """Observed frequency of ``truth <= q_p`` against the nominal probability ``p``.

    ``q_p`` is the empirical ``p``-quantile of the members at each cell. Returns
    ``(levels: (L,), observed: (B, L))`` (default levels 0.05, 0.10, ..., 0.95). A calibrated
    ensemble lies on the diagonal; an overconfident one is too flat (S-shaped).
    """
    x, y = _ensemble(members, truth, min_members=2)
    p = _default_probs(levels).to(x.device)
    q = ensemble_quantiles(x, p)  # (L, B, C, *S)
    obs = [masked_mean((y <= q[i]).double(), mask) for i in range(p.shape[0])]
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
    "crps_ensemble",
    "crps_gaussian",
    "ensemble_quantiles",
    "gaussian_interval_coverage",
    "gaussian_nll",
    "gaussian_reliability_curve",
    "interval_coverage",
    "reliability_curve",
    "spread_skill_ratio",
    "spread_skill_terms",
]

"""Per-step scores of a rollout: what the results collector computes at every step and trajectory.

A :class:`Score` computes one or more named outputs from a :class:`StepContext` (the members,
the ensemble mean, the truth and the initial state of one step for a batch of trajectories).
Each output becomes a variable ``(trajectory, time)`` of the results, or ``(trajectory, time,
<dim>)`` with an extra dimension whose coordinate is given in :data:`EXTRA_DIMS`. The collector
takes a list of scores (default :data:`DEFAULT_SCORES`); adding one more is a new ``Score`` in
that list, nothing else changes.

Ensemble scores (``ensemble=True``) need two or more members and are computed over the members
that are still alive in each trajectory (a trajectory with fewer than two gets NaN); scores
whose extra dimension depends on the ensemble size (the rank histogram) only where every member
is alive. Scores of the ensemble mean are NaN where no member is alive.

Units: every score pools the cells (fluid cells only, with a mask) of a step; ``nmse``,
``nrmse`` and ``correlation`` are computed per stored field (vector components pooled) and
averaged over fields, because fields carry different units; the others (``crps``, ``mae``,
``spread``, ``skill``) pool channels in physical units, so compare them across models of one
dataset, not across datasets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from sciflow import metrics

COVERAGE_LEVELS = (0.5, 0.9)
RELIABILITY_LEVELS = tuple(round(0.05 * i, 2) for i in range(1, 20))


@dataclass(frozen=True)
class StepContext:
    """What a score sees at one step for ``b`` trajectories (float64 tensors).

    Attributes:
        index: model step ``k`` (0 is the initial condition).
        time: seconds since the initial condition.
        members: ``(M, b, C, *S)``; for ensemble scores only the alive members.
        mean: ``(b, C, *S)`` ensemble mean (of the alive members).
        truth: ``(b, C, *S)``.
        initial: ``(b, C, *S)`` the state at t = 0 (copying it is the baseline).
        mask: ``(b, *S)`` bool fluid cells, or None.
        groups: channel indices of each stored field (vector components together).
        coords: spatial coordinate values by dim name.
        params: ``(b, P)`` operating parameters, or None.
    """

    index: int
    time: float
    members: Tensor
    mean: Tensor
    truth: Tensor
    initial: Tensor
    mask: Tensor | None
    groups: list[list[int]]
    coords: Mapping[str, np.ndarray]
    params: Tensor | None = None

    def subset(self, idx: Tensor | list[int], keep: Tensor | None = None) -> StepContext:
        """The context of trajectories ``idx`` (and members ``keep``, a bool ``(M,)``, if given)."""
        members = self.members if keep is None else self.members[keep]
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return StepContext(self.index, self.time, members[:, idx], self.mean[idx], self.truth[idx],
                           self.initial[idx], pick(self.mask), self.groups, self.coords, pick(self.params))


@dataclass(frozen=True)
class Score:
    """Scores computed together.

    Attributes:
        outputs: variable name -> extra dimension name (a key of :data:`EXTRA_DIMS`) or None.
        compute: ``StepContext -> {name: (b,) or (b, K)}`` for every name in ``outputs``.
        long_names: variable name -> description (the netCDF ``long_name``).
        ensemble: needs two or more members; computed over the alive members.
        all_members: the extra dimension depends on the ensemble size: computed only where every
            member is alive.
        coords: coordinates of extra dimensions this score brings itself (e.g. the names of a
            card's conservation laws), dim name -> values; other extra dims come from
            :data:`EXTRA_DIMS`.
    """

    outputs: Mapping[str, str | None]
    compute: Callable[[StepContext], Mapping[str, np.ndarray]]
    long_names: Mapping[str, str] = field(default_factory=dict)
    ensemble: bool = False
    all_members: bool = False
    coords: Mapping[str, Sequence[object]] = field(default_factory=dict)


#: extra dimension name -> its coordinate values for an ensemble of ``M`` members
EXTRA_DIMS: dict[str, Callable[[int], np.ndarray]] = {
    "coverage_level": lambda M: np.asarray(COVERAGE_LEVELS),
    "probability": lambda M: np.asarray(RELIABILITY_LEVELS),
    "rank": lambda M: np.arange(M + 1),
}


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _errors(c: StepContext) -> dict[str, np.ndarray]:
    field_nmse = metrics.grouped_nmse(c.mean, c.truth, c.groups, c.mask)  # (b, F)
    copy_nmse = metrics.grouped_nmse(c.initial, c.truth, c.groups, c.mask)
    corr = [metrics.pearson_correlation(c.mean[:, g], c.truth[:, g], c.mask) for g in c.groups]
    return {
        "nmse": _np(field_nmse.mean(-1)),
        "nrmse": _np(field_nmse.sqrt().mean(-1)),
        "vrmse": _np(metrics.vrmse(c.mean, c.truth, c.mask)),
        "correlation": _np(torch.stack(corr, -1).mean(-1)),
        "mae": _np(metrics.mae(c.mean, c.truth, c.mask)),
        "nmse_copy": _np(copy_nmse.mean(-1)),
    }


def _spread_skill(c: StepContext) -> dict[str, np.ndarray]:
    spread2, skill2 = metrics.spread_skill_terms(c.members, c.truth, c.mask)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.sqrt(_np(spread2) / _np(skill2))
    return {
        "crps": _np(metrics.crps_ensemble(c.members, c.truth, c.mask)),
        "spread": _np(spread2.sqrt()),
        "skill": _np(skill2.sqrt()),
        "spread_skill": ratio,
        "sample_correlation": _np(metrics.sample_decorrelation(c.members, c.mask)),
    }


def _calibration(c: StepContext) -> dict[str, np.ndarray]:
    cov, width = metrics.interval_coverage(c.members, c.truth, COVERAGE_LEVELS, c.mask)
    _, rel = metrics.reliability_curve(c.members, c.truth, c.mask, RELIABILITY_LEVELS)
    return {"coverage": _np(cov), "interval_width": _np(width), "reliability": _np(rel)}


def _ranks(c: StepContext) -> dict[str, np.ndarray]:
    return {"rank_histogram": _np(metrics.rank_histogram(c.members, c.truth, c.mask))}


ERRORS = Score(
    outputs=dict.fromkeys(("nmse", "nrmse", "vrmse", "correlation", "mae", "nmse_copy")),
    compute=_errors,
    long_names={
        "nmse": "NMSE of the ensemble mean, MSE / mean(truth^2) per field, averaged over fields",
        "nrmse": "square root of the NMSE per field, averaged over fields",
        "vrmse": "RMSE of the ensemble mean / standard deviation of the truth",
        "correlation": "Pearson correlation of the ensemble mean with the truth, averaged over fields",
        "mae": "mean absolute error of the ensemble mean (the CRPS of a point forecast)",
        "nmse_copy": "NMSE of copying the initial state (persistence baseline), as nmse",
    },
)
SPREAD_SKILL = Score(
    outputs=dict.fromkeys(("crps", "spread", "skill", "spread_skill", "sample_correlation")),
    compute=_spread_skill,
    ensemble=True,
    long_names={
        "crps": "fair ensemble CRPS",
        "spread": "ensemble spread sqrt((M + 1) / M * mean unbiased variance)",
        "skill": "RMSE of the ensemble mean",
        "spread_skill": "spread / skill (1: calibrated, below 1: overconfident)",
        "sample_correlation": "mean pairwise Pearson correlation between members",
    },
)
CALIBRATION = Score(
    outputs={"coverage": "coverage_level", "interval_width": "coverage_level", "reliability": "probability"},
    compute=_calibration,
    ensemble=True,
    long_names={
        "coverage": "fraction of the truth inside the central interval (rank-based PIT)",
        "interval_width": "mean width of the central interval (quantiles at plotting positions i / (M + 1))",
        "reliability": "observed frequency of PIT <= probability (rank-based)",
    },
)
RANKS = Score(
    outputs={"rank_histogram": "rank"},
    compute=_ranks,
    ensemble=True,
    all_members=True,
    long_names={"rank_histogram": "frequency of the truth's rank among the members (ties shared)"},
)
DEFAULT_SCORES: tuple[Score, ...] = (ERRORS, SPREAD_SKILL, CALIBRATION, RANKS)


def score_names(scores: Sequence[Score], n_members: int) -> dict[str, str | None]:
    """Output name -> extra dim of the scores an ensemble of ``n_members`` gets."""
    out: dict[str, str | None] = {}
    for s in scores:
        if s.ensemble and n_members < 2:
            continue
        for name, dim in s.outputs.items():
            if name in out:
                raise ValueError(f"two scores produce the variable {name!r}")
            if dim is not None and dim not in EXTRA_DIMS and dim not in s.coords:
                raise ValueError(f"score output {name!r}: extra dimension {dim!r} is neither in EXTRA_DIMS "
                                 "nor in the score's coords")
            out[name] = dim
    return out


def extra_coords(scores: Sequence[Score], n_members: int) -> dict[str, np.ndarray]:
    """Extra dim name -> coordinate values of the outputs ``scores`` give ``n_members`` members."""
    dims = {d for d in score_names(scores, n_members).values() if d is not None}
    out: dict[str, np.ndarray] = {}
    for s in scores:
        for d, values in s.coords.items():
            v = np.asarray(values)
            if d in out and not np.array_equal(out[d], v):
                raise ValueError(f"two scores give the extra dimension {d!r} different coordinates")
            out[d] = v
    return {d: out[d] if d in out else EXTRA_DIMS[d](n_members) for d in sorted(dims)}


__all__ = [
    "CALIBRATION",
    "COVERAGE_LEVELS",
    "DEFAULT_SCORES",
    "ERRORS",
    "EXTRA_DIMS",
    "RANKS",
    "RELIABILITY_LEVELS",
    "SPREAD_SKILL",
    "Score",
    "StepContext",
    "extra_coords",
    "score_names",
]

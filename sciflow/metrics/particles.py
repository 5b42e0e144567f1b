"""Scores of particle rollouts, defined as LagrangeBench defines them so that numbers compare.

Rollouts are ``(T, N, D)``: ``T`` predicted frames (index 0 is the first model step), ``N``
particles (walls included, as LagrangeBench scores them: their positions are prescribed, so they
add zeros), ``D`` coordinates. ``domain`` (anything with ``displacement(a, b)``, e.g.
:class:`sciflow.nn.neighbors.Domain`) takes minimum images on periodic axes. Results are float64.

- **Position MSE** of step ``t``: the mean over particles and coordinates of the squared
  displacement between prediction and truth; ``MSE_k`` is its mean over the first ``k`` steps
  (LagrangeBench's ``mse5``, ``mse10``, ``mse20``).
- **Sinkhorn divergence** (:mod:`sciflow.metrics.sinkhorn`) between predicted and true clouds at
  every ``stride``-th step (LagrangeBench: stride 10, frames 0, 10, ...), averaged.
- **Kinetic energy** of a frame, LagrangeBench's convention: ``sum_i |v_i|^2 * dx^D`` with
  ``v = (x_{t+1} - x_t) / frame_dt`` (no 1/2, unit density); the error is the MSE between the
  predicted and true energies at frames ``0, stride, ...`` (velocities from frames ``s, s + 1``).
- **Ensemble spread** of deep ensembles: spread and skill with the finite-ensemble correction
  (:func:`sciflow.metrics.probabilistic.spread_skill_terms`) on positions relative to the truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from sciflow.metrics.probabilistic import spread_skill_terms
from sciflow.metrics.sinkhorn import sinkhorn_divergence

HORIZONS = (5, 10, 20)


def _displacement(a: Tensor, b: Tensor, domain: Any | None) -> Tensor:
    return a - b if domain is None else domain.displacement(a, b)


def _check(pred: Tensor, truth: Tensor) -> tuple[Tensor, Tensor]:
    if pred.shape != truth.shape or pred.ndim < 2:
        raise ValueError(f"prediction {tuple(pred.shape)} and truth {tuple(truth.shape)} must both be (..., N, D)")
    return pred.to(torch.float64), truth.to(torch.float64)


def position_mse(pred: Tensor, truth: Tensor, domain: Any | None = None) -> Tensor:
    """Mean squared position error over particles and coordinates: ``(..., N, D) -> (...)``."""
    p, t = _check(pred, truth)
    return _displacement(p, t, domain).pow(2).mean(dim=(-2, -1))


def horizon_means(per_step: Tensor, horizons: Sequence[int] = HORIZONS) -> dict[str, float]:
    """``{"mse5": ..., "mse10": ..., "mse": ...}`` from the per-step errors ``(T,)``; horizons longer
    than the rollout are left out."""
    out = {f"mse{k}": float(per_step[:k].mean()) for k in horizons if k <= per_step.shape[0]}
    out["mse"] = float(per_step.mean())
    return out


def kinetic_energy(positions: Tensor, frame_dt: float, dx: float, domain: Any | None = None) -> Tensor:
    """LagrangeBench's kinetic energy ``sum_i |x_{t+1} - x_t|^2 / frame_dt^2 * dx^D`` of each
    consecutive pair of ``positions (T, N, D)``: ``(T - 1,)``."""
    if positions.ndim != 3 or positions.shape[0] < 2:
        raise ValueError(f"kinetic_energy: need positions (T >= 2, N, D), got {tuple(positions.shape)}")
    x = positions.to(torch.float64)
    v = _displacement(x[1:], x[:-1], domain) / frame_dt
    return v.pow(2).sum(dim=(-2, -1)) * dx ** x.shape[-1]


def kinetic_energy_error(pred: Tensor, truth: Tensor, frame_dt: float, dx: float, *, stride: int = 10,
                         domain: Any | None = None) -> dict[str, Tensor]:
    """Kinetic energies of prediction and truth at frames ``0, stride, ...`` (velocities from
    frames ``s, s + 1``) and their MSE: ``{"predicted": (K,), "target": (K,), "mse": ()}``."""
    p, t = _check(pred, truth)
    if p.ndim != 3 or p.shape[0] < 2:
        raise ValueError(f"kinetic_energy_error: need rollouts (T >= 2, N, D), got {tuple(p.shape)}")
    starts = torch.arange(0, p.shape[0] - 1, stride)

    def energy(x: Tensor) -> Tensor:
        v = _displacement(x[starts + 1], x[starts], domain) / frame_dt
        return v.pow(2).sum(dim=(-2, -1)) * dx ** x.shape[-1]

    ep, et = energy(p), energy(t)
    return {"predicted": ep, "target": et, "mse": ((ep - et) ** 2).mean()}


def sinkhorn_over_rollout(pred: Tensor, truth: Tensor, *, stride: int = 10, domain: Any | None = None,
                          dtype: torch.dtype = torch.float64) -> Tensor:
    """Sinkhorn divergence at frames ``0, stride, ...`` (excluding the last frame, as
    LagrangeBench's ``[0:-1:stride]``): ``(K,)``."""
    p, t = _check(pred, truth)
    frames = range(0, max(p.shape[0] - 1, 1), stride)
    return torch.stack([sinkhorn_divergence(p[k], t[k], domain=domain, dtype=dtype) for k in frames])


def rollout_scores(pred: Tensor, truth: Tensor, *, frame_dt: float, dx: float, domain: Any | None = None,
                   horizons: Sequence[int] = HORIZONS, stride: int = 10, sinkhorn_steps: int | None = 20,
                   dtype: torch.dtype = torch.float64) -> dict[str, Any]:
    """LagrangeBench's scores of one rollout ``(T, N, D)``.

    Returns ``mse_per_step (T,)``, ``mse5/10/20`` and ``mse`` (whole rollout), ``sinkhorn`` and
    ``e_kin_mse`` over the first ``sinkhorn_steps`` steps (LagrangeBench reports them for the
    20-step rollouts; None: the whole rollout), and the kinetic-energy curves of the whole
    rollout (``e_kin_pred``, ``e_kin_true``: ``(T - 1,)``).
    """
    p, t = _check(pred, truth)
    per_step = position_mse(p, t, domain)
    short = slice(0, sinkhorn_steps)
    ek = kinetic_energy_error(p[short], t[short], frame_dt, dx, stride=stride, domain=domain)
    return {
        "mse_per_step": per_step,
        **horizon_means(per_step, horizons),
        "sinkhorn": float(sinkhorn_over_rollout(p[short], t[short], stride=stride, domain=domain, dtype=dtype).mean()),
        "e_kin_mse": float(ek["mse"]),
        "e_kin_pred": kinetic_energy(p, frame_dt, dx, domain),
        "e_kin_true": kinetic_energy(t, frame_dt, dx, domain),
    }


def ensemble_spread(members: Tensor, truth: Tensor, domain: Any | None = None) -> dict[str, Tensor]:
    """Spread and skill of an ensemble of particle clouds ``members (M, ..., N, D)`` against
    ``truth (..., N, D)``, over particles and coordinates, per leading index ``(...)``.

    ``spread^2 = (M + 1) / M * mean unbiased variance`` and ``skill^2 = MSE of the ensemble
    mean``; both have the same expectation for a calibrated ensemble, at any ``M >= 2``.
    Positions are taken relative to the truth (minimum images) so that members on both sides
    of a periodic face do not look far apart. Returns ``spread``, ``skill``, ``ratio``.
    """
    if members.ndim < 3 or members.shape[1:] != truth.shape:
        raise ValueError(f"members (M, ..., N, D) {tuple(members.shape)} do not match truth {tuple(truth.shape)}")
    rel = _displacement(members.to(torch.float64), truth.to(torch.float64)[None], domain)
    lead = truth.shape[:-2]
    rel = rel.reshape(members.shape[0], -1, *truth.shape[-2:])  # (M, B, N, D)
    spread2, skill2 = spread_skill_terms(rel, torch.zeros_like(rel[0]))
    spread, skill = spread2.sqrt().reshape(lead), skill2.sqrt().reshape(lead)
    return {"spread": spread, "skill": skill, "ratio": spread / skill}


__all__ = ["HORIZONS", "ensemble_spread", "horizon_means", "kinetic_energy", "kinetic_energy_error",
           "position_mse", "rollout_scores", "sinkhorn_over_rollout"]

"""The ProbConserv update (Hansen et al. 2023) and the per-member projection built on it.

For a Gaussian prediction ``N(mu, Sigma)`` and a linear law ``G u = b`` observed with noise
``sigma_G``:

    mu'    = mu - Sigma G^T (sigma_G^2 I + G Sigma G^T)^-1 (G mu - b)
    Sigma' = Sigma - Sigma G^T (sigma_G^2 I + G Sigma G^T)^-1 G Sigma

with ``Sigma`` diagonal (the per-cell variance). ``sigma_G = 0`` makes ``G mu' = b`` hold to
round-off, and the correction goes where the variance is largest. HardC is the same projection
with ``Sigma = I`` (the Euclidean projection onto the law). Applied to every ensemble member with
the ensemble's variance as ``Sigma``, it makes each member conservative while moving it most
where the members disagree. Everything is float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sciflow.constraints.base import LinearLaw
from sciflow.constraints.solve import solve_normal

#: how far below the mean variance of a batch element its per-cell variance may fall: cells where
#: every member agrees exactly would make the normal matrix singular, and a weight spanning many
#: orders of magnitude slows the matrix-free solve of a divergence; such cells take at most this
#: share of an average cell's correction either way
VAR_FLOOR = 1e-4


def alive_members(members: Tensor) -> Tensor:
    """``(M, B)`` bool: members whose state is finite everywhere."""
    return torch.isfinite(members).flatten(2).all(-1)


def ensemble_moments(members: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean and unbiased variance over the living members of ``(M, B, C, *S)``.

    Returns ``(mean (B, C, *S), var (B, C, *S), alive (M, B))`` in float64; a batch element with
    one living member has variance 0, with none NaN mean and variance. Stopped members (NaN)
    take no part.
    """
    x = members.to(torch.float64)
    alive = alive_members(x)
    w = alive.to(x.dtype).reshape(*alive.shape, *([1] * (x.ndim - 2)))
    n = w.sum(0)
    xz = torch.where(w > 0, x, torch.zeros_like(x))
    mean = xz.sum(0) / n
    var = ((xz - mean) ** 2 * w).sum(0) / (n - 1).clamp_min(1)
    return mean, var, alive


def weights_from_variance(law: LinearLaw, var: Tensor | None, floor: float = VAR_FLOOR) -> Tensor:
    """``Sigma``'s diagonal ``(B, C, *S)`` for a projection weighted by ``var`` (None: HardC, 1).

    The variance is raised to at least ``floor`` times its mean over the law's support, per
    batch element. A batch element whose variance is zero on the whole support (a single living member,
    members that agree exactly) falls back to ``Sigma = I`` there: with no spread there is
    nothing to weight by, and the law must still hold.
    """
    support = law.support()
    if var is None:
        return torch.ones(support.shape, dtype=torch.float64, device=law.device)
    v = torch.nan_to_num(var.to(torch.float64), nan=0.0).clamp_min(0.0) * support
    mean = v.flatten(1).sum(1) / support.flatten(1).sum(1).clamp_min(1)
    view = (-1,) + (1,) * (v.ndim - 1)
    flat = (mean <= 0).reshape(view)
    sigma = torch.maximum(v, floor * mean.reshape(view))
    return torch.where(flat, torch.ones_like(sigma), sigma)


def project(law: LinearLaw, u: Tensor, b: Tensor, sigma: Tensor, sigma_g: float = 0.0) -> Tensor:
    """``u - Sigma G^T (sigma_G^2 I + G Sigma G^T)^-1 (G u - b)`` for ``u: (..., B, C, *S)``,
    ``b`` broadcasting to ``(..., B, K)``, ``sigma: (B, C, *S)``; float64."""
    x = u.to(torch.float64)
    r = law.apply(x) - b
    lam = solve_normal(law, r, sigma, sigma_g)
    return x - sigma * law.adjoint(lam)


def probconserv_update(law: LinearLaw, mean: Tensor, var: Tensor, b: Tensor, sigma_g: float = 0.0, *,
                       probes: int = 32, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """ProbConserv's posterior mean and per-cell variance: ``(B, C, *S)`` each, float64.

    The variance is exact for laws whose normal matrix is formed (``law.dense``); for
    matrix-free laws (a divergence) its diagonal is estimated with ``probes`` Rademacher vectors
    (Hutchinson), as the exact diagonal would take one solve per cell.
    """
    sigma = weights_from_variance(law, var)
    new_mean = project(law, mean, b, sigma, sigma_g)
    if law.dense:
        G = law.matrix().flatten(2)  # (B, K, N)
        SGt = (sigma.flatten(1)[:, None, :] * G).transpose(1, 2)  # (B, N, K)
        solve = law.preconditioner(sigma, sigma_g)  # the exact inverse for dense laws
        X = solve(SGt.transpose(0, 1)).transpose(0, 1)  # (B, N, K): rows of A^-1 G Sigma
        reduction = (SGt * X).sum(-1).reshape(var.shape)
    else:
        z = torch.randint(0, 2, (probes, *sigma.shape), generator=generator, dtype=torch.float64,
                          device=sigma.device) * 2 - 1
        lam = solve_normal(law, law.apply(sigma * z), sigma, sigma_g)
        reduction = (z * sigma * law.adjoint(lam)).mean(0)
    new_var = (torch.nan_to_num(var.to(torch.float64), nan=0.0) - reduction).clamp_min(0.0)
    return new_mean, new_var


def project_members(law: LinearLaw, members: Tensor, b: Tensor, *, weighted: bool = True,
                    sigma_g: float = 0.0, floor: float = VAR_FLOOR) -> Tensor:
    """Project every living member of ``(M, B, C, *S)`` onto ``G u = b``; float64.

    ``weighted=True`` is ProbConserv's weighting (``Sigma`` = the living members' variance, see
    :func:`weights_from_variance`); False is HardC (``Sigma = I``). ``b`` broadcasts to
    ``(M, B, K)``. Stopped members (any NaN/Inf) stay as they are and take no part in the
    variance, so they cannot change the others' projection.
    """
    x = members.to(torch.float64)
    _, var, alive = ensemble_moments(x)
    sigma = weights_from_variance(law, var if weighted else None, floor)
    view = alive.reshape(*alive.shape, *([1] * (x.ndim - 2)))
    safe = torch.where(view, x, torch.zeros_like(x))
    out = project(law, safe, b, sigma, sigma_g)
    return torch.where(view, out, x)


__all__ = [
    "VAR_FLOOR",
    "alive_members",
    "ensemble_moments",
    "probconserv_update",
    "project",
    "project_members",
    "weights_from_variance",
]

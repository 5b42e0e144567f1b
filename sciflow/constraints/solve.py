"""Solving the normal equations ``(G Sigma G^T + sigma_G^2 I) lambda = r`` of a law.

Preconditioned conjugate gradients, batched: every right-hand side ``r: (..., B, K)`` (members,
batch elements) is its own system, with its own step sizes and its own stopping test. A law whose
preconditioner is its exact inverse (small laws, or a divergence with a constant ``Sigma`` and no
mask) converges in one iteration; otherwise the preconditioner makes the iteration count depend on
how much ``Sigma`` varies, not on the grid size.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from sciflow.constraints.base import LinearLaw


class ConvergenceWarning(RuntimeWarning):
    """The conjugate-gradient solve stopped at its iteration limit before its tolerance."""


def solve_normal(
    law: LinearLaw,
    r: Tensor,
    sigma: Tensor,
    sigma_g: float = 0.0,
    *,
    rtol: float = 1e-13,
    max_iter: int = 1000,
) -> Tensor:
    """``lambda: (..., B, K)`` with ``(G Sigma G^T + sigma_G^2 I) lambda = r``.

    ``sigma: (B, C, *S)`` is the diagonal of ``Sigma`` (> 0 on the law's support). Stops when
    every system's residual is below ``rtol`` times its right-hand side (the law then holds to
    that relative precision, since ``G u' - b`` is the residual when ``sigma_G = 0``).
    """
    r = r.to(torch.float64)
    precondition = law.preconditioner(sigma, sigma_g)
    x = precondition(r)
    if law.dense:
        return x
    res = r - law.normal(x, sigma, sigma_g)
    z = precondition(res)
    p = z.clone()
    rz = (res * z).sum(-1)
    scale = r.norm(dim=-1)
    goal = rtol * scale
    for _ in range(max_iter):
        active = res.norm(dim=-1) > goal
        if not bool(active.any()):
            return x
        Ap = law.normal(p, sigma, sigma_g)
        pAp = (p * Ap).sum(-1)
        alpha = torch.where(active & (pAp > 0), rz / torch.where(pAp > 0, pAp, 1.0), 0.0)
        x = x + alpha[..., None] * p
        res = res - alpha[..., None] * Ap
        z = precondition(res)
        rz_new = (res * z).sum(-1)
        beta = torch.where(active & (rz != 0), rz_new / torch.where(rz != 0, rz, 1.0), 0.0)
        p = z + beta[..., None] * p
        rz = rz_new
    worst = float((res.norm(dim=-1) / scale.clamp_min(1e-300)).max())
    warnings.warn(
        f"{law.name}: conjugate gradients stopped after {max_iter} iterations at relative residual "
        f"{worst:.3g} (asked {rtol:.1g}); the law holds only to that precision",
        ConvergenceWarning,
        stacklevel=2,
    )
    return x


__all__ = ["ConvergenceWarning", "solve_normal"]

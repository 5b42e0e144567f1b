"""Exact solutions of the generalized porous-medium equation ``u_t = (k(u) u_x)_x`` in the three
set-ups of ProbConserv (Hansen et al. 2023), as cell averages.

- Heat: ``k`` constant, ``x in [0, 2 pi]``, ``u(x, 0) = sin x``, ``u = 0`` at both ends:
  ``u = exp(-k t) sin x``. The fluxes at the two ends cancel: the total stays 0.
- Porous medium: ``k(u) = u^m``, ``x in [0, 1]``, ``u = (m (t - x))_+^(1/m)``: a front at
  ``x = t`` fed through ``x = 0``, where the inflow equals ``u(0, t) = (m t)^(1/m)``; the total
  is ``m^(1 + 1/m) t^(1 + 1/m) / (m + 1)``.
- Stefan: ``k = 1`` where ``u >= u*``, else 0; ``x in [0, 1]``, ``u(0, t) = 1``, ``u(x, 0) = 0``.
  The similarity solution is ``u = 1 - c erf(x / (2 sqrt t))`` behind the front
  ``s(t) = 2 alpha sqrt t`` and 0 beyond, with ``c = (1 - u*) / erf(alpha)`` and ``alpha`` the root
  of ``(1 - u*) exp(-alpha^2) = sqrt(pi) u* alpha erf(alpha)`` (the front moves as fast as the
  flux reaching it fills the jump ``u*``). The total is ``2 c sqrt(t / pi)``.

Cell averages are exact integrals over each cell divided by its width, so the midpoint sum of
the averages equals the exact total: the stored data satisfy the conservation law to round-off.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special


def _check_edges(edges: np.ndarray) -> np.ndarray:
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or not np.all(np.diff(e) > 0):
        raise ValueError(f"edges must increase strictly, got shape {e.shape}")
    return e


def heat_cell_average(edges: np.ndarray, t: float, k: float) -> np.ndarray:
    """``exp(-k t) sin x`` averaged over the cells between ``edges: (N + 1,)``: ``(N,)``."""
    e = _check_edges(edges)
    return math.exp(-k * t) * (np.cos(e[:-1]) - np.cos(e[1:])) / np.diff(e)


def pme_point(x: np.ndarray, t: float, m: float) -> np.ndarray:
    """``(m (t - x))_+^(1/m)`` at points ``x``."""
    return np.maximum(m * (t - np.asarray(x, dtype=np.float64)), 0.0) ** (1.0 / m)


def pme_cell_average(edges: np.ndarray, t: float, m: float) -> np.ndarray:
    """The porous-medium solution averaged over each cell: ``(N,)``.

    Antiderivative: ``-(m (t - x))_+^((m + 1) / m) / (m + 1)``."""
    e = _check_edges(edges)
    F = np.maximum(m * (t - e), 0.0) ** ((m + 1.0) / m) / (m + 1.0)
    return (F[:-1] - F[1:]) / np.diff(e)


def pme_mass(t: float, m: float) -> float:
    """``integral_0^1 u dx = m^(1 + 1/m) t^(1 + 1/m) / (m + 1)`` for ``t <= 1``."""
    return m ** (1 + 1 / m) * t ** (1 + 1 / m) / (m + 1)


def stefan_alpha(u_star: float | np.ndarray) -> np.ndarray:
    """The front constant ``alpha(u*)`` of the Stefan similarity solution, ``0 < u* < 1``."""
    us = np.asarray(u_star, dtype=np.float64)
    if np.any(~((us > 0) & (us < 1))):
        raise ValueError(f"u_star must lie in (0, 1), got {us.tolist()}")

    def root(v: float) -> float:
        f = lambda a: math.sqrt(math.pi) * v * a * math.erf(a) * math.exp(a * a) - (1 - v)  # noqa: E731
        return optimize.brentq(f, 1e-12, 6.0, xtol=1e-15, rtol=1e-15)

    return np.vectorize(root, otypes=[np.float64])(us)


def stefan_point(x: np.ndarray, t: float, u_star: float) -> np.ndarray:
    """The Stefan solution at points ``x`` (0 everywhere at ``t = 0``)."""
    x = np.asarray(x, dtype=np.float64)
    if t <= 0:
        return np.zeros_like(x)
    a = float(stefan_alpha(u_star))
    c = (1 - u_star) / math.erf(a)
    return np.where(x < 2 * a * math.sqrt(t), 1 - c * special.erf(x / (2 * math.sqrt(t))), 0.0)


def stefan_cell_average(edges: np.ndarray, t: float, u_star: float) -> np.ndarray:
    """The Stefan solution averaged over each cell: ``(N,)``. Antiderivative of the part behind
    the front: ``x - 2 c sqrt(t) G(x / (2 sqrt t))`` with ``G(z) = z erf z + exp(-z^2) / sqrt(pi)``."""
    e = _check_edges(edges)
    if t <= 0:
        return np.zeros(e.size - 1)
    a = float(stefan_alpha(u_star))
    c = (1 - u_star) / math.erf(a)
    r = 2 * math.sqrt(t)
    z = np.minimum(e, a * r) / r  # nothing beyond the front
    F = z * r - c * r * (z * special.erf(z) + np.exp(-z * z) / math.sqrt(math.pi))
    return (F[1:] - F[:-1]) / np.diff(e)


def stefan_mass(t: float, u_star: float) -> float:
    """``integral_0^1 u dx = 2 c sqrt(t / pi)`` while the front is inside the domain."""
    a = float(stefan_alpha(u_star))
    return 2 * (1 - u_star) / math.erf(a) * math.sqrt(t / math.pi)


__all__ = [
    "heat_cell_average",
    "pme_cell_average",
    "pme_mass",
    "pme_point",
    "stefan_alpha",
    "stefan_cell_average",
    "stefan_mass",
    "stefan_point",
]

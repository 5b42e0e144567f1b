"""Global integrals on uniform grids and the conservation error of a rollout.

A conserved quantity obeys ``integral(u_t) = integral(u_0) + F(t)`` with ``F(t)`` the net amount
that entered through the boundary up to ``t`` (inflow positive; 0 for closed or periodic
domains). The weights here are the ``G`` of a ProbConserv constraint ``G u = b``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _per_axis(value, n_axes: int, name: str) -> list:
    vals = list(value) if isinstance(value, Sequence) else [value] * n_axes
    if len(vals) != n_axes:
        raise ValueError(f"{name} has {len(vals)} entries for {n_axes} axes: {value!r}")
    return vals


def trapezoid_weights(
    shape: int | Sequence[int],
    spacing: float | Sequence[float],
    *,
    periodic: bool | Sequence[bool] = False,
) -> Tensor:
    """Trapezoid quadrature weights on a uniform 1D or 2D grid: ``(*shape)`` float64.

    Non-periodic axes: the grid includes both end points, weights ``dx * [1/2, 1, ..., 1, 1/2]``.
    Periodic axes: the end point is not repeated (``x_i = i dx``), and the trapezoid rule
    reduces to ``dx`` everywhere (spectrally accurate for smooth periodic functions). 2D
    weights are the outer product of the per-axis weights. Fold a fluid mask in by
    multiplying: ``weights * mask``.
    """
    dims = [shape] if isinstance(shape, int) else list(shape)
    if len(dims) not in (1, 2):
        raise ValueError(f"trapezoid_weights handles 1D or 2D grids, got shape {tuple(dims)}")
    steps = _per_axis(spacing, len(dims), "spacing")
    wraps = _per_axis(periodic, len(dims), "periodic")
    w = torch.ones((), dtype=torch.float64)
    for n, dx, wrap in zip(dims, steps, wraps):
        if not float(dx) > 0:
            raise ValueError(f"spacing must be > 0, got {dx}")
        if n < (1 if wrap else 2):
            raise ValueError(f"axis of {n} points is too short for the trapezoid rule")
        axis = torch.full((n,), float(dx), dtype=torch.float64)
        if not wrap:
            axis[[0, -1]] = 0.5 * float(dx)
        w = w[..., None] * axis
    return w


def cell_average_weights(shape: int | Sequence[int], spacing: float | Sequence[float]) -> Tensor:
    """Weights that integrate cell averages exactly: ``h`` per cell (``prod h`` in 2D), ``(*shape)``.

    Stored finite-volume data (the CFD cards, the GPME cards) are cell averages, whose integral is
    the plain sum times the cell size, with no half weights at the ends. These are the same
    numbers as the periodic trapezoid rule, whose grid also has no repeated end point.
    """
    return trapezoid_weights(shape, spacing, periodic=True)


def integral(u: Tensor, weights: Tensor) -> Tensor:
    """Quadrature of ``u: (*lead, *S)`` with ``weights: (*S)``: ``(*lead)`` float64."""
    x = torch.as_tensor(u).to(torch.float64)
    w = torch.as_tensor(weights).to(dtype=torch.float64, device=x.device)
    d = w.ndim
    if x.ndim < d or tuple(x.shape[x.ndim - d :]) != tuple(w.shape):
        raise ValueError(
            f"field of shape {tuple(x.shape)} does not end with the weights' shape {tuple(w.shape)}"
        )
    return (x * w).sum(dim=tuple(range(x.ndim - d, x.ndim)))


def conservation_error(
    u: Tensor,
    weights: Tensor,
    initial_integral: Tensor | float,
    cumulative_flux: Tensor | float = 0.0,
) -> Tensor:
    """``|integral(u) - initial_integral - cumulative_flux|`` at one step: ``(*lead)``.

    ``u: (*lead, *S)`` (e.g. ``(B, C, *S)`` or members ``(M, B, C, *S)``); ``initial_integral``
    and ``cumulative_flux`` broadcast against ``*lead`` (e.g. ``(B, C)``). Anchor the law to the
    initial integral plus the cumulative flux, never to the previous step, so that round-off
    does not accumulate in the reference.
    """
    now = integral(u, weights)
    b0 = torch.as_tensor(initial_integral, dtype=torch.float64, device=now.device)
    flux = torch.as_tensor(cumulative_flux, dtype=torch.float64, device=now.device)
    try:
        return (now - b0 - flux).abs()
    except RuntimeError:
        raise ValueError(
            f"integral of shape {tuple(now.shape)} does not broadcast with initial_integral "
            f"{tuple(b0.shape)} and cumulative_flux {tuple(flux.shape)}"
        ) from None


__all__ = ["cell_average_weights", "conservation_error", "integral", "trapezoid_weights"]

"""A conservative finite-volume solver for the generalized porous-medium equation
``u_t = (k(u) u_x)_x`` on an interval, with Dirichlet values at both ends.

Cell averages ``u_i`` on uniform cells; the flux through the face between cells ``i`` and
``i + 1`` is ``F = -k_f (u_{i+1} - u_i) / h`` with ``k_f`` the mean of ``k`` on the two cells
(at an end: of ``k`` at the cell and at the boundary value, over the half cell ``h / 2``); each
cell changes by the difference of its face fluxes, so the total changes by exactly what crosses
the two ends. Forward Euler in time with ``dt <= safety * h^2 / (2 max k)``: every update is a
convex combination of neighbouring values (a monotone scheme, for boundary values that grow
monotonically over a frame, as here), which keeps the degenerate cases
(porous medium, Stefan: ``k = 0`` ahead of the front) free of overshoots. First order in time
and second in space, so the error falls as ``h^2`` on smooth solutions since ``dt ~ h^2``; at a
front it is limited by the front's regularity (measured in tests/solvers/test_gpme.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Diffusivity = Callable[[np.ndarray], np.ndarray]
BoundaryValue = Callable[[float], np.ndarray]


def solve_gpme(
    k: Diffusivity,
    u0: np.ndarray,
    length: float,
    left: BoundaryValue,
    right: BoundaryValue,
    times: np.ndarray,
    *,
    safety: float = 0.9,
    max_steps: int = 10_000_000,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Integrate cell averages ``u0: (B, N)`` on ``[0, length]`` to each of ``times: (T,)``.

    ``k(u)`` is the diffusivity (elementwise, ``>= 0``); ``left(t)``, ``right(t)`` the boundary
    values, ``(B,)`` or scalars. Returns ``u: (B, T, N)``, the amount that entered through the
    two ends since ``times[0]``, ``inflow: (B, T)``, and diagnostics (steps taken).
    """
    u = np.array(u0, dtype=np.float64, copy=True)
    if u.ndim != 2 or u.shape[1] < 2:
        raise ValueError(f"u0 must be (B, N) with N >= 2, got {u.shape}")
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size < 1 or np.any(np.diff(times) <= 0):
        raise ValueError(f"times must increase strictly, got {times}")
    if not 0 < safety <= 1:
        raise ValueError(f"safety must lie in (0, 1], got {safety}")
    B, N = u.shape
    h = float(length) / N
    out = np.empty((B, times.size, N))
    inflow = np.zeros((B, times.size))
    out[:, 0] = u
    t, entered, steps = float(times[0]), np.zeros(B), 0
    for f, t_next in enumerate(times[1:], start=1):
        while t < t_next:
            ul = np.broadcast_to(np.asarray(left(t), dtype=np.float64), (B,))
            ur = np.broadcast_to(np.asarray(right(t), dtype=np.float64), (B,))
            kc, kl, kr = k(u), k(ul), k(ur)
            # the step must also be stable for the boundary values at the frame's end: a
            # degenerate k (zero at an empty start) would otherwise allow one step to the frame
            k_end = [k(np.asarray(side(t_next), dtype=np.float64)) for side in (left, right)]
            k_max = max(float(np.max(kc)), float(np.max(kl)), float(np.max(kr)),
                        *(float(np.max(v)) for v in k_end), 1e-300)
            dt = min(safety * h * h / (2.0 * k_max), t_next - t)
            if t_next - (t + dt) < 1e-12 * max(1.0, abs(t_next)):
                dt = t_next - t  # land on the frame time exactly
            faces = np.empty((B, N + 1))  # flux in +x through faces 0..N
            faces[:, 1:-1] = -0.5 * (kc[:, 1:] + kc[:, :-1]) * (u[:, 1:] - u[:, :-1]) / h
            faces[:, 0] = -0.5 * (kl + kc[:, 0]) * (u[:, 0] - ul) / (0.5 * h)
            faces[:, -1] = -0.5 * (kc[:, -1] + kr) * (ur - u[:, -1]) / (0.5 * h)
            u = u - dt / h * (faces[:, 1:] - faces[:, :-1])
            entered = entered + dt * (faces[:, 0] - faces[:, -1])
            t = t_next if dt == t_next - t else t + dt
            steps += 1
            if steps > max_steps:
                raise RuntimeError(f"GPME solver: more than {max_steps} steps before t = {t_next}")
            if not np.all(np.isfinite(u)):
                raise FloatingPointError(f"GPME solver: non-finite values at t = {t:.6g}")
        out[:, f] = u
        inflow[:, f] = entered
    return out, inflow, {"steps": steps, "h": h, "scheme": "finite volume, arithmetic face k, forward Euler"}


def cell_edges(length: float, n: int) -> np.ndarray:
    """``(n + 1,)`` edges of ``n`` uniform cells on ``[0, length]``."""
    if n < 2 or not (math.isfinite(length) and length > 0):
        raise ValueError(f"need n >= 2 cells on a positive length, got n={n}, length={length}")
    return np.linspace(0.0, float(length), int(n) + 1)


__all__ = ["cell_edges", "solve_gpme"]

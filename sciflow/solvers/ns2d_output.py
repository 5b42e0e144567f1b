"""From a running :class:`~sciflow.solvers.ns2d.NS2D` to stored frames: sampling, resampling to
the output grid, divergence diagnostics and boundary descriptions for a :class:`Case`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from sciflow.data.case import BoundarySpec
from sciflow.solvers.ns2d import NS2D
from sciflow.solvers.ns2d_grid import CellResampler, StaggeredGrid


def central_divergence(
    uv: np.ndarray, hx: float, hy: float, fluid: np.ndarray | None = None
) -> np.ndarray:
    """Second-order central divergence of cell-centred velocity ``uv: (..., nx, ny, 2)``.

    Returns ``(..., nx, ny)``, NaN where it is not defined: on the outermost cells and on cells
    with a non-fluid neighbour (``fluid: (nx, ny)`` bool; None means all fluid).
    """
    uv = np.asarray(uv, dtype=np.float64)
    div = np.full(uv.shape[:-1], np.nan)
    div[..., 1:-1, 1:-1] = (uv[..., 2:, 1:-1, 0] - uv[..., :-2, 1:-1, 0]) / (2.0 * hx) + (
        uv[..., 1:-1, 2:, 1] - uv[..., 1:-1, :-2, 1]
    ) / (2.0 * hy)
    if fluid is not None:
        f = np.asarray(fluid, bool)
        ok = np.zeros_like(f)
        ok[1:-1, 1:-1] = f[1:-1, 1:-1] & f[2:, 1:-1] & f[:-2, 1:-1] & f[1:-1, 2:] & f[1:-1, :-2]
        div[..., ~ok] = np.nan
    return div


def output_mask(solver: NS2D, out: StaggeredGrid) -> np.ndarray:
    """Output cells that are at least half fluid on the solver grid, ``(nx, ny)`` bool."""
    return CellResampler.between(solver.grid, out)((~solver.solid).astype(np.float64)) >= 0.5


@dataclass
class Frames:
    """Recorded output: ``velocity: (T, nx, ny, 2)``, ``pressure: (T, nx, ny)`` (physical, rho *
    kinematic), ``mask: (nx, ny)`` (fluid), ``time: (T,)`` from 0, the largest discrete
    divergence of the solver's own field over the frames, and any extra scalar fields
    (name -> ``(T, nx, ny)``)."""

    velocity: np.ndarray
    pressure: np.ndarray
    mask: np.ndarray
    time: np.ndarray
    max_div_internal: float
    scalars: dict[str, np.ndarray] = field(default_factory=dict)


def record_frames(
    solver: NS2D,
    out: StaggeredGrid,
    *,
    frames: int,
    frame_dt: float,
    rho: float,
    zero_mean_pressure: bool,
    initial_pressure: bool = True,
    callback: Callable[[NS2D], None] | None = None,
    fields: Mapping[str, Callable[[NS2D], np.ndarray]] | None = None,
    mask: np.ndarray | None = None,
) -> Frames:
    """Sample the solver now and after every ``frame_dt`` until ``frames`` frames are taken.

    Fields are averaged over each output cell (area-weighted, so the solver grid need not be a
    multiple of the output grid). Velocity is the plain cell average (zero inside solids);
    pressure is averaged over the fluid part only; output cells whose area is less than half
    fluid are solid in ``mask`` and hold zeros. ``zero_mean_pressure`` removes the fluid-mean of
    each pressure frame (for closed boxes, where only pressure differences are defined).
    ``initial_pressure=False`` stores zeros as the pressure of frame 0: after an impulsive start
    the pressure at t = 0 is singular, and its discrete value only grows with resolution.
    Pressure is solved at each frame time (:meth:`NS2D.kinematic_pressure`).
    ``callback(solver)`` runs after every time step. ``fields`` maps names of extra scalar
    fields to functions of the solver returning cell values ``(nx, ny)`` on its grid (e.g. the
    liquid fraction); like pressure, they are averaged over the fluid part of each output cell
    and stored as 0 on solid output cells. ``mask: (nx, ny)`` replaces the default fluid mask
    (:func:`output_mask`) where a problem draws its obstacle differently.
    """
    if not (isinstance(frames, int | np.integer) and frames >= 1):
        raise ValueError(f"frames must be an integer >= 1, got {frames!r}")
    if not (np.isfinite(frame_dt) and frame_dt > 0):
        raise ValueError(f"frame_dt must be finite and > 0, got {frame_dt!r}")
    resample = CellResampler.between(solver.grid, out)
    fluid_in = (~solver.solid).astype(np.float64)
    frac = resample(fluid_in)
    if mask is None:
        mask = output_mask(solver, out)
    elif np.shape(mask) != out.shape:
        raise ValueError(f"mask: expected shape {out.shape}, found {np.shape(mask)}")
    mask = np.asarray(mask, bool)
    weights = out.hx * out.hy * mask
    velocity = np.zeros((frames, *out.shape, 2))
    pressure = np.zeros((frames, *out.shape))
    fields = dict(fields or {})
    scalars = {name: np.zeros((frames, *out.shape)) for name in fields}
    max_div = 0.0
    t0 = solver.t
    for k in range(frames):
        if k:
            solver.advance(t0 + k * frame_dt, callback)
        vel = resample(np.moveaxis(solver.cell_velocity(), -1, 0))
        velocity[k] = np.moveaxis(vel, 0, -1) * mask[..., None]
        if k == 0 and not initial_pressure:
            p = np.zeros(out.shape)
        else:
            p = resample(solver.kinematic_pressure() * fluid_in) / np.maximum(frac, 1e-300)
        p = np.where(mask, p * rho, 0.0)
        if zero_mean_pressure:
            p = np.where(mask, p - (p * weights).sum() / weights.sum(), 0.0)
        pressure[k] = p
        for name, get in fields.items():
            f = resample(np.asarray(get(solver), dtype=np.float64) * fluid_in)
            scalars[name][k] = np.where(mask, f / np.maximum(frac, 1e-300), 0.0)
        max_div = max(max_div, float(np.abs(solver.divergence()).max()))
    time = frame_dt * np.arange(frames)
    return Frames(velocity, pressure, mask, time, max_div, scalars)


def max_output_divergence(
    velocity: np.ndarray, out: StaggeredGrid, mask: np.ndarray | None
) -> float:
    """Largest |central divergence| of stored velocity ``(T, nx, ny, 2)`` over interior fluid cells."""
    div = central_divergence(velocity, out.hx, out.hy, mask)
    return float(np.nanmax(np.abs(div))) if np.isfinite(div).any() else 0.0


def side_boundary(
    side: str,
    bc_type: str,
    shape: tuple[int, int],
    *,
    value: float | None = None,
    fields: tuple[str, ...] = ("velocity",),
) -> BoundarySpec:
    """A :class:`BoundarySpec` for one side of an ``(nx, ny)`` box: mask over the side's normal
    axis marking its first (left/bottom) or last (right/top) index; ``value`` (lid or inlet
    speed) is stored as ``values: (1,)``."""
    axis = {"left": 0, "right": 0, "bottom": 1, "top": 1}[side]
    mask = np.zeros(shape[axis], bool)
    mask[0 if side in ("left", "bottom") else -1] = True
    return BoundarySpec(
        name=side,
        bc_type=bc_type,
        associated_dims=["x" if axis == 0 else "y"],
        mask=mask,
        associated_fields=list(fields),
        values=None if value is None else np.array([float(value)]),
    )


__all__ = [
    "Frames",
    "central_divergence",
    "max_output_divergence",
    "output_mask",
    "record_frames",
    "side_boundary",
]

"""What the SPH problems share: settings from a card, the run, and the ParticleCase they return.

A problem builds its particles (fluid, wall layers) and :class:`~sciflow.solvers.sph.SPHSettings`
from a parameter set and the card's ``solver`` block, runs the solver at a fixed step
(``write_every`` steps per stored frame, the same for every case of a card so that the dataset
has one ``dt`` as LagrangeBench's metadata needs) and returns a
:class:`~sciflow.data.particles.ParticleCase` carrying the LagrangeBench metadata of the run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from sciflow.data.particles import ParticleCase
from sciflow.data.particles.box import Box
from sciflow.data.particles.metadata import FLUID, SOLID_WALL
from sciflow.solvers.sph import SPH, SPHRun, SPHSettings, stable_dt


def lattice(lo: tuple[float, float], hi: tuple[float, float], dx: float) -> np.ndarray:
    """Cell centres of a ``dx`` lattice filling the rectangle ``[lo, hi]``: ``(N, 2)``."""
    nx, ny = (int(round((h - lo_) / dx)) for lo_, h in zip(lo, hi))
    gx = lo[0] + (np.arange(nx) + 0.5) * dx
    gy = lo[1] + (np.arange(ny) + 0.5) * dx
    X, Y = np.meshgrid(gx, gy, indexing="ij")
    return np.stack([X.ravel(), Y.ravel()], -1)


def wall_layers(lo: tuple[float, float], hi: tuple[float, float], dx: float, layers: int) -> np.ndarray:
    """``layers`` rows of wall particles on the lattice just outside the box ``[lo, hi]``: ``(M, 2)``."""
    outer = lattice((lo[0] - layers * dx, lo[1] - layers * dx), (hi[0] + layers * dx, hi[1] + layers * dx), dx)
    inside = (outer[:, 0] > lo[0]) & (outer[:, 0] < hi[0]) & (outer[:, 1] > lo[1]) & (outer[:, 1] < hi[1])
    return outer[~inside]


def connectivity_radius(dx: float) -> float:
    """LagrangeBench's default graph radius: about 1.45 dx, two significant digits."""
    return float(f"{1.45 * dx:.2g}")


@dataclass
class Run:
    """A finished run: the solver, its frames and the cost."""

    solver: SPH
    result: SPHRun
    dt: float
    write_every: int
    cpu_seconds: float


def run(solver: SPH, frames: int, frame_dt: float, *, u_max: float, force_max: float,
        write_every: int | None = None, stored: np.ndarray | None = None, record: dict | None = None) -> Run:
    """Run ``frames`` frames ``frame_dt`` apart at the largest step that satisfies every limit
    (or at ``frame_dt / write_every`` when given, which must satisfy them)."""
    limits = stable_dt(solver.s, u_max, force_max)
    dt_max = min(limits.values())
    need = math.ceil(frame_dt / dt_max - 1e-9)
    if write_every is None:
        write_every = need
    elif write_every < need:
        worst = min(limits, key=limits.get)
        raise ValueError(f"write_every = {write_every} gives dt = {frame_dt / write_every:.3g} s, above the "
                         f"{worst} limit {dt_max:.3g} s; use write_every >= {need}")
    dt = frame_dt / write_every
    t0 = time.process_time()
    result = solver.run(frames, write_every, dt, stored=stored, record=record)
    return Run(solver, result, dt, write_every, time.process_time() - t0)


def make_case(r: Run, params: dict[str, float], *, case: str, bounds: list[list[float]], periodic: list[bool],
              viscosity: float, g: float, fluid_bounds: list[list[float]] | None, stored_types: np.ndarray,
              extra_attrs: dict[str, Any] | None = None) -> ParticleCase:
    """The ParticleCase of a run with LagrangeBench's metadata keys for it."""
    s = r.solver.s
    res = r.result
    meta = {
        "case": case, "solver": r.solver.method, "density_evolution": r.solver.continuity_density,
        "dim": 2, "dx": s.dx, "dt": r.dt,
        "write_every": r.write_every, "t_end": float(res.time[-1]), "viscosity": viscosity,
        "g_ext_magnitude": g, "artificial_alpha": s.alpha, "p_bg_factor": s.p_background / (s.rho0 * s.c0**2),
        "free_slip": False, "is_bc_trick": False, "bounds": bounds, "periodic_boundary_conditions": periodic,
        "default_connectivity_radius": connectivity_radius(s.dx), "external_force": dict(s.force),
        "kinematic_particle_types": [1, 2],
    }
    if fluid_bounds is not None:
        meta["fluid_bounds"] = fluid_bounds
    attrs = {
        "solver": meta["solver"], "sound_speed": s.c0, "h": s.h, "rho0": s.rho0, "steps": r.solver.steps,
        # every particle carries rho0 dx^D for the whole run: the fluid mass is this times n_fluid
        "particle_mass": float(r.solver.mass),
        "cpu_seconds": round(r.cpu_seconds, 3), "neighbour_builds": r.solver.nl.builds,
        "max_mach": float(res.max_speed.max() / s.c0), "max_density_error": float(res.max_density_error.max()),
        "kinetic_energy": res.kinetic_energy.tolist(),
        "n_fluid": int(np.sum(stored_types == FLUID)), "n_wall": int(np.sum(stored_types == SOLID_WALL)),
        **(extra_attrs or {}),
    }
    # stored in float32 (LagrangeBench's dtype), periodic coordinates kept inside [lo, hi)
    position = Box.make(bounds, periodic).store(res.position)
    return ParticleCase(position, stored_types.astype(np.int32), dict(params), meta, attrs)


def box(bounds: list[list[float]], periodic: list[bool]) -> Box:
    return Box.make(bounds, periodic)


def settings(solver: dict[str, Any], extras: tuple[str, ...], where: str, **fixed: Any) -> SPHSettings:
    """SPHSettings from a card's ``solver`` block: keys named like the :class:`SPHSettings` fields,
    plus the problem's ``extras`` (read by the problem itself); ``fixed`` values are the
    problem's own and win."""
    known = set(SPHSettings.__dataclass_fields__)
    unknown = sorted(set(solver) - known - set(extras))
    if unknown:
        raise ValueError(f"{where}: unknown solver setting(s) {unknown}; known: {sorted(known | set(extras))}")
    kw = {k: v for k, v in solver.items() if k in known}
    kw.update(fixed)
    return SPHSettings(**kw)

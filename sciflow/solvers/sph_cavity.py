"""Lid-driven cavity with transport-velocity SPH: a flow that leans on its walls.

A unit square (L = 1 m, rho0 = 1 kg/m^3) of fluid at rest; at t = 0 the lid (the wall particles
above ``y = L``, type 2, moving wall) starts sliding at ``U = 1 m/s`` along x and drags the fluid
through the no-slip condition; the other walls (type 1) are still. ``params = [Re]`` with
``nu = U L / Re``. Every wall is a block of fixed particles (four layers: the Wendland support is
``4 dx`` at ``h = 2 dx``) with Adami et al.'s pressure and no-slip velocity (``2 u_wall - u_fluid``,
the lid's ``u_wall = U``); the transport-velocity background pressure also pushes fluid particles
away from the walls, which keeps them evenly spread there. Stored: the fluid and the innermost
wall layer (walls and lid).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sciflow.data.particles import ParticleCase
from sciflow.data.particles.metadata import FLUID, MOVING_WALL, SOLID_WALL
from sciflow.solvers.sph_problem import box, lattice, make_case, run, settings, wall_layers
from sciflow.solvers.sph_tvf import TransportVelocitySPH

L = 1.0
U = 1.0
RHO0 = 1.0
LAYERS = 4
EXTRAS = ("write_every", "jitter")


def cavity_particles(dx: float, jitter: float, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Positions ``(N, 2)``, types ``(N,)``, initial velocities ``(N, 2)`` (the lid's U) and the
    stored mask ``(N,)``."""
    fluid = lattice((0.0, 0.0), (L, L), dx)
    # a jittered start, as for the Taylor-Green vortex: no rows lined up with the flow
    fluid = np.clip(fluid + jitter * dx * rng.uniform(-1, 1, fluid.shape), 0.25 * dx, L - 0.25 * dx)
    walls = wall_layers((0.0, 0.0), (L, L), dx, LAYERS)
    lid = walls[:, 1] > L
    x = np.concatenate([fluid, walls])
    types = np.r_[np.full(len(fluid), FLUID), np.where(lid, MOVING_WALL, SOLID_WALL)]
    v = np.zeros_like(x)
    v[len(fluid):][lid] = (U, 0.0)
    inner = (np.abs(walls[:, 0] - L / 2) < L / 2 + dx) & (np.abs(walls[:, 1] - L / 2) < L / 2 + dx)
    return x, types, v, np.r_[np.ones(len(fluid), bool), inner]


class LidDrivenCavity:
    """Lid-driven cavity; ``params = {"Re": U L / nu}``."""

    name = "sph_cavity"
    kind = "particles"
    param_names = ["Re"]

    def simulate(self, params: dict[str, float], *, frames: int, frame_dt: float, seed: int = 0,
                 **solver: Any) -> ParticleCase:
        Re = float(params["Re"])
        if not (np.isfinite(Re) and Re > 0):
            raise ValueError(f"sph_cavity: parameter Re = {Re!r} must be positive")
        nu = U * L / Re
        solver = dict(solver)
        dx = float(solver.pop("dx", 0.02))
        c0 = float(solver.pop("c0", 10 * U))
        if c0 < 10 * U * (1 - 1e-9):
            raise ValueError(f"sph_cavity: c0 = {c0:.4g} is below 10 U = {10 * U:.4g}; raise the card's solver.c0")
        s = settings(solver, EXTRAS, "sph_cavity", dx=dx, c0=c0, rho0=RHO0, nu=nu, gamma=1.0,
                     p_background=RHO0 * c0**2, h_factor=float(solver.get("h_factor", 2.0)), reinit_every=0)
        x, types, v, stored = cavity_particles(dx, float(solver.get("jitter", 0.2)), np.random.default_rng(seed))
        lo, hi = -LAYERS * dx, L + LAYERS * dx
        sph = TransportVelocitySPH(x, v, types, box([[lo, hi], [lo, hi]], [False, False]), s,
                                   fluid_bounds=box([[-0.5 * dx, L + 0.5 * dx]] * 2, [False, False]))
        r = run(sph, frames, frame_dt, u_max=c0 / 10, force_max=0.0, write_every=solver.get("write_every"), stored=stored)
        bounds = [[-dx, L + dx], [-dx, L + dx]]
        return make_case(r, params, case="LDC", bounds=bounds, periodic=[False, False], viscosity=nu, g=0.0,
                         fluid_bounds=[[-0.5 * dx, L + 0.5 * dx]] * 2, stored_types=sph.types[stored],
                         extra_attrs={"lid_speed": U})

"""Dam break in a closed tank (weakly compressible SPH with a free surface), and the tank at rest.

A water column of width ``a`` and height ``H = aspect * a`` stands against the left wall of a
closed ``1.6 m x 0.8 m`` tank and collapses under gravity (9.81 m/s^2). The column's area is
fixed (``area``, default 0.08 m^2, so the particle count stays near ``area / dx^2``) and its
aspect ratio is a parameter, with the kinematic viscosity: ``params = [aspect, nu]``.

Standard WCSPH (:class:`~sciflow.solvers.sph.SPH`): Tait equation (gamma 7) with
``c0 = 10 sqrt(2 g H)`` (the card sets one ``c0`` for its tallest column), continuity density
with a Shepard re-initialisation every 20 steps (only where the kernel support is full: not at
the free surface), laminar viscosity ``nu`` plus Monaghan's
artificial viscosity ``alpha`` (the card's) on approaching pairs, and layers of fixed wall
particles with Adami et al.'s pressure (never below zero at a wall, which would pull water onto
it), as many layers as the kernel support needs (four at ``h = 2 dx``), and a short-range
repulsion ``D = 2 g H`` from wall particles closer than ``0.75 dx`` (zero for water at rest): at
the card's resolution the tip of the surge, where the pressure is near zero, otherwise slid
through the floor (a fluid particle past the innermost wall row at t = 0.48 s). The fluid starts in hydrostatic balance, ``rho`` from the Tait law at ``p = rho0 g (H - y)``.
Stored: the fluid and the innermost wall layer (LagrangeBench keeps one layer too).
Validation (tests/solvers/test_sph.py, benchmarks/particles.py): the surge front against Martin
& Moyce (1952) and the tank at rest (:func:`tank_at_rest`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sciflow.data.particles import ParticleCase
from sciflow.data.particles.metadata import FLUID, SOLID_WALL
from sciflow.solvers.sph import SPH, stable_dt
from sciflow.solvers.sph_problem import box, lattice, make_case, run, settings, wall_layers

G = 9.81
RHO0 = 1000.0
TANK = (1.6, 0.8)
LAYERS = 3  # the fewest wall layers; more when the kernel support 2h needs them
EXTRAS = ("write_every", "area")
# Re-initialising the density by the Shepard-filtered summation where the kernel is cut by the free
# surface biases it low and pulls the surface rows in: in the 10-deep tank at rest the top corners
# drifted 0.25 dx over 2 s with it everywhere, 0.04 dx with it only where the support is full.
SURFACE_SHEPARD_MIN_SUPPORT = 0.99


def tank_particles(fluid_hi: tuple[float, float], dx: float, tank: tuple[float, float] = TANK,
                   layers: int = LAYERS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fluid filling ``[0, fluid_hi]`` in a closed tank, walls outside: positions ``(N, 2)``,
    types ``(N,)`` and the stored mask ``(N,)`` (fluid and the innermost wall layer)."""
    fluid = lattice((0.0, 0.0), fluid_hi, dx)
    walls = wall_layers((0.0, 0.0), tank, dx, layers)
    x = np.concatenate([fluid, walls])
    types = np.r_[np.full(len(fluid), FLUID), np.full(len(walls), SOLID_WALL)]
    inner = (walls[:, 0] > -dx) & (walls[:, 0] < tank[0] + dx) & (walls[:, 1] > -dx) & (walls[:, 1] < tank[1] + dx)
    return x, types, np.r_[np.ones(len(fluid), bool), inner]


def fluid_box(tank: tuple[float, float], dx: float) -> list[list[float]]:
    """Where fluid particles must stay: inside the innermost wall particles (``dx / 2`` beyond the
    wall faces); a fluid particle past them has gone through the wall."""
    return [[-0.5 * dx, tank[0] + 0.5 * dx], [-0.5 * dx, tank[1] + 0.5 * dx]]


def hydrostatic_density(sph: SPH, y: np.ndarray, H: float) -> np.ndarray:
    """Densities whose Tait pressure is ``rho0 g (H - y)``."""
    return sph.density(sph.s.rho0 * G * (H - y))


def column(aspect: float, area: float) -> tuple[float, float]:
    """Width and height of a column of ``area`` with ``height / width = aspect``."""
    return float(np.sqrt(area / aspect)), float(np.sqrt(area * aspect))


def _solver(fluid_hi: tuple[float, float], H: float, nu: float, solver: dict[str, Any], where: str,
            tank: tuple[float, float] = TANK) -> tuple[SPH, np.ndarray]:
    solver = dict(solver)
    # free surface: Shepard re-initialisation only where the kernel support is full (see SPHSettings)
    solver.setdefault("shepard_min_support", SURFACE_SHEPARD_MIN_SUPPORT)
    dx = float(solver.pop("dx", 0.004))
    c0 = float(solver.pop("c0", 10 * np.sqrt(2 * G * H)))
    if c0 < 10 * np.sqrt(2 * G * H) * (1 - 1e-9):
        raise ValueError(f"{where}: c0 = {c0:.4g} is below 10 sqrt(2 g H) = {10 * np.sqrt(2 * G * H):.4g} "
                         f"for a column of height {H:.4g} m; raise the card's solver.c0")
    s = settings(solver, EXTRAS, where, dx=dx, c0=c0, rho0=RHO0, nu=nu, gamma=7.0,
                 clamp_wall_pressure=True, force={"law": "gravity", "vector": [0.0, -G]},
                 wall_repulsion=float(solver.get("wall_repulsion", 2 * G * H)))
    layers = max(LAYERS, int(np.ceil(2 * s.h_factor - 1e-9)))  # wall particles cover the kernel support
    x, types, stored = tank_particles(fluid_hi, dx, tank, layers)
    sph = SPH(x, np.zeros_like(x), types, box([[-layers * dx, tank[0] + layers * dx],
                                                [-layers * dx, tank[1] + layers * dx]], [False, False]), s,
              fluid_bounds=box(fluid_box(tank, dx), [False, False]))
    sph.rho = np.where(sph.fluid, hydrostatic_density(sph, sph.x[:, 1], H), s.rho0)
    sph.start()
    return sph, stored


def front(sph: SPH) -> float:
    """Surge front: the largest x of a fluid particle."""
    return float(sph.x[sph.fluid, 0].max())


def tank_at_rest(width: float, depth: float, duration: float, *, dx: float, frame_dt: float = 0.1,
                 settle: float = 0.0, **solver: Any) -> tuple[SPH, Any]:
    """Water of ``depth`` filling a tank of ``width`` (tank height ``2 depth``), at rest for
    ``duration`` s; returns the solver and its run (pressures and positions recorded per frame).

    The lattice start is not the discrete equilibrium (the kernel is cut at the free surface and
    the corners): with ``settle > 0`` the tank first relaxes for that long (kinetic relaxation:
    velocities zeroed whenever the kinetic energy passes a maximum), and the recorded run starts
    from the relaxed state.
    """
    tank = (width, 2 * depth)
    sph, stored = _solver((width, depth), depth, float(solver.pop("nu", 0.0)), {"dx": dx, **solver},
                          "tank_at_rest", tank)
    if settle > 0:
        # kinetic relaxation: run freely, and stop every particle whenever the kinetic energy
        # has passed a maximum; the tank slides into its discrete equilibrium
        dt = min(stable_dt(sph.s, sph.s.c0 / 10, G).values())
        ke = 0.0
        for _ in range(int(np.ceil(settle / dt))):
            sph.step(dt)
            now = sph.kinetic_energy()
            if now < ke:
                sph.v[:] = 0.0
                now = 0.0
            ke = now
        sph.t, sph.steps = 0.0, 0
    frames = int(round(duration / frame_dt)) + 1
    r = run(sph, frames, frame_dt, u_max=sph.s.c0 / 10, force_max=G,
            record={"pressure": lambda s: s.p[s.fluid].copy(), "x": lambda s: s.x[s.fluid].copy()})
    return sph, r


class DamBreak:
    """Dam break in a closed tank; ``params = {"aspect": H / a, "nu": m^2/s}``."""

    name = "sph_dam"
    kind = "particles"
    param_names = ["aspect", "nu"]

    def simulate(self, params: dict[str, float], *, frames: int, frame_dt: float, seed: int = 0,
                 **solver: Any) -> ParticleCase:
        aspect, nu = float(params["aspect"]), float(params["nu"])
        if not (np.isfinite(aspect) and aspect > 0):
            raise ValueError(f"sph_dam: parameter aspect = {aspect!r} must be positive")
        if not (np.isfinite(nu) and nu >= 0):
            raise ValueError(f"sph_dam: parameter nu = {nu!r} must be >= 0")
        area = float(solver.get("area", 0.08))
        a, H = column(aspect, area)
        if a >= TANK[0] or H >= TANK[1]:
            raise ValueError(f"sph_dam: a column {a:.3g} m wide and {H:.3g} m high does not fit the {TANK} m tank")
        sph, stored = _solver((a, H), H, nu, solver, "sph_dam")
        r = run(sph, frames, frame_dt, u_max=sph.s.c0 / 10, force_max=G, write_every=solver.get("write_every"),
                stored=stored, record={"front": front})
        dx = sph.s.dx
        bounds = [[-dx, TANK[0] + dx], [-dx, TANK[1] + dx]]
        return make_case(r, params, case="DAM", bounds=bounds, periodic=[False, False], viscosity=nu, g=G,
                         fluid_bounds=fluid_box(TANK, dx), stored_types=sph.types[stored],
                         extra_attrs={"column_width": a, "column_height": H,
                                      "front": r.result.extra["front"].tolist()})

"""Developing flow in a plane channel ("tube"): ``[0, length] x [0, diameter]``, uniform inflow
``u_in`` on the left, no-slip walls at the bottom and top, outflow (p = 0) on the right.

CFDBench ran this problem two-phase (volume of fluid); this is the honest single-phase version,
the classic entrance flow that develops into the Poiseuille profile ``u_max = 1.5 u_in``.

The fluid starts as plug flow ``u = u_in`` everywhere, not at rest: with an incompressible fluid
the inflow cannot enter a channel at rest, and the first pressure projection turns a resting
start into that plug flow anyway; starting from it makes frame 0 the real state at t = 0+. The
walls then grow boundary layers that meet the centre line downstream of the entry length.

Re = rho u_in diameter / mu. Stored pressure is physical (Pa), 0 on the outflow side; frame 0
stores pressure 0, since the impulsive start (no-slip walls against plug flow) makes the
pressure at t = 0 singular.
"""

from __future__ import annotations

import numpy as np

from sciflow.solvers.ns2d import NS2D
from sciflow.solvers.ns2d_bc import Boundaries, Inflow, Outflow, Wall
from sciflow.solvers.ns2d_grid import StaggeredGrid
from sciflow.solvers.ns2d_output import side_boundary
from sciflow.solvers.ns2d_problem import FlowProblem, FlowSetup


class Tube(FlowProblem):
    """Plane channel entrance flow; parameters ``[u_in, rho, mu, diameter, length]`` (SI units)."""

    name = "tube"
    param_names = ["u_in", "rho", "mu", "diameter", "length"]
    positive_params = ("u_in", "rho", "mu", "diameter", "length")
    # 50 frames 0.04 s apart: 2 s, two flow-through times of CFDBench's baseline (length 1 m,
    # u_in = 1 m/s), over which the wall layers grow and the profile settles.
    validated_reynolds = (10.0, 200.0)
    default_frames = 50
    default_frame_dt = 0.04

    def __init__(
        self, *, scheme: str = "quick", cfl: float | None = None, refine: tuple[int, int] = (1, 1)
    ) -> None:
        self.scheme, self.cfl, self.refine = scheme, cfl, refine

    def output_grid(self, p: dict[str, float], grid: tuple[int, int]) -> StaggeredGrid:
        return StaggeredGrid(0.0, p["length"], 0.0, p["diameter"], *grid)

    def make_solver(self, p: dict[str, float], grid: tuple[int, int]) -> NS2D:
        """The solver for checked parameters ``p``, at the plug-flow initial condition."""
        inner = self.output_grid(p, grid).refined(*self.refine)
        bcs = Boundaries(left=Inflow(p["u_in"]), right=Outflow(), bottom=Wall(), top=Wall())
        solver = NS2D(inner, bcs, p["mu"] / p["rho"], scheme=self.scheme, cfl=self.cfl)
        u = np.full((inner.nx + 1, inner.ny), p["u_in"])
        solver.set_velocity(u, np.zeros((inner.nx, inner.ny + 1)))
        return solver

    def setup(self, p: dict[str, float], grid: tuple[int, int], seed: int) -> FlowSetup:
        return FlowSetup(
            solver=self.make_solver(p, grid),
            out=self.output_grid(p, grid),
            rho=p["rho"],
            reynolds=p["rho"] * p["u_in"] * p["diameter"] / p["mu"],
            speed=p["u_in"],
            length=p["diameter"],
            boundaries=[
                side_boundary("left", "open", grid, value=p["u_in"], fields=("velocity",)),
                side_boundary("right", "open", grid, fields=("pressure",)),
                side_boundary("bottom", "wall", grid),
                side_boundary("top", "wall", grid),
            ],
        )


__all__ = ["Tube"]

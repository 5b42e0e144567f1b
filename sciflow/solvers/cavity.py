"""Lid-driven cavity: a ``width x height`` box, the top wall sliding at ``U`` along +x, fluid at rest
at t = 0 (CFDBench's cavity problem, laminar range).

Re = rho U width / mu (the lid length is the length scale). Stored pressure is physical (Pa,
``rho`` times the kinematic pressure) with zero mean over the box in every frame: a closed box
fixes only pressure differences. Frame 0 is the fluid at rest, stored with pressure 0 (the pressure of the impulsive start is
singular at t = 0).

The solver runs on the output grid refined by an integer factor per axis, chosen so that the
cell Reynolds number ``U h / nu`` stays at or below ``max_cell_reynolds`` (at most
``max_refine``), and its cell averages are stored. A 64 x 64 grid with the default 8 keeps
Re <= 512 unrefined and runs Re = 1000 on 128 x 128.
"""

from __future__ import annotations

import math

from sciflow.solvers.ns2d import NS2D
from sciflow.solvers.ns2d_bc import Boundaries, Wall
from sciflow.solvers.ns2d_grid import StaggeredGrid
from sciflow.solvers.ns2d_output import side_boundary
from sciflow.solvers.ns2d_problem import FlowProblem, FlowSetup


class Cavity(FlowProblem):
    """Lid-driven cavity; parameters ``[U, rho, mu, height, width]`` (SI units)."""

    name = "cavity"
    param_names = ["U", "rho", "mu", "height", "width"]
    positive_params = ("U", "rho", "mu", "height", "width")
    # 50 frames 0.1 ms apart: 5 convective times (width / U) at CFDBench's geometry and lid
    # speed (width 0.01 m, U = 10 m/s), the spin-up of the primary vortex.
    validated_reynolds = (10.0, 1000.0)
    default_frames = 50
    default_frame_dt = 1e-4
    zero_mean_pressure = True
    skip_rest_frame = True  # the lid starts at t = 0; frame 0 is at t = frame_dt

    def __init__(
        self,
        *,
        scheme: str = "quick",
        cfl: float | None = None,
        max_cell_reynolds: float = 8.0,
        max_refine: int = 4,
    ) -> None:
        self.scheme, self.cfl = scheme, cfl
        self.max_cell_reynolds, self.max_refine = max_cell_reynolds, max_refine

    def output_grid(self, p: dict[str, float], grid: tuple[int, int]) -> StaggeredGrid:
        return StaggeredGrid(0.0, p["width"], 0.0, p["height"], *grid)

    def make_solver(self, p: dict[str, float], grid: tuple[int, int]) -> NS2D:
        """The solver for checked parameters ``p`` on the refined internal grid, fluid at rest."""
        out = self.output_grid(p, grid)
        nu = p["mu"] / p["rho"]

        def refine(h: float) -> int:
            return min(
                self.max_refine,
                max(1, math.ceil(p["U"] * h / (nu * self.max_cell_reynolds) - 1e-9)),
            )

        inner = out.refined(refine(out.hx), refine(out.hy))
        bcs = Boundaries(left=Wall(), right=Wall(), bottom=Wall(), top=Wall(speed=p["U"]))
        return NS2D(inner, bcs, nu, scheme=self.scheme, cfl=self.cfl)

    def setup(self, p: dict[str, float], grid: tuple[int, int], seed: int) -> FlowSetup:
        out = self.output_grid(p, grid)
        return FlowSetup(
            solver=self.make_solver(p, grid),
            out=out,
            rho=p["rho"],
            reynolds=p["rho"] * p["U"] * p["width"] / p["mu"],
            speed=p["U"],
            length=p["width"],
            boundaries=[
                side_boundary("left", "wall", grid),
                side_boundary("right", "wall", grid),
                side_boundary("bottom", "wall", grid),
                side_boundary("top", "wall", grid, value=p["U"]),
            ],
        )


__all__ = ["Cavity"]

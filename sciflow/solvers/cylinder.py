"""Flow past a circular cylinder in a channel (CFDBench's cylinder problem, laminar range).

Cylinder of diameter ``d`` centred at the origin in the channel ``[-x1, x2] x [-y1, y2]``; inflow
on the left (uniform ``u_in``, or the parabolic profile of mean ``u_in`` used by the DFG
benchmark), no-slip walls at the bottom and top, outflow (p = 0) on the right.
Re = rho u_in d / mu (u_in the mean inflow speed).

The cylinder is a staircase of solid cells on an internal grid of about
``cells_per_diameter`` cells per diameter (square-ish cells, independent of the output grid);
stored fields are averages over the output cells, and an output cell is fluid when at least half
of its area is.

Shedding: the flow starts from the inflow profile everywhere plus one seeded vortex blob just
behind the cylinder (strength ``perturbation * u_in``, random side and position), which breaks
the symmetry; ``warmup`` convective times (``d / u_in``) are simulated before frame 0, so frames
show developed shedding above the critical Re (about 47) and a settled wake below it. The seed
sets the shedding phase. Stored pressure is physical (Pa), 0 on the outflow side.

Drag and lift are integrated over the staircase every step (:class:`ForceProbe`),
``C = 2 F / (rho u_in^2 d)``; the Strouhal number ``St = f d / u_in`` comes from the lift's
zero crossings.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sciflow.data.case import BoundarySpec
from sciflow.solvers.ns2d import NS2D
from sciflow.solvers.ns2d_bc import Boundaries, Inflow, Outflow, Wall
from sciflow.solvers.ns2d_grid import StaggeredGrid, circle_solid
from sciflow.solvers.ns2d_output import output_mask, side_boundary
from sciflow.solvers.ns2d_problem import FlowProblem, FlowSetup


class ForceProbe:
    """Drag and lift coefficients of the solid cells of ``solver``, recorded after each step.

    For every face between a solid and a fluid cell, the pressure is extrapolated from the first
    two fluid cells along the face normal onto the face (exact for linear pressure) and the wall
    shear is ``nu du_t/dn`` from the quadratic through the wall (u_t = 0) and those two cells;
    where the second cell is not fluid, the first cell alone is used. ``(solver) -> None`` as a
    step callback; ``t``, ``cd``, ``cl`` are the recorded series.
    """

    def __init__(self, solver: NS2D, speed: float, diameter: float) -> None:
        g = solver.grid
        S = solver.solid
        nx, ny = g.shape
        self.scale = 2.0 / (speed**2 * diameter)  # kinematic force -> coefficient
        faces = []  # per axis: first fluid cell, second fluid cell, has-second, outward sign
        for axis in (0, 1):
            lo = S[:-1] if axis == 0 else S[:, :-1]
            hi = S[1:] if axis == 0 else S[:, 1:]
            cells, signs = [], []
            for mask, step in ((lo & ~hi, 1), (~lo & hi, -1)):  # fluid on the high / low side
                i, j = np.nonzero(mask)
                if step == 1:
                    i, j = (i + 1, j) if axis == 0 else (i, j + 1)
                cells.append(np.stack([i, j]))
                signs.append(np.full(i.size, float(step)))
            first = np.concatenate(cells, axis=1)
            sign = np.concatenate(signs)
            second = first.copy()
            second[axis] += sign.astype(int)
            n = nx if axis == 0 else ny
            ok = (second[axis] >= 0) & (second[axis] < n)
            second[axis] = np.clip(second[axis], 0, n - 1)
            ok &= ~S[second[0], second[1]]
            faces.append((first[0] * ny + first[1], second[0] * ny + second[1], ok, sign))
        self._faces = faces
        self.t: list[float] = []
        self.cd: list[float] = []
        self.cl: list[float] = []

    def coefficients(self, solver: NS2D) -> tuple[float, float]:
        """``(C_D, C_L)`` of the current state."""
        g = solver.grid
        p = solver.stage_pressure().ravel()
        uv = solver.cell_velocity().reshape(-1, 2)
        force = [0.0, 0.0]
        for axis, (f1, f2, ok, sign) in enumerate(self._faces):
            h_n = g.hx if axis == 0 else g.hy  # spacing along the normal
            area = g.hy if axis == 0 else g.hx  # face length
            p_wall = np.where(ok, 1.5 * p[f1] - 0.5 * p[f2], p[f1])
            t = 1 - axis  # tangential velocity component
            u1, u2 = uv[f1, t], uv[f2, t]
            dudn = np.where(ok, (9.0 * u1 - u2) / (3.0 * h_n), 2.0 * u1 / h_n)
            force[axis] -= float((sign * p_wall).sum()) * area
            force[t] += solver.nu * float(dudn.sum()) * area
        return force[0] * self.scale, force[1] * self.scale

    def __call__(self, solver: NS2D) -> None:
        cd, cl = self.coefficients(solver)
        self.t.append(solver.t)
        self.cd.append(cd)
        self.cl.append(cl)


def shedding_frequency(
    t: np.ndarray, signal: np.ndarray, *, min_cycles: int = 2, rel_amplitude: float = 1e-3
) -> float | None:
    """Frequency of an oscillating ``signal: (n,)`` sampled at ``t: (n,)`` from its upward crossings
    of its mean (linearly interpolated); None when fewer than ``min_cycles`` full cycles are seen
    or the oscillation is below ``rel_amplitude`` of the signal's scale (a steady wake)."""
    t = np.asarray(t, dtype=np.float64)
    x = np.asarray(signal, dtype=np.float64)
    x = x - x.mean()
    if x.size < 4 or np.abs(x).max() <= rel_amplitude * max(1.0, float(np.abs(signal).max())):
        return None
    k = np.flatnonzero((x[:-1] < 0.0) & (x[1:] >= 0.0))
    if k.size < min_cycles + 1:
        return None
    tc = t[k] - x[k] * (t[k + 1] - t[k]) / (x[k + 1] - x[k])
    return float((tc.size - 1) / (tc[-1] - tc[0]))


class Cylinder(FlowProblem):
    """Channel flow past a cylinder; parameters ``[u_in, rho, mu, diameter, x1, x2, y1, y2]`` (SI).

    Options: ``inflow`` ("uniform" or "parabolic", mean ``u_in``); ``cells_per_diameter`` of the
    internal grid (20: DFG 2D-2 St = 0.2996, C_D max 3.05, C_L max 1.01); ``warmup`` in
    convective times d / u_in (30: at the CFDBench baseline, Re = 200, the lift amplitude is
    within 1 % of its saturated value by then); ``perturbation``: peak speed of the
    symmetry-breaking vortex over ``u_in``.
    """

    name = "cylinder"
    param_names = ["u_in", "rho", "mu", "diameter", "x1", "x2", "y1", "y2"]
    positive_params = ("u_in", "rho", "mu", "diameter", "x1", "x2", "y1", "y2")
    # 50 frames 5 ms apart: 0.25 s, about 3 shedding periods at CFDBench's baseline
    # (d = 0.02 m, u_in = 1 m/s, Re = 200: St = 0.235 in this confined channel, period 0.085 s).
    validated_reynolds = (20.0, 300.0)
    default_frames = 50
    default_frame_dt = 0.005

    def __init__(
        self,
        *,
        inflow: str = "uniform",
        cells_per_diameter: float = 20.0,
        warmup: float = 30.0,
        perturbation: float = 0.3,
        scheme: str = "quick",
        cfl: float | None = None,
    ) -> None:
        if inflow not in ("uniform", "parabolic"):
            raise ValueError(f"inflow must be 'uniform' or 'parabolic', got {inflow!r}")
        if not cells_per_diameter >= 4:
            raise ValueError(f"cells_per_diameter must be >= 4, got {cells_per_diameter!r}")
        if not warmup >= 0:
            raise ValueError(f"warmup must be >= 0 convective times, got {warmup!r}")
        self.inflow, self.cells_per_diameter, self.warmup = inflow, cells_per_diameter, warmup
        self.perturbation, self.scheme, self.cfl = perturbation, scheme, cfl

    def output_grid(self, p: dict[str, float], grid: tuple[int, int]) -> StaggeredGrid:
        return StaggeredGrid(-p["x1"], p["x2"], -p["y1"], p["y2"], *grid)

    def check_geometry(self, p: dict[str, float]) -> None:
        r = 0.5 * p["diameter"]
        for name in ("x1", "x2", "y1", "y2"):
            if not p[name] > r:
                raise ValueError(
                    f"parameter {name!r}={p[name]!r} must exceed the cylinder radius {r!r}: "
                    "the cylinder has to lie inside the channel"
                )

    def inflow_profile(self, p: dict[str, float]) -> Inflow:
        if self.inflow == "uniform":
            return Inflow(p["u_in"])
        y1, y2, u = p["y1"], p["y2"], p["u_in"]
        return Inflow(lambda y: 6.0 * u * (y + y1) * (y2 - y) / (y1 + y2) ** 2)

    def make_solver(self, p: dict[str, float], grid: tuple[int, int], seed: int) -> NS2D:
        """Solver at the initial condition: inflow profile everywhere, plus the seeded vortex."""
        self.check_geometry(p)
        d = p["diameter"]
        out = self.output_grid(p, grid)
        inner = out.with_spacing(d / self.cells_per_diameter, minimum=out.shape)
        inflow = self.inflow_profile(p)
        bcs = Boundaries(left=inflow, right=Outflow(), bottom=Wall(), top=Wall())
        solver = NS2D(
            inner,
            bcs,
            p["mu"] / p["rho"],
            solid=circle_solid(inner, 0.0, 0.0, d),
            scheme=self.scheme,
            cfl=self.cfl,
        )
        rng = np.random.default_rng(seed)
        # vortex blob: stream function A exp(-r^2 / s^2), peak speed ~ 0.86 A / s
        s = 0.5 * d
        xc = d * rng.uniform(0.8, 1.5)
        yc = d * rng.uniform(-0.3, 0.3)
        A = rng.choice([-1.0, 1.0]) * self.perturbation * p["u_in"] * s / 0.86

        def psi_grad(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            psi = A * np.exp(-((x - xc) ** 2 + (y - yc) ** 2) / s**2)
            return -2.0 * (y - yc) / s**2 * psi, 2.0 * (x - xc) / s**2 * psi  # (dpsi/dy, -dpsi/dx)

        Xu, Yu = np.meshgrid(inner.xe, inner.yc, indexing="ij")
        Xv, Yv = np.meshgrid(inner.xc, inner.ye, indexing="ij")
        u = inflow.speeds(inner.yc, inner.hy)[None, :] + psi_grad(Xu, Yu)[0]
        v = psi_grad(Xv, Yv)[1]
        solver.set_velocity(u, v)
        return solver

    def setup(self, p: dict[str, float], grid: tuple[int, int], seed: int) -> FlowSetup:
        solver = self.make_solver(p, grid, seed)
        out = self.output_grid(p, grid)
        probe = ForceProbe(solver, p["u_in"], p["diameter"])
        warmup = self.warmup * p["diameter"] / p["u_in"]

        def finish() -> dict[str, Any]:
            t, cd, cl = np.array(probe.t), np.array(probe.cd), np.array(probe.cl)
            # the last third of the warm-up and the frames: the frequency settles well before
            # the amplitude does (DFG 2D-2: St within 0.3 % of its final value from t = 15 d/U)
            late = t >= warmup * 2.0 / 3.0
            f = shedding_frequency(t[late], cl[late]) if late.sum() > 4 else None
            frames = t >= warmup
            return {
                "strouhal": None if f is None else f * p["diameter"] / p["u_in"],
                "drag_coefficient_mean": float(cd[frames].mean()) if frames.any() else None,
                "drag_coefficient_max": float(cd[frames].max()) if frames.any() else None,
                "lift_coefficient_max": float(np.abs(cl[frames]).max()) if frames.any() else None,
                "cells_per_diameter": self.cells_per_diameter,
                "inflow": self.inflow,
                "perturbation": self.perturbation,
            }

        return FlowSetup(
            solver=solver,
            out=out,
            rho=p["rho"],
            reynolds=p["rho"] * p["u_in"] * p["diameter"] / p["mu"],
            speed=p["u_in"],
            length=p["diameter"],
            boundaries=[
                side_boundary("left", "open", grid, value=p["u_in"], fields=("velocity",)),
                side_boundary("right", "open", grid, fields=("pressure",)),
                side_boundary("bottom", "wall", grid),
                side_boundary("top", "wall", grid),
                BoundarySpec(
                    name="cylinder",
                    bc_type="wall",
                    associated_dims=["x", "y"],
                    mask=~output_mask(solver, out),
                    associated_fields=["velocity"],
                ),
            ],
            warmup=warmup,
            callback=probe,
            finish=finish,
        )


__all__ = ["Cylinder", "ForceProbe", "shedding_frequency"]

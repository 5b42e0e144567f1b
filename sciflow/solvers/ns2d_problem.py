"""What the flow problems (cavity, tube, cylinder, ...) share: parameter checks and the path from a
configured :class:`~sciflow.solvers.ns2d.NS2D` to a :class:`~sciflow.data.case.Case`.

A problem implements :meth:`FlowProblem.setup` (geometry, boundaries, initial condition, the
internal grid) and inherits :meth:`FlowProblem.simulate` (warm-up, frames, diagnostics).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sciflow.data.case import BoundarySpec, Case
from sciflow.solvers.ns2d import NS2D
from sciflow.solvers.ns2d_grid import StaggeredGrid
from sciflow.solvers.ns2d_output import max_output_divergence, record_frames


def check_params(
    params: Mapping[str, float], names: list[str], positive: tuple[str, ...] = ()
) -> dict[str, float]:
    """Return ``params`` as floats in the order of ``names``; ValueError naming the parameter that
    is missing, unknown, not finite, or not > 0 although listed in ``positive``."""
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a mapping of {names}, got {type(params).__name__}")
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; expected {names}")
    out: dict[str, float] = {}
    for name in names:
        if name not in params:
            raise ValueError(f"missing parameter {name!r}; expected {names}")
        try:
            value = float(params[name])
        except (TypeError, ValueError):
            raise ValueError(f"parameter {name!r} must be a number, got {params[name]!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"parameter {name!r} must be finite, got {value!r}")
        if name in positive and value <= 0.0:
            raise ValueError(f"parameter {name!r} must be > 0, got {value!r}")
        out[name] = value
    return out


def check_grid(grid: tuple[int, ...]) -> tuple[int, int]:
    """The output grid as ``(nx, ny)``; ValueError unless two integers >= 4."""
    g = tuple(grid)
    if len(g) != 2 or any(int(n) != n or n < 4 for n in g):
        raise ValueError(f"grid must be two integers >= 4 (nx, ny), got {grid!r}")
    return int(g[0]), int(g[1])


@dataclass
class FlowSetup:
    """A configured case, ready to run.

    Attributes:
        solver: the solver at its initial condition (t = 0).
        out: the output grid (cell centres are the stored coordinates).
        rho: density, to turn kinematic into physical pressure.
        reynolds: the case's Reynolds number (convention in the problem's docstring).
        speed, length: reference scales; ``length / speed`` is the convective time.
        boundaries: the :class:`BoundarySpec` list of the case.
        warmup: time simulated and discarded before frame 0.
        callback: called after every solver step (e.g. to record forces).
        finish: returns extra attributes once the run is over (they may replace the common
            ones, e.g. ``solver``).
        fields: extra scalar fields to store, name -> function of the solver giving cell values
            ``(nx, ny)`` on its grid (see :func:`record_frames`).
        initial_pressure: whether frame 0 stores the solved pressure; None: only after a
            warm-up (an impulsive start makes the pressure at t = 0 singular).
        mask: ``(nx, ny)`` fluid mask of the output grid; None: cells at least half fluid.
    """

    solver: NS2D
    out: StaggeredGrid
    rho: float
    reynolds: float
    speed: float
    length: float
    boundaries: list[BoundarySpec]
    warmup: float = 0.0
    callback: Callable[[NS2D], None] | None = None
    finish: Callable[[], dict[str, Any]] = field(default=lambda: {})
    fields: dict[str, Callable[[NS2D], np.ndarray]] = field(default_factory=dict)
    initial_pressure: bool | None = None
    mask: np.ndarray | None = None


class FlowProblem:
    """Base of the incompressible flow problems; subclasses set the class attributes and
    implement :meth:`setup`."""

    name: str = ""
    param_names: list[str] = []
    positive_params: tuple[str, ...] = ()  # parameters that must be > 0
    default_frames: int = 50
    default_frame_dt: float = 1.0
    zero_mean_pressure: bool = False  # closed boxes: pressure known up to a constant
    # Reynolds numbers this solver is validated for (laminar, resolved on a CPU-sized grid);
    # cases beyond run with a warning and ``attrs["in_validated_range"] = False``
    validated_reynolds: tuple[float, float] = (0.0, math.inf)
    # Start the record one frame after an impulsive start from rest: the state at rest is the
    # same for every case, so a next-frame surrogate would have to conjure the first frame
    # from the parameters alone (and that one window would dominate a per-window NMSE).
    skip_rest_frame: bool = False

    def setup(self, p: dict[str, float], grid: tuple[int, int], seed: int) -> FlowSetup:
        """Build the case for checked parameters ``p`` and output grid ``(nx, ny)``."""
        raise NotImplementedError

    def simulate(
        self,
        params: Mapping[str, float],
        *,
        grid: tuple[int, ...] = (64, 64),
        frames: int | None = None,
        frame_dt: float | None = None,
        seed: int = 0,
    ) -> Case:
        """Simulate one case; ``frames``/``frame_dt`` default to the class defaults.

        Returns a :class:`Case` with ``velocity: (T, nx, ny, 2)`` and physical ``pressure:
        (T, nx, ny)`` at the output cell centres, ``time = frame_dt * arange(T)``. Its attrs:
        ``solver``, ``internal_grid``, ``n_steps``, ``cfl``, ``reynolds``,
        ``in_validated_range``, ``warmup_time`` (s), ``pressure`` (its convention),
        ``max_div_internal`` (largest discrete divergence of the solver's field over the
        frames, 1/s), ``max_div_output`` (largest central-difference divergence of the stored
        velocity on interior fluid cells, 1/s), ``div_scale`` (speed / length, 1/s, to make both
        dimensionless), ``seed``, ``wall_seconds`` and the problem's own (forces, Strouhal).
        """
        frames = self.default_frames if frames is None else frames
        frame_dt = self.default_frame_dt if frame_dt is None else float(frame_dt)
        if not (isinstance(frames, int | np.integer) and frames >= 1):
            raise ValueError(f"frames must be an integer >= 1, got {frames!r}")
        if not (math.isfinite(frame_dt) and frame_dt > 0.0):
            raise ValueError(f"frame_dt must be finite and > 0, got {frame_dt!r}")
        start = time.perf_counter()
        p = check_params(params, self.param_names, self.positive_params)
        s = self.setup(p, check_grid(grid), int(seed))
        lo, hi = self.validated_reynolds
        in_range = lo <= s.reynolds <= hi
        if not in_range:
            warnings.warn(
                f"{self.name}: Re = {s.reynolds:.4g} is outside the validated range [{lo:g}, {hi:g}]",
                stacklevel=2,
            )
        solver = s.solver
        warmup = s.warmup + (frame_dt if self.skip_rest_frame else 0.0)
        if warmup > 0.0:
            solver.advance(warmup, s.callback)
        rec = record_frames(
            solver,
            s.out,
            frames=frames,
            frame_dt=frame_dt,
            rho=s.rho,
            zero_mean_pressure=self.zero_mean_pressure,
            initial_pressure=warmup > 0.0 if s.initial_pressure is None else s.initial_pressure,
            callback=s.callback,
            fields=s.fields,
            mask=s.mask,
        )
        attrs: dict[str, Any] = {
            "solver": f"sciflow.ns2d: MAC projection, SSP-RK3, {solver.scheme} advection",
            "problem": self.name,
            "internal_grid": [solver.grid.nx, solver.grid.ny],
            "n_steps": solver.n_steps,
            "cfl": solver.cfl,
            "reynolds": s.reynolds,
            "in_validated_range": in_range,
            "warmup_time": warmup,
            "pressure": "physical (rho * kinematic), Pa"
            + (", zero fluid mean" if self.zero_mean_pressure else ", 0 at the outflow"),
            "max_div_internal": rec.max_div_internal,
            "max_div_output": max_output_divergence(rec.velocity, s.out, rec.mask),
            "div_scale": s.speed / s.length,
            "seed": seed,
        }
        attrs.update(s.finish())
        attrs["wall_seconds"] = time.perf_counter() - start
        return Case(
            scalar_fields={"pressure": rec.pressure, **rec.scalars},
            vector_fields={"velocity": rec.velocity},
            time=rec.time,
            coords={"x": s.out.xc, "y": s.out.yc},
            params=p,
            mask=rec.mask,
            boundaries=s.boundaries,
            attrs=attrs,
        )


__all__ = ["FlowProblem", "FlowSetup", "check_grid", "check_params"]

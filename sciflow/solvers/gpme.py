"""The generalized porous-medium equation ``u_t = (k(u) u_x)_x`` in ProbConserv's three set-ups
(Hansen et al. 2023): heat, porous medium and Stefan, as 1D trajectories of cell averages.

Each problem knows its diffusivity, its boundary values, its initial state and its exact
solution (:mod:`sciflow.solvers.gpme_exact`). ``method = "exact"`` stores the exact cell averages;
``method = "fv"`` integrates the conservative finite-volume solver
(:mod:`sciflow.solvers.gpme_fv`) from the initial state, the path for set-ups without a closed
form. The ``*_fv`` problem names select it from a card.
"""

from __future__ import annotations

import math
import time

import numpy as np

from sciflow.data.case import BoundarySpec, Case
from sciflow.solvers import gpme_exact as exact
from sciflow.solvers.gpme_fv import cell_edges, solve_gpme


class GPME:
    """Template of a GPME problem; subclasses give the formulas."""

    name = "gpme"
    param_names: list[str] = []
    length = 1.0
    method = "exact"
    equation = "u_t = (k(u) u_x)_x"

    # -- the formulas (overridden) ----------------------------------------------------------------
    def diffusivity(self, u: np.ndarray, p: dict[str, float]) -> np.ndarray:
        raise NotImplementedError

    def boundary(self, t: float, p: dict[str, float]) -> tuple[float, float]:
        """Dirichlet values ``(u(0, t), u(length, t))``."""
        raise NotImplementedError

    def exact(self, edges: np.ndarray, t: float, p: dict[str, float]) -> np.ndarray:
        """Exact cell averages at ``t``, ``(N,)``."""
        raise NotImplementedError

    def check(self, p: dict[str, float]) -> None:
        """Raise ValueError for parameters outside the problem's range."""

    # -- the shared part ------------------------------------------------------------------------------
    def _params(self, params: dict[str, float]) -> dict[str, float]:
        if sorted(params) != sorted(self.param_names):
            raise ValueError(f"{self.name} params must be exactly {self.param_names}, got {sorted(params)}")
        p = {k: float(v) for k, v in params.items()}
        bad = {k: v for k, v in p.items() if not math.isfinite(v)}
        if bad:
            raise ValueError(f"{self.name}: parameters must be finite, got {bad}")
        self.check(p)
        return p

    def simulate(self, params: dict[str, float], *, grid: tuple[int, ...] = (128,), frames: int,
                 frame_dt: float, seed: int = 0) -> Case:
        """One trajectory from ``t = 0``: ``u: (frames, N)`` cell averages on ``N = grid[0]`` cells."""
        p = self._params(params)
        if len(grid) != 1 or int(grid[0]) < 4:
            raise ValueError(f"{self.name}: grid must be (N,) with N >= 4, got {grid}")
        if frames < 1 or not frame_dt > 0:
            raise ValueError(f"{self.name}: need frames >= 1 and frame_dt > 0, got {frames}, {frame_dt}")
        edges = cell_edges(self.length, int(grid[0]))
        times = frame_dt * np.arange(frames)
        start = time.perf_counter()
        info: dict = {}
        if self.method == "exact":
            u = np.stack([self.exact(edges, float(t), p) for t in times])
        else:
            sol, _, info = solve_gpme(
                lambda v: self.diffusivity(v, p), self.exact(edges, 0.0, p)[None], self.length,
                lambda t: self.boundary(t, p)[0], lambda t: self.boundary(t, p)[1], times,
            )
            u = sol[0]
        n = edges.size - 1
        ends = [np.eye(n, dtype=bool)[0], np.eye(n, dtype=bool)[-1]]
        case = Case(
            scalar_fields={"u": u},
            vector_fields={},
            time=times,
            coords={"x": 0.5 * (edges[1:] + edges[:-1])},
            params=p,
            boundaries=[BoundarySpec(side, "open", ["x"], m, associated_fields=["u"])
                        for side, m in zip(("left", "right"), ends)],
            attrs={
                "solver": f"sciflow.solvers.gpme ({self.method})",
                "equation": self.equation,
                "values": "cell averages",
                "boundary": "Dirichlet at both ends",
                "domain": [0.0, self.length],
                "wall_seconds": time.perf_counter() - start,
                **({"fv_steps": int(info["steps"])} if info else {}),
            },
        )
        case.validate()
        return case


class Heat(GPME):
    """``k`` constant in [1, 5] (any ``k > 0`` runs), ``x in [0, 2 pi]``, ``u(x, 0) = sin x``,
    ``u = 0`` at both ends; exact ``exp(-k t) sin x``."""

    name, param_names, length = "heat", ["k"], 2 * math.pi
    equation = "u_t = k u_xx"

    def check(self, p: dict[str, float]) -> None:
        if not p["k"] > 0:
            raise ValueError(f"heat: k must be > 0, got {p['k']}")

    def diffusivity(self, u: np.ndarray, p: dict[str, float]) -> np.ndarray:
        return np.full_like(np.asarray(u, dtype=np.float64), p["k"])

    def boundary(self, t: float, p: dict[str, float]) -> tuple[float, float]:
        return 0.0, 0.0

    def exact(self, edges: np.ndarray, t: float, p: dict[str, float]) -> np.ndarray:
        return exact.heat_cell_average(edges, t, p["k"])


class PorousMedium(GPME):
    """``k(u) = u^m`` (``m >= 1``), ``x in [0, 1]``, empty at ``t = 0``, fed at ``x = 0`` with
    ``u = (m t)^(1/m)``; exact ``(m (t - x))_+^(1/m)`` (valid while the front ``x = t`` is inside)."""

    name, param_names = "pme", ["m"]
    equation = "u_t = (u^m u_x)_x"

    def check(self, p: dict[str, float]) -> None:
        if not p["m"] >= 1:
            raise ValueError(f"pme: m must be >= 1, got {p['m']}")

    def diffusivity(self, u: np.ndarray, p: dict[str, float]) -> np.ndarray:
        return np.maximum(u, 0.0) ** p["m"]

    def boundary(self, t: float, p: dict[str, float]) -> tuple[float, float]:
        return float(exact.pme_point(0.0, t, p["m"])), float(exact.pme_point(self.length, t, p["m"]))

    def exact(self, edges: np.ndarray, t: float, p: dict[str, float]) -> np.ndarray:
        return exact.pme_cell_average(edges, t, p["m"])


class Stefan(GPME):
    """``k = 1`` where ``u >= u*``, else 0 (``0 < u* < 1``), ``x in [0, 1]``, empty at
    ``t = 0``, ``u(0, t) = 1``; exact erf similarity solution with a front at ``2 alpha sqrt t``."""

    name, param_names = "stefan", ["u_star"]
    equation = "u_t = (k(u) u_x)_x, k = 1 if u >= u* else 0"

    def check(self, p: dict[str, float]) -> None:
        if not 0 < p["u_star"] < 1:
            raise ValueError(f"stefan: u_star must lie in (0, 1), got {p['u_star']}")

    def diffusivity(self, u: np.ndarray, p: dict[str, float]) -> np.ndarray:
        return (np.asarray(u) >= p["u_star"]).astype(np.float64)

    def boundary(self, t: float, p: dict[str, float]) -> tuple[float, float]:
        return 1.0, 0.0

    def exact(self, edges: np.ndarray, t: float, p: dict[str, float]) -> np.ndarray:
        return exact.stefan_cell_average(edges, t, p["u_star"])


class HeatFV(Heat):
    """:class:`Heat` integrated by the finite-volume solver."""

    name, method = "heat_fv", "fv"


class PorousMediumFV(PorousMedium):
    """:class:`PorousMedium` integrated by the finite-volume solver."""

    name, method = "pme_fv", "fv"


class StefanFV(Stefan):
    """:class:`Stefan` integrated by the finite-volume solver."""

    name, method = "stefan_fv", "fv"


__all__ = ["GPME", "Heat", "HeatFV", "PorousMedium", "PorousMediumFV", "Stefan", "StefanFV"]

"""Staggered (MAC) grid on a rectangle, solid masks and conservative resampling to coarser cells.

Layout, x-first everywhere (``a[i, j]`` sits at ``(x_i, y_j)``):

- pressure ``p: (nx, ny)`` at cell centres ``(xc[i], yc[j])``;
- ``u: (nx + 1, ny)`` on the vertical faces ``(xe[i], yc[j])``;
- ``v: (nx, ny + 1)`` on the horizontal faces ``(xc[i], ye[j])``.

Cells may be anisotropic (``hx != hy``): geometry sweeps change a box's aspect ratio while the
stored grid stays fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _check_finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


@dataclass(frozen=True)
class StaggeredGrid:
    """``nx x ny`` cells on ``[x0, x1] x [y0, y1]``."""

    x0: float
    x1: float
    y0: float
    y1: float
    nx: int
    ny: int

    def __post_init__(self) -> None:
        for name in ("x0", "x1", "y0", "y1"):
            _check_finite(name, getattr(self, name))
        if not self.x1 > self.x0:
            raise ValueError(f"grid: x1={self.x1!r} must exceed x0={self.x0!r}")
        if not self.y1 > self.y0:
            raise ValueError(f"grid: y1={self.y1!r} must exceed y0={self.y0!r}")
        for name in ("nx", "ny"):
            n = getattr(self, name)
            if int(n) != n or n < 2:
                raise ValueError(f"grid: {name}={n!r} must be an integer >= 2")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.nx, self.ny)

    @property
    def hx(self) -> float:
        return (self.x1 - self.x0) / self.nx

    @property
    def hy(self) -> float:
        return (self.y1 - self.y0) / self.ny

    @property
    def xe(self) -> np.ndarray:
        """Cell edges in x, ``(nx + 1,)``: the x of the u faces."""
        return self.x0 + self.hx * np.arange(self.nx + 1)

    @property
    def ye(self) -> np.ndarray:
        """Cell edges in y, ``(ny + 1,)``: the y of the v faces."""
        return self.y0 + self.hy * np.arange(self.ny + 1)

    @property
    def xc(self) -> np.ndarray:
        """Cell centres in x, ``(nx,)``."""
        return self.x0 + self.hx * (np.arange(self.nx) + 0.5)

    @property
    def yc(self) -> np.ndarray:
        """Cell centres in y, ``(ny,)``."""
        return self.y0 + self.hy * (np.arange(self.ny) + 0.5)

    def refined(self, rx: int, ry: int) -> StaggeredGrid:
        """The same box with each cell split ``rx`` times in x and ``ry`` times in y."""
        return StaggeredGrid(self.x0, self.x1, self.y0, self.y1, self.nx * rx, self.ny * ry)

    def with_spacing(self, h: float, *, minimum: tuple[int, int] = (2, 2)) -> StaggeredGrid:
        """The same box with cells of about ``h`` (rounded up), at least ``minimum`` cells."""
        nx = max(minimum[0], math.ceil((self.x1 - self.x0) / h - 1e-9))
        ny = max(minimum[1], math.ceil((self.y1 - self.y0) / h - 1e-9))
        return StaggeredGrid(self.x0, self.x1, self.y0, self.y1, nx, ny)


def circle_solid(grid: StaggeredGrid, cx: float, cy: float, diameter: float) -> np.ndarray:
    """Staircase disc: True on cells whose centre lies inside the circle, ``(nx, ny)`` bool."""
    X, Y = np.meshgrid(grid.xc, grid.yc, indexing="ij")
    return (X - cx) ** 2 + (Y - cy) ** 2 < (0.5 * diameter) ** 2


def overlap_matrix(edges_in: np.ndarray, edges_out: np.ndarray) -> np.ndarray:
    """Averaging weights from fine 1-D cells onto coarse cells, ``(n_out, n_in)``.

    ``W[I, i]`` is the length of the overlap of input cell ``i`` with output cell ``I`` divided
    by the length of ``I``; rows sum to 1 when the output cells lie inside the input range. With
    an integer ratio this is plain block averaging.
    """
    lo = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
    hi = np.minimum(edges_out[1:, None], edges_in[None, 1:])
    return np.clip(hi - lo, 0.0, None) / np.diff(edges_out)[:, None]


@dataclass(frozen=True)
class CellResampler:
    """Conservative (area-weighted) averaging of cell fields from one grid onto another.

    ``__call__(a: (..., nx_in, ny_in)) -> (..., nx_out, ny_out)``: each output cell gets the
    mean of ``a`` over its area, so integrals are kept and constants reproduced exactly.
    """

    wx: np.ndarray  # (nx_out, nx_in)
    wy: np.ndarray  # (ny_out, ny_in)

    @classmethod
    def between(cls, fine: StaggeredGrid, coarse: StaggeredGrid) -> CellResampler:
        return cls(overlap_matrix(fine.xe, coarse.xe), overlap_matrix(fine.ye, coarse.ye))

    def __call__(self, a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64)
        expected = (self.wx.shape[1], self.wy.shape[1])
        if a.shape[-2:] != expected:
            raise ValueError(
                f"resampler expects (..., {expected[0]}, {expected[1]}), got {a.shape}"
            )
        return np.einsum("Ii,...ij,Jj->...IJ", self.wx, a, self.wy, optimize=True)


__all__ = ["CellResampler", "StaggeredGrid", "circle_solid", "overlap_matrix"]

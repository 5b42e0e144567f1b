"""Discrete divergence, gradient and the pressure projection of the MAC solver.

The divergence ``D`` maps the flat face velocities ``q`` to the fluid cells; the gradient ``G``
maps cell pressures to the free faces (zero on fixed faces: Neumann for the pressure on walls,
inflow and obstacles; a ghost ``p = -p_inside`` on outflow faces puts ``p = 0`` on the side).
``L = D[:, free] G`` is the pressure Laplacian on the fluid cells, factorised once per geometry
(:mod:`ns2d_poisson`: fast transforms for boxes, with a capacitance correction for obstacles,
or a sparse LU).

Projection of a provisional field ``q*`` (time-step factors are folded into the potential):
``L phi = D q*``, then ``q = q* - G phi``, so ``D q = 0`` to round-off; the kinematic pressure is
``phi / dt_stage``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from sciflow.solvers.ns2d_bc import Boundaries, FaceRoles, Outflow, Periodic
from sciflow.solvers.ns2d_grid import StaggeredGrid
from sciflow.solvers.ns2d_poisson import BoxPoisson, CapacitancePoisson, SparseLUPoisson


def divergence_matrix(grid: StaggeredGrid, bcs: Boundaries) -> sp.csr_matrix:
    """``D: (nx * ny, nq)``: cell-wise discrete divergence of the flat face velocities."""
    nx, ny = grid.shape
    nu = (nx + 1) * ny
    Ix, Jy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    cell = (Ix * ny + Jy).ravel()
    # a periodic pair shares one master face: the last face maps onto the first
    right = np.where(Ix + 1 == nx, 0, Ix + 1) if bcs.periodic_x else Ix + 1
    top = np.where(Jy + 1 == ny, 0, Jy + 1) if bcs.periodic_y else Jy + 1
    cols = [
        (right * ny + Jy).ravel(),
        (Ix * ny + Jy).ravel(),
        (nu + Ix * (ny + 1) + top).ravel(),
        (nu + Ix * (ny + 1) + Jy).ravel(),
    ]
    vals = [1.0 / grid.hx, -1.0 / grid.hx, 1.0 / grid.hy, -1.0 / grid.hy]
    rows = np.concatenate([cell] * 4)
    data = np.concatenate([np.full(cell.size, v) for v in vals])
    return sp.csr_matrix((data, (rows, np.concatenate(cols))), shape=(nx * ny, nu + nx * (ny + 1)))


def gradient_matrix(grid: StaggeredGrid, bcs: Boundaries, roles: FaceRoles) -> sp.csr_matrix:
    """``G: (nq, nx * ny)``: pressure gradient on the free faces (rows of other faces are empty)."""
    nx, ny = grid.shape
    nu = roles.nu
    free = np.zeros(roles.nq, bool)
    free[roles.free] = True
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    data: list[np.ndarray] = []

    def add(face: np.ndarray, cell: np.ndarray, value: float) -> None:
        keep = free[face]
        rows.append(face[keep])
        cols.append(cell[keep])
        data.append(np.full(int(keep.sum()), value))

    J = np.arange(ny)
    for i in range(1, nx):  # interior u faces: (p[i] - p[i-1]) / hx
        face = i * ny + J
        add(face, i * ny + J, 1.0 / grid.hx)
        add(face, (i - 1) * ny + J, -1.0 / grid.hx)
    Ix = np.arange(nx)
    for j in range(1, ny):  # interior v faces
        face = nu + Ix * (ny + 1) + j
        add(face, Ix * ny + j, 1.0 / grid.hy)
        add(face, Ix * ny + j - 1, -1.0 / grid.hy)
    # boundary faces: periodic masters see the cell across the seam; outflow faces see p = 0
    # half a cell outside, i.e. a ghost -p
    if isinstance(bcs.left, Periodic):
        add(J.copy(), J.copy(), 1.0 / grid.hx)
        add(J.copy(), (nx - 1) * ny + J, -1.0 / grid.hx)
    if isinstance(bcs.left, Outflow):
        add(J.copy(), J.copy(), 2.0 / grid.hx)
    if isinstance(bcs.right, Outflow):
        add(nx * ny + J, (nx - 1) * ny + J, -2.0 / grid.hx)
    if isinstance(bcs.bottom, Periodic):
        add(nu + Ix * (ny + 1), Ix * ny, 1.0 / grid.hy)
        add(nu + Ix * (ny + 1), Ix * ny + ny - 1, -1.0 / grid.hy)
    if isinstance(bcs.bottom, Outflow):
        add(nu + Ix * (ny + 1), Ix * ny, 2.0 / grid.hy)
    if isinstance(bcs.top, Outflow):
        add(nu + Ix * (ny + 1) + ny, Ix * ny + ny - 1, -2.0 / grid.hy)
    return sp.csr_matrix(
        (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
        shape=(roles.nq, nx * ny),
    )


def _axis_kind(lo: object, hi: object) -> tuple[str, str]:
    def one(bc: object) -> str:
        return "P" if isinstance(bc, Periodic) else "D" if isinstance(bc, Outflow) else "N"

    return one(lo), one(hi)


@dataclass
class PressureSolver:
    """Projection onto discretely divergence-free fields.

    Cell vectors cover every cell (``nx * ny``, flat x-first); solid cells carry no equation of
    their own: their faces are fixed, so their divergence is zero, and ``G`` has no column for
    them, so whatever potential a solver leaves there acts on nothing.

    Attributes:
        fluid: ``(nx * ny,)`` bool, True on fluid cells.
        D: ``(nx * ny, nq)`` cell-wise divergence.
        G: ``(nq, nx * ny)`` gradient on the free faces (other rows empty, solid columns empty).
        poisson: the factorised pressure Laplacian (see :mod:`ns2d_poisson`).
        method: ``"box"``, ``"capacitance"`` or ``"lu"``.
    """

    grid: StaggeredGrid
    roles: FaceRoles
    fluid: np.ndarray
    D: sp.csr_matrix
    G: sp.csr_matrix
    poisson: BoxPoisson | CapacitancePoisson | SparseLUPoisson
    method: str

    @classmethod
    def build(
        cls,
        grid: StaggeredGrid,
        bcs: Boundaries,
        roles: FaceRoles,
        solid: np.ndarray | None,
        method: str = "auto",
    ) -> PressureSolver:
        """Assemble and factorise; ``method``: ``"auto"`` (fast transforms when the box allows,
        else LU), ``"lu"``."""
        if method not in ("auto", "lu"):
            raise ValueError(f"pressure method must be 'auto' or 'lu', got {method!r}")
        nx, ny = grid.shape
        solid = np.zeros((nx, ny), bool) if solid is None else np.asarray(solid, bool)
        fluid = ~solid.ravel()
        D = divergence_matrix(grid, bcs)
        G = gradient_matrix(grid, bcs, roles)
        G = (G @ sp.diags(fluid.astype(np.float64))).tocsr()
        G.eliminate_zeros()
        cells = np.flatnonzero(fluid)
        L = (D[cells] @ G[:, cells]).tocsr()
        degree = np.diff(L.indptr)
        if (degree == 0).any():
            k = int(cells[np.flatnonzero(degree == 0)[0]])
            raise ValueError(f"fluid cell {(k // ny, k % ny)} is walled in on all four sides")
        if not bcs.has_outflow():
            inflow = np.zeros(roles.nq)
            inflow[roles.fixed] = roles.fixed_values
            net = float((D @ inflow).sum()) * grid.hx * grid.hy
            scale = float(np.abs(roles.fixed_values).sum()) * max(grid.hx, grid.hy) + 1e-300
            if abs(net) > 1e-9 * scale:
                raise ValueError(
                    f"boundaries prescribe a net volume flux {net:.3e} with no outflow side to take it"
                )
        kinds = (_axis_kind(bcs.left, bcs.right), _axis_kind(bcs.bottom, bcs.top))
        spacing = (grid.hx, grid.hy)
        poisson: BoxPoisson | CapacitancePoisson | SparseLUPoisson
        if method == "auto" and not solid.any():
            poisson, used = BoxPoisson(grid.shape, spacing, kinds), "box"
        elif method == "auto" and bcs.has_outflow():
            box = BoxPoisson(grid.shape, spacing, kinds)
            poisson = CapacitancePoisson(box, solid, spacing, (bcs.periodic_x, bcs.periodic_y))
            used = "capacitance"
        else:
            poisson = SparseLUPoisson(L, cells, nx * ny, pinned=not bcs.has_outflow())
            used = "lu"
        return cls(grid, roles, fluid, D, G, poisson, used)

    def divergence(self, q: np.ndarray) -> np.ndarray:
        """Discrete divergence of ``q: (nq,)`` per cell, ``(nx * ny,)`` (0 in solids)."""
        return self.D @ q

    def project(self, q: np.ndarray) -> np.ndarray:
        """Make ``q`` divergence-free in place; returns the potential ``phi: (nx * ny,)``
        (meaningless in solid cells)."""
        phi = self.poisson.solve(self.D @ q)
        q -= self.G @ phi
        if self.roles.slave.size:
            q[self.roles.slave] = q[self.roles.master]
        return phi

    def to_cells(self, phi: np.ndarray) -> np.ndarray:
        """Cell values ``(nx * ny,)`` as ``(nx, ny)`` with solids set to 0."""
        return (phi * self.fluid).reshape(self.grid.shape)


__all__ = ["PressureSolver", "divergence_matrix", "gradient_matrix"]

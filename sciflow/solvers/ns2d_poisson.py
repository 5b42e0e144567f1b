"""Solvers for the pressure Laplacian ``L phi = b`` of the MAC grid, built once per geometry.

- :class:`BoxPoisson`: no obstacle. ``L`` is a Kronecker sum of 1-D operators whose eigenvectors
  are fast transforms: DCT-II for Neumann-Neumann, DCT-IV / DST-IV for Neumann-Dirichlet and its
  mirror, DST-II for Dirichlet-Dirichlet (Dirichlet here means p = 0 on the side, i.e. the ghost
  ``-p``); a periodic axis uses the dense eigenvectors of its circulant operator.
- :class:`CapacitancePoisson`: obstacle cells in such a box. The fluid operator differs from the
  box operator only in the rows of fluid cells next to a solid; writing that difference as a
  low-rank update, each solve is two box solves plus a small dense solve (capacitance matrix
  method, Buzbee, Dorr, George & Golub 1971).
- :class:`SparseLUPoisson`: sparse LU of the assembled operator, for anything else (and as the
  reference the fast solvers are tested against).

All take and return vectors over every cell of the box (``nx * ny``, flat x-first); the right-hand
side is zero on solid cells, and the values returned there are of no use. A singular operator
(no side fixes the pressure level) is solved for the zero-mean (box) or pinned (LU) solution of
the compatible part of ``b``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

# 1-D pressure conditions of one axis: (low side, high side), "N" Neumann, "D" p = 0, "P" periodic
_TRANSFORMS = {
    ("N", "N"): (
        lambda x, a: sfft.dct(x, 2, axis=a, norm="ortho"),
        lambda x, a: sfft.idct(x, 2, axis=a, norm="ortho"),
        0.0,
    ),
    ("N", "D"): (
        lambda x, a: sfft.dct(x, 4, axis=a, norm="ortho"),
        lambda x, a: sfft.idct(x, 4, axis=a, norm="ortho"),
        0.5,
    ),
    ("D", "N"): (
        lambda x, a: sfft.dst(x, 4, axis=a, norm="ortho"),
        lambda x, a: sfft.idst(x, 4, axis=a, norm="ortho"),
        0.5,
    ),
    ("D", "D"): (
        lambda x, a: sfft.dst(x, 2, axis=a, norm="ortho"),
        lambda x, a: sfft.idst(x, 2, axis=a, norm="ortho"),
        1.0,
    ),
}


@dataclass
class _Axis:
    """Forward/inverse transform along one axis and the eigenvalues of the 1-D operator."""

    kind: tuple[str, str]
    eig: np.ndarray  # (n,)
    Q: np.ndarray | None = None  # dense eigenvectors (periodic axis only)

    @classmethod
    def build(cls, kind: tuple[str, str], n: int, h: float) -> _Axis:
        if kind == ("P", "P"):
            # circulant second difference; eigh gives an orthonormal real basis
            A = np.diag(np.full(n, -2.0)) + np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1)
            A[0, -1] += 1.0
            A[-1, 0] += 1.0
            lam, Q = np.linalg.eigh(A / h**2)
            lam[np.abs(lam) < 1e-9 / h**2] = 0.0
            return cls(kind, lam, Q)
        if kind not in _TRANSFORMS:
            raise ValueError(f"no fast transform for pressure conditions {kind}")
        shift = _TRANSFORMS[kind][2]
        k = np.arange(n) + shift
        return cls(kind, -4.0 / h**2 * np.sin(0.5 * np.pi * k / n) ** 2)

    def forward(self, x: np.ndarray, axis: int) -> np.ndarray:
        if self.Q is not None:
            return np.moveaxis(np.tensordot(self.Q.T, np.moveaxis(x, axis, 0), axes=1), 0, axis)
        return _TRANSFORMS[self.kind][0](x, axis)

    def inverse(self, x: np.ndarray, axis: int) -> np.ndarray:
        if self.Q is not None:
            return np.moveaxis(np.tensordot(self.Q, np.moveaxis(x, axis, 0), axes=1), 0, axis)
        return _TRANSFORMS[self.kind][1](x, axis)


class BoxPoisson:
    """Transform solver on the whole ``(nx, ny)`` box; ``kinds`` gives the (low, high) condition
    per axis. ``solve_cells(b: (..., nx, ny)) -> (..., nx, ny)``."""

    def __init__(
        self,
        shape: tuple[int, int],
        spacing: tuple[float, float],
        kinds: tuple[tuple[str, str], tuple[str, str]],
    ) -> None:
        self.shape = shape
        self.ax = _Axis.build(kinds[0], shape[0], spacing[0])
        self.ay = _Axis.build(kinds[1], shape[1], spacing[1])
        lam = self.ax.eig[:, None] + self.ay.eig[None, :]
        self.singular = bool((lam == 0.0).any())
        with np.errstate(divide="ignore"):
            self._inv = np.where(lam == 0.0, 0.0, 1.0 / lam)

    def solve_cells(self, b: np.ndarray) -> np.ndarray:
        # the zero eigenvalue (if any) belongs to the constant mode: dropping it solves for the
        # compatible part of b with a zero-mean answer
        c = self.ay.forward(self.ax.forward(b, -2), -1)
        c *= self._inv
        return self.ay.inverse(self.ax.inverse(c, -2), -1)

    def solve(self, b: np.ndarray) -> np.ndarray:
        return self.solve_cells(b.reshape(self.shape)).ravel()


class CapacitancePoisson:
    """Fluid-cell Laplacian of a box with solid cells, solved through the box solver.

    With ``B`` the box operator, the extended operator ``A = B - P C`` keeps the fluid rows of
    the true operator (``C`` removes, for each fluid cell next to a solid, the coupling to its
    solid neighbours; ``P`` injects those rows) and the box rows on solid cells, so its fluid
    block decouples and equals the fluid operator. By Woodbury, ``A x = b`` is
    ``w = K^-1 C B^-1 b``, ``x = B^-1 (b + P w)`` with ``K = I - C B^-1 P`` (m x m, m = number of
    fluid cells touching a solid).
    """

    def __init__(
        self,
        box: BoxPoisson,
        solid: np.ndarray,
        spacing: tuple[float, float],
        periodic: tuple[bool, bool],
        chunk: int = 64,
    ) -> None:
        if box.singular:
            raise ValueError(
                "capacitance solver needs a box operator that fixes the pressure level"
            )
        nx, ny = box.shape
        self.box = box
        self.shape = box.shape
        solid = np.asarray(solid, bool)
        idx = np.arange(nx * ny).reshape(nx, ny)
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        for axis, h in ((0, spacing[0]), (1, spacing[1])):
            for step in (1, -1):
                nb_solid = np.roll(solid, -step, axis=axis)
                nb_idx = np.roll(idx, -step, axis=axis)
                valid = np.ones_like(solid)
                if not periodic[axis]:  # no neighbour across a non-periodic side
                    sl = [slice(None)] * 2
                    sl[axis] = slice(-1, None) if step == 1 else slice(0, 1)
                    valid[tuple(sl)] = False
                hit = ~solid & nb_solid & valid
                c, s = idx[hit], nb_idx[hit]
                rows += [c, c]
                cols += [s, c]
                vals += [np.full(c.size, 1.0 / h**2), np.full(c.size, -1.0 / h**2)]
        r = np.concatenate(rows)
        self.interface = np.unique(r)
        m = self.interface.size
        local = np.searchsorted(self.interface, r)
        self.C = sp.csr_matrix(
            (np.concatenate(vals), (local, np.concatenate(cols))), shape=(m, nx * ny)
        )
        K = np.eye(m)
        for start in range(0, m, chunk):
            cells = self.interface[start : start + chunk]
            E = np.zeros((cells.size, nx * ny))
            E[np.arange(cells.size), cells] = 1.0
            Y = box.solve_cells(E.reshape(cells.size, nx, ny)).reshape(cells.size, nx * ny)
            K[:, start : start + cells.size] -= self.C @ Y.T
        self._K = sla.lu_factor(K)

    def solve(self, b: np.ndarray) -> np.ndarray:
        y = self.box.solve_cells(b.reshape(self.shape)).ravel()
        w = sla.lu_solve(self._K, self.C @ y)
        b = b.copy()
        b[self.interface] += w
        return self.box.solve_cells(b.reshape(self.shape)).ravel()


class SparseLUPoisson:
    """Sparse LU of the assembled operator ``L: (n, n)`` on the cells ``cells: (n,)`` of a box of
    ``n_cells``; ``pinned`` replaces row 0 by ``phi_0 = 0`` and solves for the compatible part of
    ``b`` (mean removed)."""

    def __init__(self, L: sp.spmatrix, cells: np.ndarray, n_cells: int, pinned: bool) -> None:
        L = L.tocsr()
        if pinned:
            L = L.tolil()
            L[0, :] = 0.0
            L[0, 0] = 1.0
            L = L.tocsr()
        self.cells, self.n_cells, self.pinned = cells, n_cells, pinned
        self._lu = spla.splu(L.tocsc(), permc_spec="MMD_AT_PLUS_A")

    def solve(self, b: np.ndarray) -> np.ndarray:
        r = b[self.cells]
        if self.pinned:
            r -= r.mean()
            r[0] = 0.0
        out = np.zeros(self.n_cells)
        out[self.cells] = self._lu.solve(r)
        return out


__all__ = ["BoxPoisson", "CapacitancePoisson", "SparseLUPoisson"]

"""The discrete divergence of a 2D velocity stored as cell averages: one constraint per vertex.

Which divergence do stored cell averages satisfy? A staggered (MAC) solver makes the face
velocities exactly divergence-free per cell, ``(u_e - u_w) / h_x + (v_n - v_s) / h_y = 0``, and
stores the cell-centred velocity as the mean of the two faces of each cell. The central difference
of those cell values over two cells is not zero (it mixes the divergences of neighbouring cells
with unequal weights), but the compact divergence at a cell *vertex*,

    div_v = [(U_{i+1,j} + U_{i+1,j+1}) - (U_{i,j} + U_{i,j+1})] / (2 h_x)
          + [(V_{i,j+1} + V_{i+1,j+1}) - (V_{i,j} + V_{i+1,j})] / (2 h_y),

equals the mean of the MAC divergences of the four cells around the vertex, so it vanishes
exactly when the stored grid is the solver's grid. When the solver ran on a finer grid and its
cell values were averaged onto the stored one, it holds only to the averaging's O(h^2) error
(measured in benchmarks/README.md, "Conservation"). The law uses the ``(n_x - 1)(n_y - 1)``
interior vertices whose four cells are fluid.

The normal equations ``(G Sigma G^T + sigma_G^2) lambda = r`` are solved matrix-free by conjugate
gradients. Without a mask and with ``Sigma`` constant per component, ``G G^T`` is diagonalised by
the 2D discrete sine transform (DST-I) on the vertices (zero beyond the interior ones): that
transform is the preconditioner, exact in that case, and it is computed with FFTs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sciflow.constraints.base import LinearLaw


def dst1(x: Tensor, dim: int = -1) -> Tensor:
    """Unnormalised DST-I along ``dim``: ``y_k = sum_{p=1}^{N} x_p sin(pi k p / (N + 1))``.

    Its own inverse up to ``2 / (N + 1)``. Computed with one FFT of the odd extension.
    """
    x = x.movedim(dim, -1)
    zero = x.new_zeros(*x.shape[:-1], 1)
    z = torch.cat([zero, x, zero, -x.flip(-1)], dim=-1)
    y = -torch.fft.fft(z).imag[..., 1 : x.shape[-1] + 1] / 2
    return y.movedim(-1, dim)


class VertexDivergence(LinearLaw):
    """The vertex divergence of the velocity channels ``(cx, cy)``; see the module docstring.

    Args:
        spacing: ``(B, 2)`` cell sizes ``(h_x, h_y)`` per batch element.
        channels: indices of the x and y velocity components.
        n_channels: channels ``C`` of the states.
        shape: ``(n_x, n_y)``.
        mask: ``(B, n_x, n_y)`` bool fluid cells, or None (all fluid).
        name: for messages.
    """

    dense = False

    def __init__(self, spacing: Tensor, channels: tuple[int, int], n_channels: int,
                 shape: tuple[int, int], mask: Tensor | None = None, name: str = "divergence"):
        h = torch.as_tensor(spacing).to(torch.float64)
        if h.ndim != 2 or h.shape[1] != 2 or not bool((h > 0).all()):
            raise ValueError(f"{name}: spacing must be (B, 2) positive cell sizes, got {h.tolist()}")
        nx, ny = (int(s) for s in shape)
        if nx < 2 or ny < 2:
            raise ValueError(f"{name}: needs at least 2 x 2 cells, got {shape}")
        B = h.shape[0]
        cells = torch.ones(B, nx, ny, dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool()
        if tuple(cells.shape) != (B, nx, ny):
            raise ValueError(f"{name}: mask must be (B, {nx}, {ny}), got {tuple(cells.shape)}")
        cells = cells.to(h.device)
        verts = cells[:, 1:, 1:] & cells[:, :-1, 1:] & cells[:, 1:, :-1] & cells[:, :-1, :-1]
        if bool((~verts).flatten(1).all(1).any()):
            raise ValueError(f"{name}: a batch element has no vertex surrounded by fluid cells")
        self.h, self.cells, self.verts = h, cells, verts
        self.cx, self.cy = (int(c) for c in channels)
        for c in (self.cx, self.cy):
            if not 0 <= c < n_channels:
                raise ValueError(f"{name}: channel {c} out of range for {n_channels} channels")
        self.n_channels, self.name, self.shape = int(n_channels), name, (nx, ny)
        self.batch, self.n_constraints = B, (nx - 1) * (ny - 1)
        self.active = verts.flatten(1)
        self.masked = mask is not None and not bool(cells.all())
        # DST-I eigenvalues of the 1D factors on the interior vertices (see preconditioner)
        kx = torch.arange(1, nx, dtype=torch.float64, device=h.device) * math.pi / nx
        ky = torch.arange(1, ny, dtype=torch.float64, device=h.device) * math.pi / ny
        self._lx, self._mx = 2 - 2 * torch.cos(kx), (2 + 2 * torch.cos(kx)) / 4
        self._ly, self._my = 2 - 2 * torch.cos(ky), (2 + 2 * torch.cos(ky)) / 4

    @property
    def device(self) -> torch.device:
        return self.h.device

    def take(self, index: Tensor) -> VertexDivergence:
        return VertexDivergence(self.h[index], (self.cx, self.cy), self.n_channels, self.shape,
                                self.cells[index] if self.masked else None, self.name)

    def support(self) -> Tensor:
        v = torch.nn.functional.pad(self.verts, (1, 1, 1, 1))
        touched = v[:, 1:, 1:] | v[:, :-1, 1:] | v[:, 1:, :-1] | v[:, :-1, :-1]  # cells at an active vertex
        out = torch.zeros(self.batch, self.n_channels, *self.shape, dtype=torch.bool, device=self.device)
        out[:, self.cx] = touched & self.cells
        out[:, self.cy] = touched & self.cells
        return out

    def _hx_hy(self, ndim: int) -> tuple[Tensor, Tensor]:
        view = (self.batch,) + (1,) * (ndim - 1)
        return self.h[:, 0].reshape(view), self.h[:, 1].reshape(view)

    def _uv(self, u: Tensor) -> tuple[Tensor, Tensor]:
        x = u.to(torch.float64)
        m = self.cells.to(x.dtype)
        return x[..., self.cx, :, :] * m, x[..., self.cy, :, :] * m

    def _stencil(self, U: Tensor, V: Tensor, sign: float) -> Tensor:
        hx, hy = self._hx_hy(3)
        du = (U[..., 1:, :-1] + U[..., 1:, 1:]) + sign * (U[..., :-1, :-1] + U[..., :-1, 1:])
        dv = (V[..., :-1, 1:] + V[..., 1:, 1:]) + sign * (V[..., :-1, :-1] + V[..., 1:, :-1])
        out = du / (2 * hx) + dv / (2 * hy)
        return (out * self.verts.to(out.dtype)).flatten(-2)

    def apply(self, u: Tensor) -> Tensor:
        U, V = self._uv(u)
        return self._stencil(U, V, -1.0)

    def magnitude(self, u: Tensor) -> Tensor:
        U, V = self._uv(u)
        return self._stencil(U.abs(), V.abs(), 1.0)

    def adjoint(self, lam: Tensor) -> Tensor:
        nx, ny = self.shape
        lam = lam.to(torch.float64).reshape(*lam.shape[:-1], nx - 1, ny - 1) * self.verts
        L = torch.nn.functional.pad(lam, (1, 1, 1, 1))  # (..., B, nx + 1, ny + 1), zero outside
        hx, hy = self._hx_hy(3)
        s = L[..., :, :-1] + L[..., :, 1:]  # (..., nx + 1, ny)
        t = L[..., :-1, :] + L[..., 1:, :]  # (..., nx, ny + 1)
        m = self.cells.to(lam.dtype)
        gu = (s[..., :-1, :] - s[..., 1:, :]) / (2 * hx) * m
        gv = (t[..., :, :-1] - t[..., :, 1:]) / (2 * hy) * m
        out = lam.new_zeros(*lam.shape[:-2], self.n_channels, nx, ny)
        out[..., self.cx, :, :] = gu
        out[..., self.cy, :, :] = gv
        return out

    def preconditioner(self, sigma: Tensor, sigma_g: float):
        """``D^-1/2 (G Sigma_bar G^T + sigma_G^2)^-1 D^-1/2`` by DST-I: ``Sigma_bar`` is
        ``Sigma``'s mean over the fluid cells of each component and ``D`` the local weight at each
        vertex (the mean ``Sigma`` of its four cells) relative to its mean. Without a mask and with
        ``Sigma`` constant per component this is the exact inverse; with a varying ``Sigma`` (an
        ensemble's variance spans orders of magnitude) the scaling keeps conjugate gradients to a
        few hundred iterations where the plain transform needs thousands."""
        nx, ny = self.shape
        m = self.cells.to(torch.float64)
        n_fluid = m.flatten(1).sum(1)
        su = (sigma[:, self.cx] * m).flatten(1).sum(1) / n_fluid
        sv = (sigma[:, self.cy] * m).flatten(1).sum(1) / n_fluid
        hx, hy = self.h[:, 0], self.h[:, 1]
        eig = (
            (su / hx**2)[:, None, None] * self._lx[:, None] * self._my[None, :]
            + (sv / hy**2)[:, None, None] * self._mx[:, None] * self._ly[None, :]
            + sigma_g**2
        )  # (B, nx - 1, ny - 1)
        norm = 4.0 / (nx * ny)
        act = self.verts.to(torch.float64)
        s = (sigma[:, self.cx] / su[:, None, None] + sigma[:, self.cy] / sv[:, None, None]) * m / 2
        local = (s[:, 1:, 1:] + s[:, :-1, 1:] + s[:, 1:, :-1] + s[:, :-1, :-1]) / 4
        local = torch.where(self.verts, local, torch.ones_like(local))
        scale = local.rsqrt() * act  # (B, nx - 1, ny - 1): D^-1/2, 1 for a constant Sigma

        def solve(r: Tensor) -> Tensor:
            x = r.reshape(*r.shape[:-1], nx - 1, ny - 1) * scale
            y = dst1(dst1(x, -1), -2) / eig
            x = dst1(dst1(y, -1), -2) * norm * scale
            out = x.flatten(-2)
            return out + (~self.active).to(out.dtype) * r  # identity on inactive vertices

        return solve


__all__ = ["VertexDivergence", "dst1"]

"""Small grids and fields for the constraint tests."""

from __future__ import annotations

import numpy as np
import torch

from sciflow.constraints import Grid


def grid2d(B=2, shape=(12, 10), channels=("velocity_x", "velocity_y", "pressure"), mask=None,
           params=None, param_names=("u_in", "diameter"), spacing=((0.1, 0.05), (0.2, 0.1))) -> Grid:
    """A 2D grid with cell-centred coordinates and per-element spacing."""
    coords = []
    for b in range(B):
        hx, hy = spacing[b % len(spacing)]
        coords.append({"x": (np.arange(shape[0]) + 0.5) * hx, "y": (np.arange(shape[1]) + 0.5) * hy})
    p = np.tile([[1.5, 0.5]], (B, 1)) if params is None else np.asarray(params)
    return Grid(list(channels), ["x", "y"], coords, p, list(param_names), mask)


def grid1d(B=2, n=16, length=1.0, periodic=False, channels=("u",), params=None, param_names=("m",)) -> Grid:
    coords = [{"x": np.linspace(0, length, n) if not periodic else np.arange(n) * length / n} for _ in range(B)]
    p = np.full((B, 1), 2.0) if params is None else np.asarray(params)
    return Grid(list(channels), ["x"], coords, p, list(param_names), None, periodic)


def mac_field(B, nx, ny, hx, hy, generator) -> torch.Tensor:
    """Cell-centred velocity ``(B, 2, nx, ny)`` from an exactly divergence-free staggered field:
    face velocities from a random streamfunction on the vertices (zero on the boundary: no flow
    through the walls), averaged to the cell centres as a MAC solver stores them."""
    psi = torch.zeros(B, nx + 1, ny + 1, dtype=torch.float64)
    psi[:, 1:-1, 1:-1] = torch.randn(B, nx - 1, ny - 1, generator=generator, dtype=torch.float64)
    u_face = (psi[:, :, 1:] - psi[:, :, :-1]) / hy  # (nx + 1, ny) on vertical faces
    v_face = -(psi[:, 1:, :] - psi[:, :-1, :]) / hx  # (nx, ny + 1) on horizontal faces
    return torch.stack([0.5 * (u_face[:, 1:] + u_face[:, :-1]), 0.5 * (v_face[:, :, 1:] + v_face[:, :, :-1])], 1)

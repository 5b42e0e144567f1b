"""The flux through every cross-section of a channel: one constraint per section.

For sections normal to axis ``a`` (``x`` for a channel along x), constraint ``i`` is the
integral of the normal velocity over section ``i``: ``sum_j w_ij u[c, i, j]`` with the weights of
the other axis. Sections that cut an obstacle (any solid cell) do not carry the full flux and are
left out (inactive).
"""

from __future__ import annotations

import torch
from torch import Tensor

from sciflow.constraints.base import LinearLaw


class CrossSectionFlux(LinearLaw):
    """``(G u)_i = sum over section i of w u[channel]``; ``K`` = the length of ``axis``.

    Args:
        weights: ``(B, *S)`` quadrature weights of the section integral (the spacing across the
            sections, e.g. ``h_y`` per cell for cell averages), zero on solid cells.
        channel: index of the normal velocity component.
        n_channels: channels ``C`` of the states.
        axis: spatial axis the sections are normal to (0 = x).
        sections: ``(B, n_axis)`` bool, the sections that hold; default every section.
        name: for messages.
    """

    def __init__(self, weights: Tensor, channel: int, n_channels: int, axis: int = 0,
                 sections: Tensor | None = None, name: str = "cross-section flux"):
        w = torch.as_tensor(weights).to(torch.float64)
        n_dims = w.ndim - 1
        if n_dims < 2:
            raise ValueError(f"{name}: sections need a grid of 2 or more axes, got weights {tuple(w.shape)}")
        if not 0 <= axis < n_dims:
            raise ValueError(f"{name}: axis {axis} out of range for {n_dims} spatial axes")
        if not 0 <= channel < n_channels:
            raise ValueError(f"{name}: channel {channel} out of range for {n_channels} channels")
        n = w.shape[1 + axis]
        act = torch.ones(w.shape[0], n, dtype=torch.bool) if sections is None else torch.as_tensor(sections).bool()
        if tuple(act.shape) != (w.shape[0], n):
            raise ValueError(f"{name}: sections must be (B, {n}) bool, got {tuple(act.shape)}")
        # a section through a solid cell carries less than the full flux: it is not a constraint
        others = tuple(d for d in range(1, w.ndim) if d != 1 + axis)
        act = act.to(w.device) & (w.abs().sum(others) > 0)
        if bool((~act).all(dim=1).any()):
            raise ValueError(f"{name}: a batch element has no section to constrain")
        self.weights = w * act.reshape(w.shape[0], *[n if d == axis else 1 for d in range(n_dims)])
        self.channel, self.n_channels, self.axis, self.name = int(channel), int(n_channels), int(axis), name
        self.active = act
        self.batch, self.n_constraints = int(w.shape[0]), int(n)
        self._n_dims = n_dims

    @property
    def device(self) -> torch.device:
        return self.weights.device

    def take(self, index: Tensor) -> CrossSectionFlux:
        return CrossSectionFlux(self.weights[index], self.channel, self.n_channels, self.axis,
                                self.active[index], self.name)

    def support(self) -> Tensor:
        out = torch.zeros(self.batch, self.n_channels, *self.weights.shape[1:], dtype=torch.bool, device=self.device)
        out[:, self.channel] = self.weights != 0
        return out

    def _sum(self, x: Tensor) -> Tensor:
        # x: (..., B, *S) -> (..., B, n_axis)
        dims = tuple(x.ndim - self._n_dims + d for d in range(self._n_dims) if d != self.axis)
        return x.sum(dims)

    def _field(self, u: Tensor) -> Tensor:
        return u.to(torch.float64).select(-1 - self._n_dims, self.channel)

    def apply(self, u: Tensor) -> Tensor:
        return self._sum(self._field(u) * self.weights)

    def adjoint(self, lam: Tensor) -> Tensor:
        lam = lam.to(torch.float64)
        shape = [1] * self._n_dims
        shape[self.axis] = self.n_constraints
        out = lam.new_zeros(*lam.shape[:-1], self.n_channels, *self.weights.shape[1:])
        out.select(-1 - self._n_dims, self.channel).copy_(lam.reshape(*lam.shape[:-1], *shape) * self.weights)
        return out

    def magnitude(self, u: Tensor) -> Tensor:
        return self._sum(self._field(u).abs() * self.weights.abs())


__all__ = ["CrossSectionFlux"]

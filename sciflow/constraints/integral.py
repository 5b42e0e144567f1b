"""A global integral of one channel: one constraint per batch element.

``G u = sum_i w_i u[c, i]`` with quadrature weights ``w: (B, *S)`` (trapezoid for point values,
``h`` per cell for cell averages, see :mod:`sciflow.metrics.conservation`), zero on solid cells.
The KS mean, a total mass, a liquid volume.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sciflow.constraints.base import LinearLaw


class Integral(LinearLaw):
    """``G u = integral of u[channel]`` with ``weights: (B, *S)``; ``K = 1``.

    Args:
        weights: quadrature weights per batch element (fold a fluid mask in by multiplying).
        channel: index of the integrated channel among ``n_channels``.
        n_channels: channels ``C`` of the states.
        name: for messages.
    """

    def __init__(self, weights: Tensor, channel: int, n_channels: int, name: str = "integral"):
        w = torch.as_tensor(weights).to(torch.float64)
        if w.ndim < 2:
            raise ValueError(f"{name}: weights must be (B, *S), got shape {tuple(w.shape)}")
        if not 0 <= channel < n_channels:
            raise ValueError(f"{name}: channel {channel} out of range for {n_channels} channels")
        if bool((w.flatten(1).abs().sum(1) == 0).any()):
            raise ValueError(f"{name}: a batch element has all-zero weights (nothing to integrate)")
        self.weights, self.channel, self.n_channels, self.name = w, int(channel), int(n_channels), name
        self.batch, self.n_constraints = int(w.shape[0]), 1
        self._dims = tuple(range(-(w.ndim - 1), 0))

    @property
    def device(self) -> torch.device:
        return self.weights.device

    def take(self, index: Tensor) -> Integral:
        return Integral(self.weights[index], self.channel, self.n_channels, self.name)

    def support(self) -> Tensor:
        out = torch.zeros(self.batch, self.n_channels, *self.weights.shape[1:], dtype=torch.bool, device=self.device)
        out[:, self.channel] = self.weights != 0
        return out

    def apply(self, u: Tensor) -> Tensor:
        x = u.to(torch.float64).select(-1 - len(self._dims), self.channel)
        return (x * self.weights).sum(self._dims)[..., None]

    def adjoint(self, lam: Tensor) -> Tensor:
        lam = lam.to(torch.float64)
        out = lam.new_zeros(*lam.shape[:-1], self.n_channels, *self.weights.shape[1:])
        out.select(-1 - len(self._dims), self.channel).copy_(
            lam[..., 0].reshape(*lam.shape[:-1], *([1] * len(self._dims))) * self.weights
        )
        return out

    def magnitude(self, u: Tensor) -> Tensor:
        x = u.to(torch.float64).select(-1 - len(self._dims), self.channel)
        return (x.abs() * self.weights.abs()).sum(self._dims)[..., None]


__all__ = ["Integral"]

"""The deterministic stepper: one operator call per step, trained with a masked MSE."""

from __future__ import annotations

import torch
from torch import Tensor

from sciflow.steppers.base import Stepper


class Deterministic(Stepper):
    """``next = last + scale * operator(history, mask; params)`` (or ``operator(...)`` when not
    residual); the loss is the MSE of the operator output against the scaled target."""

    deterministic_step = True

    def loss(self, prev: Tensor, target: Tensor, cond: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        y = self.operator(self.inputs(prev, mask), self.cond(cond, batch=prev.shape[0]))
        return self.masked_mse(y, self.target_of(prev, target), mask)

    def step(self, prev: Tensor, cond: Tensor | None = None, mask: Tensor | None = None, *,
             generator: torch.Generator | None = None) -> Tensor:
        y = self.operator(self.inputs(prev, mask), self.cond(cond, batch=prev.shape[0]))
        return self.state_of(prev, y, mask)

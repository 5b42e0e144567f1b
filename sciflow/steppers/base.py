"""The stepper template: how an operator is trained on, and advances, one model step.

A stepper wraps one operator. It owns the bookkeeping every variant shares: stacking the history
frames (and the geometry mask) into the operator's input channels, the residual parametrisation
``next = last + scale * y`` with ``scale`` the typical change per step, the masked loss, and
keeping solid cells at zero. Variants override :meth:`loss` and :meth:`step`, and declare how
many extra input channels (``state_inputs`` per state channel) and conditioning entries
(``extra_cond``) their operator needs.

Every tensor a stepper sees is normalised (the surrogate does that): states ``(B, C, *S)``,
histories ``(B, h, C, *S)``, conditioning ``(B, P)``, masks ``(B, *S)`` bool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from sciflow.operators import build_operator


class Stepper(nn.Module):
    """Base class; see the module docstring.

    Args:
        operator: operator spec ``{"class_path": ..., "init_args": {...}}``.
        n_channels, n_dims, n_params: data sizes (injected by the surrogate).
        history: frames of input.
        has_mask: whether the data has a geometry mask (then it is an input channel).
        periodic: passed to the operator unless its init_args say otherwise.
        residual: predict ``(next - last) / scale`` instead of ``next``.
        residual_scale: ``(C,)`` typical per-step change of each normalised channel (the
            data's ``std_delta / std``); 1 when None.
    """

    #: extra operator input channels, in units of the state's channel count
    state_inputs: int = 0
    #: extra conditioning entries appended after the parameters
    extra_cond: int = 0
    #: operator calls per :meth:`step` (the cost of one model step)
    calls_per_step: int = 1
    #: whether :meth:`step` draws random numbers: a deterministic stepper gives the same state for
    #: every sample, so in an ensemble its model counts as one member whatever the sample count
    stochastic: bool = False
    #: True when :meth:`step` draws no random numbers, declared by the class that defines ``step``:
    #: an ensemble of such steppers may then run as one vmapped call (:mod:`sciflow.ensemble_batch`)
    deterministic_step: bool = False

    def __init__(self, operator: Mapping[str, Any], *, n_channels: int, n_dims: int, n_params: int = 0,
                 history: int = 1, has_mask: bool = False, periodic: bool = False,
                 residual: bool = True, residual_scale: Sequence[float] | None = None):
        super().__init__()
        self.n_channels, self.n_dims, self.n_params = n_channels, n_dims, n_params
        self.history, self.has_mask, self.residual = history, has_mask, residual
        spec = dict(operator) if not isinstance(operator, str) else {"class_path": operator}
        init_args = dict(spec.get("init_args") or {})
        init_args.setdefault("periodic", periodic)
        self.operator = build_operator(
            {"class_path": spec["class_path"], "init_args": init_args},
            in_channels=history * n_channels + int(has_mask) + self.state_inputs * n_channels,
            out_channels=n_channels, n_dims=n_dims, cond_dim=n_params + self.extra_cond,
        )
        scale = torch.ones(n_channels) if residual_scale is None else torch.as_tensor(residual_scale, dtype=torch.float32)
        if scale.shape != (n_channels,):
            raise ValueError(f"residual_scale: expected {n_channels} values, got shape {tuple(scale.shape)}")
        self.register_buffer("scale", scale.view(1, n_channels, *([1] * n_dims)), persistent=True)

    # -- shared pieces ------------------------------------------------------------------------
    def inputs(self, prev: Tensor, mask: Tensor | None, *extra: Tensor) -> Tensor:
        """Operator input ``(B, C_in, *S)``: history frames, then the mask, then ``extra`` states."""
        B = prev.shape[0]
        parts = [prev.reshape(B, -1, *prev.shape[3:])]
        if self.has_mask:
            m = torch.ones(B, *prev.shape[3:], device=prev.device) if mask is None else mask
            parts.append(m.unsqueeze(1).to(prev.dtype))
        parts += list(extra)
        return torch.cat(parts, dim=1)

    def cond(self, cond: Tensor | None, *extra: Tensor, batch: int) -> Tensor | None:
        """Conditioning ``(B, n_params + extra_cond)``: parameters, then ``extra`` (each ``(B,)``)."""
        parts = [] if cond is None or self.n_params == 0 else [cond]
        parts += [e.reshape(batch, 1) for e in extra]
        return torch.cat(parts, dim=1) if parts else None

    def target_of(self, prev: Tensor, target: Tensor) -> Tensor:
        """The quantity the operator learns for ``target`` ``(B, C, *S)``."""
        return (target - prev[:, -1]) / self.scale if self.residual else target

    def state_of(self, prev: Tensor, y: Tensor, mask: Tensor | None) -> Tensor:
        """Turn an operator output back into a state ``(B, C, *S)``; solid cells stay zero."""
        state = prev[:, -1] + self.scale * y if self.residual else y
        return state if mask is None else state * mask.unsqueeze(1).to(state.dtype)

    @staticmethod
    def masked_mean(v: Tensor, mask: Tensor | None) -> Tensor:
        """Mean of ``v: (B, C, *S)`` over fluid cells and channels (a scalar)."""
        if mask is None:
            return torch.mean(v)
        m = mask.unsqueeze(1).to(v.dtype)
        return torch.sum(m * v) / (m.sum() * v.shape[1]).clamp_min(1.0)

    @classmethod
    def masked_mse(cls, a: Tensor, b: Tensor, mask: Tensor | None) -> Tensor:
        """Mean squared error over fluid cells and channels; ``a, b: (B, C, *S)``."""
        return cls.masked_mean((a - b) ** 2, mask)

    # -- the algorithm (overridden) --------------------------------------------------------------
    def loss(self, prev: Tensor, target: Tensor, cond: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """Training loss for predicting ``target (B, C, *S)`` from ``prev (B, h, C, *S)``."""
        raise NotImplementedError

    def step(self, prev: Tensor, cond: Tensor | None = None, mask: Tensor | None = None, *,
             generator: torch.Generator | None = None) -> Tensor:
        """The next state ``(B, C, *S)`` from ``prev (B, h, C, *S)``; ``generator`` seeds sampling."""
        raise NotImplementedError

"""The template of the generative steppers (flow matching, PDE-Refiner).

Both train the operator on a noised version of the (residual-scaled) target, conditioned on the
history, and both sample the next state with a short loop of operator calls that starts from
noise or from a first guess. The operator therefore sees one extra state (the noised estimate,
``state_inputs = 1``) and one extra conditioning entry (the flow time or the refinement level,
``extra_cond = 1``).

This module owns the algorithm:

- training: draw a level per sample, draw noise, let the variant corrupt the clean target into
  (operator input, regression target, conditioning scalar), call the operator once, masked MSE;
- sampling: hand the variant a ``predict(x, c)`` closure (one operator call on the noised state
  ``x`` at conditioning scalar ``c``) and a ``noise()`` closure (fresh standard normal noise from
  the caller's generator), then turn the result into a state.

Variants override :meth:`draw_levels`, :meth:`corrupt`, :meth:`sample` and
:attr:`calls_per_step`. Solid cells stay zero in every intermediate state: noise, operator
outputs and states are multiplied by the mask.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from sciflow.steppers.base import Stepper

#: one operator call: noised state ``(B, C, *S)`` and conditioning scalar -> output ``(B, C, *S)``
Predict = Callable[[Tensor, float], Tensor]
#: fresh standard normal noise ``(B, C, *S)``, zero in solid cells
Noise = Callable[[], Tensor]

# Where the operator's tensors sit in the checkpoints we know, most preferred first: the EMA
# weights of a Surrogate (what it evaluates with), its trained weights, a stepper's state dict,
# a bare operator state dict.
_OPERATOR_PREFIXES = ("ema.operator.", "stepper.operator.", "operator.", "")


def load_matching_operator_weights(operator: nn.Module, path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Copy into ``operator`` the tensors of a checkpoint's operator whose names and shapes match.

    ``path`` is a Surrogate checkpoint (Lightning), a stepper's ``state_dict`` or an operator's,
    loaded with ``weights_only=True``. Returns ``(loaded, skipped)`` tensor names of ``operator``;
    skipped ones (e.g. the first layer, which has an extra input channel here) keep their
    initialisation. Raises if nothing matches.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"init_from: no checkpoint file at {os.fspath(path)!r}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping):
        raise ValueError(f"init_from {os.fspath(path)!r}: expected a state dict or a checkpoint with 'state_dict'")
    own = operator.state_dict()
    for prefix in _OPERATOR_PREFIXES:
        theirs = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        matched = {k: v for k, v in theirs.items()
                   if k in own and isinstance(v, Tensor) and v.shape == own[k].shape}
        if matched:
            break
    else:
        raise ValueError(
            f"init_from {os.fspath(path)!r}: no operator tensor matches this operator by name and shape "
            f"(looked under prefixes {list(_OPERATOR_PREFIXES)}); is it a checkpoint of the same operator?"
        )
    operator.load_state_dict(matched, strict=False)
    return sorted(matched), sorted(set(own) - set(matched))


class Generative(Stepper):
    """Template of a stepper that samples the next state from noise by a few operator calls.

    Args:
        operator: operator spec (see :class:`~sciflow.steppers.base.Stepper`).
        init_from: optional checkpoint (a Surrogate's, e.g. a trained deterministic model) whose
            operator tensors initialise this operator where names and shapes match; see
            :func:`load_matching_operator_weights`. The names of the loaded and skipped tensors
            are kept in ``init_report``.
        **sizes: data sizes and the residual options of :class:`~sciflow.steppers.base.Stepper`.
    """

    state_inputs = 1
    extra_cond = 1
    stochastic = True
    #: whether :meth:`sample` takes a ``project`` (a constraint applied inside the sampler)
    projects_in_sampler = False

    def __init__(self, operator: Mapping[str, Any], *, init_from: str | None = None, **sizes: Any):
        super().__init__(operator, **sizes)
        self.init_from = init_from
        self.init_report: dict[str, list[str]] | None = None
        if init_from is not None:
            loaded, skipped = load_matching_operator_weights(self.operator, init_from)
            self.init_report = {"loaded": loaded, "skipped": skipped}

    # -- formulas a variant overrides (and ``calls_per_step``) ----------------------------------------
    def draw_levels(self, batch: int, device: torch.device) -> Tensor:
        """Training levels ``(B,)`` (a flow time, a refinement step), one per sample."""
        raise NotImplementedError

    def corrupt(self, y: Tensor, noise: Tensor, level: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Clean target ``y (B, C, *S)``, standard noise like it and levels ``(B,)`` ->
        (operator state input ``(B, C, *S)``, regression target ``(B, C, *S)``, conditioning
        scalar ``(B,)``)."""
        raise NotImplementedError

    def sample(self, predict: Predict, noise: Noise, zeros: Tensor) -> Tensor:
        """The sampled target ``(B, C, *S)`` (in the operator's output space, see ``target_of``)
        from operator calls ``predict``, fresh noise ``noise()`` and a zero state ``zeros``."""
        raise NotImplementedError

    # -- the algorithm --------------------------------------------------------------------------------
    @staticmethod
    def fluid(x: Tensor, mask: Tensor | None) -> Tensor:
        """``x (B, C, *S)`` with solid cells set to zero (``mask (B, *S)`` or None)."""
        return x if mask is None else x * mask.unsqueeze(1).to(x.dtype)

    def predict(self, prev: Tensor, cond: Tensor | None, mask: Tensor | None, x: Tensor, c: Tensor) -> Tensor:
        """One operator call: history ``prev (B, h, C, *S)``, noised state ``x (B, C, *S)`` and
        conditioning scalar ``c (B,)`` (after the parameters ``cond (B, P)``) -> ``(B, C, *S)``."""
        B = prev.shape[0]
        out = self.operator(self.inputs(prev, mask, x), self.cond(cond, c.to(prev.dtype), batch=B))
        return self.fluid(out, mask)

    def loss(self, prev: Tensor, target: Tensor, cond: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """Masked MSE of the operator's prediction at random levels with fresh (global RNG) noise."""
        level = self.draw_levels(prev.shape[0], prev.device)
        return self.loss_at(prev, target, cond, mask, level=level, noise=torch.randn_like(target))

    def loss_at(self, prev: Tensor, target: Tensor, cond: Tensor | None, mask: Tensor | None, *,
                level: Tensor, noise: Tensor) -> Tensor:
        """The training loss for given levels ``(B,)`` and noise ``(B, C, *S)`` (deterministic)."""
        if level.shape != (prev.shape[0],):
            raise ValueError(f"level must have shape ({prev.shape[0]},), got {tuple(level.shape)}")
        if noise.shape != target.shape:
            raise ValueError(f"noise must have the target's shape {tuple(target.shape)}, got {tuple(noise.shape)}")
        y = self.fluid(self.target_of(prev, target), mask)
        x, want, c = self.corrupt(y, self.fluid(noise, mask), level)
        return self.masked_mse(self.predict(prev, cond, mask, x, c), want, mask)

    def step(self, prev: Tensor, cond: Tensor | None = None, mask: Tensor | None = None, *,
             generator: torch.Generator | None = None,
             project: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """Sample the next state ``(B, C, *S)``; ``generator`` draws all the noise (None: the
        global RNG), so a seeded generator reproduces the sample.

        ``project`` (a normalised next state ``(B, C, *S)`` -> its projection onto a constraint)
        is applied inside the sampler by variants with ``projects_in_sampler``; it is handed to
        :meth:`sample` as a function of the operator's target (see ``target_of``)."""
        B = prev.shape[0]
        zeros = prev.new_zeros(B, *prev.shape[2:])

        def predict(x: Tensor, c: float) -> Tensor:
            return self.predict(prev, cond, mask, x, torch.full((B,), float(c), device=prev.device))

        def noise() -> Tensor:
            # drawn where the generator lives, so a CPU-seeded sample is the same on any device
            where = zeros.device if generator is None else generator.device
            z = torch.randn(zeros.shape, generator=generator, device=where, dtype=zeros.dtype)
            return self.fluid(z.to(zeros.device), mask)

        if project is None:
            y = self.sample(predict, noise, zeros)
        elif not self.projects_in_sampler:
            raise ValueError(f"{type(self).__name__} cannot project inside its sampler")
        else:
            def project_target(y: Tensor) -> Tensor:
                # the law holds on the state; the sampler moves in the target's (affine) space
                return self.fluid(self.target_of(prev, project(self.state_of(prev, y, mask))), mask)

            y = self.sample(predict, noise, zeros, project=project_target)
        return self.state_of(prev, y, mask)


def broadcast(v: Tensor, like: Tensor) -> Tensor:
    """Per-sample values ``(B,)`` viewed as ``(B, 1, ..., 1)`` to broadcast against ``like``."""
    return v.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))

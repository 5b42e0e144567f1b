"""Deep-ensemble members of one architecture stepped as one batched call.

A deep ensemble of K surrogates that share their architecture differs only in its tensors. Their
parameters and buffers are stacked along a new leading axis
(:func:`torch.func.stack_module_state`) and one model step of all K is a single
:func:`torch.vmap` of :func:`torch.func.functional_call` over that axis: K small operator calls
become one call on K-times larger tensors, which keeps a CPU's vector units and a GPU's cores
busier than a Python loop over models.

Only members whose step draws no random numbers are batched (``Stepper.deterministic_step``):
the stochastic steppers seed one ``torch.Generator`` per model, a stream that a vmapped call
cannot reproduce. Mixed architectures, stochastic steppers and single models run the usual loop
(:func:`batch_members` returns None); the rollout engine chooses.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state

if TYPE_CHECKING:
    from sciflow.surrogate import Surrogate


class _PredictNext(nn.Module):
    """``forward`` = the surrogate's ``predict_next``, so that ``functional_call`` can run it."""

    def __init__(self, model: Surrogate):
        super().__init__()
        self.model = model

    def forward(self, history: Tensor, params: Tensor, mask: Tensor | None) -> Tensor:
        return self.model.predict_next(history, params, mask)


def _signature(model: nn.Module) -> tuple:
    """What must agree for two models to be stacked: class, hyperparameters (the data statistics
    aside: they are buffers, stacked like the weights) and the name, shape, dtype and device of
    every tensor."""
    hp = dict(getattr(model, "hparams", {}))
    if isinstance(hp.get("data_spec"), dict):
        hp["data_spec"] = {k: v for k, v in hp["data_spec"].items() if k != "stats"}
    tensors = tuple(
        (name, tuple(t.shape), t.dtype, t.device)
        for name, t in (*model.named_parameters(), *model.named_buffers())
    )
    return type(model), repr(sorted(hp.items())), tensors


def _draws_no_noise(stepper: object) -> bool:
    """``deterministic_step`` is trusted only from the class that also defines ``step`` (or a
    subclass of it): a subclass that overrides ``step`` without declaring it again (adding noise,
    say) is not batched."""
    if not getattr(stepper, "deterministic_step", False) or getattr(stepper, "stochastic", False):
        return False
    mro = type(stepper).__mro__

    def owner(attr: str) -> int:
        return next(i for i, c in enumerate(mro) if attr in vars(c))

    return owner("deterministic_step") <= owner("step")


def can_batch(models: Sequence[Surrogate]) -> bool:
    """True when the models can run as one vmapped call: two or more, one architecture (same
    class, operator and stepper settings, tensor names and shapes, device) and a stepper that
    draws no random numbers."""
    if len(models) < 2:
        return False
    from sciflow.surrogate import Surrogate  # here: the surrogate imports the rollout engine

    # a subclass's own predict_next may depend on more than tensors and hyperparameters
    if any(type(m).predict_next is not Surrogate.predict_next for m in models):
        return False
    steppers = [getattr(m, "inference_stepper", None) for m in models]
    if not all(_draws_no_noise(s) for s in steppers):
        return False
    first = _signature(models[0])
    return all(_signature(m) == first for m in models[1:])


class BatchedMembers:
    """K same-architecture surrogates as one function of stacked weights.

    The weights are copied (stacked) when this is built: build it for a rollout, not once for a
    model that is still training.
    """

    def __init__(self, models: Sequence[Surrogate]):
        if not can_batch(models):
            raise ValueError(
                f"BatchedMembers: the {len(models)} models cannot be batched (they need one architecture "
                f"and a stepper without random draws); step them one by one"
            )
        calls = [_PredictNext(m) for m in models]
        with torch.no_grad():
            self.params, self.buffers = stack_module_state(calls)
        # a weightless copy to call: functional_call takes every tensor from the stacked dicts
        self.base = copy.deepcopy(calls[0]).to("meta")
        for module in self.base.modules():
            if hasattr(module, "out_of_place"):  # layers with an in-place forward switch it off
                module.out_of_place = True
        self.k = len(models)

    def __call__(self, history: Tensor, params: Tensor, mask: Tensor | None = None) -> Tensor:
        """One step of every model: ``history (K, N, h, C, *S)`` (model k's own windows),
        ``params (N, P)``, ``mask (N, *S)`` shared -> ``(K, N, C, *S)``."""
        if history.shape[0] != self.k:
            raise ValueError(f"BatchedMembers: history must have {self.k} models first, got {tuple(history.shape)}")

        def one(weights: dict, buffers: dict, h: Tensor) -> Tensor:
            return functional_call(self.base, (weights, buffers), (h, params, mask))

        # randomness="error": a stepper that draws noise despite deterministic_step fails loudly
        with torch.no_grad():
            return torch.vmap(one, in_dims=(0, 0, 0), randomness="error")(self.params, self.buffers, history)


def batch_members(models: Sequence[Surrogate]) -> BatchedMembers | None:
    """A :class:`BatchedMembers` of the models when :func:`can_batch`, else None (loop)."""
    return BatchedMembers(models) if can_batch(models) else None


__all__ = ["BatchedMembers", "batch_members", "can_batch"]

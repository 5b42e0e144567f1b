"""Conservation over a rollout: the targets ``b(t_k)``, the error of each state, and the
rollout's per-step ``project`` hook.

:class:`ConservationMonitor` holds the laws of a card for one rollout (their right-hand sides
anchored to the initial state) and measures how far states are from them.
:class:`ConservationProjection` is the hook :func:`sciflow.rollout.rollout` calls with each
step's members: HardC (``Sigma = I``) or ProbConserv (``Sigma`` = the members' variance), every
living member projected, float64 out. With ``in_sampler=True`` it also hands a generative
stepper a projection to apply inside its sampler (:meth:`ConservationProjection.sampler`), and
after the step only removes the round-off the model's float32 output left.
:func:`projection_hook` builds one from a method name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sciflow.constraints.budget import Budget
from sciflow.constraints.build import Constraint, Grid, constraints_from_card
from sciflow.constraints.lawset import stack
from sciflow.constraints.update import project, project_members, weights_from_variance


@dataclass
class ConservationErrors:
    """How far states are from each law: ``(*lead, L)`` for ``L`` laws (NaN for stopped members).

    Attributes:
        absolute: the largest ``|G u - b|`` over each law's constraints, in the law's units
            (an amount for an integral, a rate for a divergence).
        relative: ``absolute`` over the largest ``|G| |u| + |b|`` of the law (the size of the
            terms it sums: round-off in float64 is about 1e-16 of it).
        names: the laws' names.
    """

    absolute: Tensor
    relative: Tensor
    names: list[str]


class ConservationMonitor:
    """A card's laws over one rollout from ``initial``.

    Args:
        constraints: from :func:`~sciflow.constraints.build.constraints_from_card`.
        initial: ``(B, C, *S)`` the state at t_0 (the last history frame), physical units.
        t0: ``(B,)`` or a number: time of the initial state since the case started.
        dt: seconds per model step.
    """

    def __init__(self, constraints: Sequence[Constraint], initial: Tensor, t0: np.ndarray | float, dt: float):
        if not constraints:
            raise ValueError("ConservationMonitor: no constraints given")
        self.constraints = list(constraints)
        self.law = stack([c.law for c in self.constraints])
        init = torch.as_tensor(initial).to(torch.float64)
        self.budgets = [Budget(c.law, c.budget, init, t0, dt) for c in self.constraints]
        self.names = [c.law.name for c in self.constraints]

    @classmethod
    def from_card(cls, card: Any, grid: Grid, initial: Tensor, t0: np.ndarray | float, dt: float, *,
                  kinds: Sequence[str] | None = None, skip_missing: bool = False) -> ConservationMonitor:
        """The monitor of a :class:`~sciflow.data.card.DatasetCard`'s laws (``card.conservation``)
        on ``grid``; see :func:`~sciflow.constraints.build.constraints_from_card` for ``kinds``
        and ``skip_missing``."""
        cons = constraints_from_card(card.conservation, grid, card=card.name, kinds=kinds, skip_missing=skip_missing)
        return cls(cons, initial, t0, dt)

    def target(self, k: int) -> Tensor:
        """``b(t_0 + k dt)`` of all laws: ``(B, K)``, or ``(M, B, K)`` with state-driven fluxes."""
        parts = [b.at(k) for b in self.budgets]
        lead = torch.broadcast_shapes(*[p.shape[:-1] for p in parts])
        return torch.cat([p.expand(*lead, p.shape[-1]) for p in parts], dim=-1)

    def observe(self, members: Tensor, k: int) -> None:
        """Record step ``k``'s states for state-driven boundary fluxes (once per step)."""
        for b in self.budgets:
            b.observe(members, k)

    def errors(self, states: Tensor, k: int) -> ConservationErrors:
        """The errors of ``states: (*lead, B, C, *S)`` at step ``k`` (``k = 0``: the initial
        state); each law's ``(*lead, B)``, stacked on a last axis."""
        x = states.to(torch.float64)
        ab, rel = [], []
        for c, budget in zip(self.constraints, self.budgets):
            b = budget.at(k)
            r = (c.law.apply(x) - b).abs()
            scale = c.law.magnitude(x) + b.abs()
            a = r.amax(-1)
            ab.append(a)
            rel.append(a / scale.amax(-1).clamp_min(torch.finfo(torch.float64).tiny))
        return ConservationErrors(torch.stack(ab, -1), torch.stack(rel, -1), list(self.names))


class ConservationProjection:
    """The rollout's ``project(members (M, B, C, *S), k) -> members`` hook; see the module
    docstring.

    Args:
        monitor: the laws and their targets for this rollout.
        weighted: ProbConserv (True: ``Sigma`` = the living members' variance; in the sampler,
            the samples' spread) or HardC (False).
        sigma_g: constraint noise (0: the law holds to round-off).
        in_sampler: also project inside a generative stepper's sampler (:meth:`sampler`).
    """

    def __init__(self, monitor: ConservationMonitor, *, weighted: bool, sigma_g: float = 0.0, in_sampler: bool = False):
        if not sigma_g >= 0:
            raise ValueError(f"sigma_g must be >= 0, got {sigma_g}")
        self.monitor, self.weighted, self.sigma_g, self.in_sampler = monitor, weighted, float(sigma_g), in_sampler

    def __call__(self, members: Tensor, k: int) -> Tensor:
        # in the sampler the members were projected already; what is left is the float32
        # round-off of the model's output, removed here without weights
        weighted = self.weighted and not self.in_sampler
        out = project_members(self.monitor.law, members, self.monitor.target(k), weighted=weighted,
                              sigma_g=self.sigma_g)
        self.monitor.observe(out, k)
        return out

    def sampler(self, k: int, member: Tensor, batch: Tensor) -> Callable[[Tensor], Tensor] | None:
        """The projection a generative stepper applies inside its sampler for step ``k``, to the
        states of ``member: (N,)`` and batch element ``batch: (N,)``: ``(N, C, *S) -> (N, C, *S)``
        float64, exact. Unweighted (HardC, Euclidean in physical units), or with ``weighted`` by
        the variance of the current estimates of the rows that share a batch element (the
        samples of one state, when they are in one call): ProbConserv's weighting with the
        samples' own spread. None unless ``in_sampler``."""
        if not self.in_sampler:
            return None
        b = self.monitor.target(k)
        b = b.expand(int(member.max()) + 1, *b.shape[-2:]) if b.ndim == 2 else b
        b = b[member.to(b.device), batch.to(b.device)]  # (N, K)
        law = self.monitor.law.take(batch.to(self.monitor.law.device))
        groups = torch.unique(batch, return_inverse=True)[1].to(law.device)
        n = torch.bincount(groups).to(torch.float64)

        def fn(states: Tensor) -> Tensor:
            x = states.to(torch.float64)
            if self.weighted:
                view = (-1,) + (1,) * (x.ndim - 1)
                mean = torch.zeros(len(n), *x.shape[1:], dtype=x.dtype, device=x.device).index_add_(0, groups, x)
                mean = mean / n.view(view)
                dev = (x - mean[groups]) ** 2
                var = torch.zeros_like(mean).index_add_(0, groups, dev) / (n - 1).clamp_min(1).view(view)
                sigma = weights_from_variance(law, var[groups])  # a lone row falls back to HardC
            else:
                sigma = weights_from_variance(law, None)
            return project(law, x, b, sigma, self.sigma_g)

        return fn


#: method name -> (weighted, in_sampler); "none" means no hook
METHODS: dict[str, tuple[bool, bool]] = {
    "hardc": (False, False),
    "probconserv": (True, False),
    "insampler": (False, True),
    "insampler_probconserv": (True, True),
}


def projection_hook(method: str, monitor: ConservationMonitor, sigma_g: float = 0.0) -> ConservationProjection | None:
    """The rollout hook for ``method`` in ``none``, ``hardc``, ``probconserv``, ``insampler``
    (Euclidean, inside the sampler) and ``insampler_probconserv`` (inside the sampler, weighted by
    the spread of the samples' current estimates)."""
    if method == "none":
        return None
    if method not in METHODS:
        raise ValueError(f"projection method {method!r} unknown; use one of {['none', *METHODS]}")
    weighted, in_sampler = METHODS[method]
    return ConservationProjection(monitor, weighted=weighted, sigma_g=sigma_g, in_sampler=in_sampler)


__all__ = ["METHODS", "ConservationErrors", "ConservationMonitor", "ConservationProjection", "projection_hook"]

"""A card's conservation laws over a rollout: the projection hook of each trajectory batch and
the per-step conservation error in the results.

:class:`RolloutConservation` is what :func:`sciflow.evaluate.run_rollout` uses for
``project="none" | "hardc" | "probconserv" | "insampler" | "insampler_probconserv"``: for every
batch of trajectories it builds a :class:`~sciflow.constraints.ConservationMonitor` (the card's
laws on the data's grid, their right-hand sides anchored to the batch's initial states) and,
unless the method is ``none``, the rollout's ``project`` hook
(:func:`~sciflow.constraints.projection_hook`). Its :attr:`score` records, per step and law,
the largest error over the living members (``conservation_abs``, ``conservation_rel``), so a run
with and one without the projection can be compared law by law.

Laws a card names for fields the model does not predict are skipped when only monitoring
(``none``) and refused when projecting, with the law's name.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sciflow.constraints import (
    ConservationMonitor,
    ConservationProjection,
    LawError,
    constraints_from_card,
    grid_from_trajectories,
    projection_hook,
)
from sciflow.constraints.projection import METHODS
from sciflow.results.scores import Score, StepContext

#: the ``project`` choices of ``sciflow rollout``
PROJECT_CHOICES = ("none", *METHODS)


def _nan_max(x: Tensor, dim: int) -> Tensor:
    """Max over ``dim`` ignoring NaN (a stopped member); NaN where every entry is NaN."""
    nan = torch.isnan(x)
    m = torch.where(nan, torch.full_like(x, -torch.inf), x).amax(dim)
    return torch.where(nan.all(dim), torch.full_like(m, torch.nan), m)


class RolloutConservation:
    """The laws of ``card`` for the trajectories ``indices`` of ``traj``; see the module docstring.

    Args:
        card: the dataset card (its ``conservation:`` entries, name and ``periodic``).
        traj: the split's :class:`~sciflow.data.Trajectories`, with the model's channels.
        indices: the trajectories that will be rolled out (their order is the results').
        method: one of :data:`PROJECT_CHOICES`.
        sigma_g: constraint noise of the projection (0: the laws hold to round-off).
        dt: seconds per model step.
        t0: ``(len(indices),)`` time of each initial state since its case started (for boundary
            fluxes given as functions of time).

    Raises:
        LawError: a law does not fit the data (naming it), or, when projecting, the card names
            no law the model's fields carry.
    """

    def __init__(self, card: Any, traj: Any, indices: Sequence[int], method: str = "none", *,
                 sigma_g: float = 0.0, dt: float, t0: Sequence[float] | np.ndarray):
        if method not in PROJECT_CHOICES:
            raise ValueError(f"project {method!r} unknown; use one of {list(PROJECT_CHOICES)}")
        if not sigma_g >= 0:
            raise ValueError(f"sigma_g must be >= 0, got {sigma_g}")
        self.card, self.traj, self.indices = card, traj, [int(i) for i in indices]
        self.method, self.sigma_g, self.dt = method, float(sigma_g), float(dt)
        self.t0 = np.asarray(t0, dtype=np.float64)
        self.monitor: ConservationMonitor | None = None
        self.hook: ConservationProjection | None = None
        # build the laws once for every trajectory now, so a law that does not fit fails at start
        self.names: list[str] = []
        self._all: list[Any] = []  # the laws of every trajectory, reused by a batch that holds them all
        if card.conservation:
            try:
                cons = self._constraints(self.indices)
            except LawError as e:
                if method != "none":
                    raise
                warnings.warn(f"conservation not monitored: {e}", UserWarning, stacklevel=2)
                cons = []
            self.names, self._all = _unique([c.law.name for c in cons]), cons
        elif method != "none":
            raise LawError(f"card {card.name!r} names no conservation laws: nothing to project "
                           "(add a 'conservation:' list to the card, see docs/data-format.md)")

    @property
    def active(self) -> bool:
        """Whether any law is monitored (the score exists)."""
        return bool(self.names)

    def _constraints(self, indices: Sequence[int]) -> list[Any]:
        grid = grid_from_trajectories(self.traj, indices, periodic=bool(self.card.periodic))
        return constraints_from_card(self.card.conservation, grid, card=self.card.name,
                                     skip_missing=self.method == "none")

    def begin(self, positions: slice, initial: Tensor | np.ndarray) -> ConservationProjection | None:
        """Start the batch of trajectories ``indices[positions]`` from their states at t = 0,
        ``(b, C, *S)`` in physical units; returns the batch's ``project`` hook (None for
        ``none``)."""
        if not self.active:
            return None
        ids = self.indices[positions]
        init = torch.as_tensor(np.asarray(initial)).to(torch.float64)
        cons = self._all if ids == self.indices else self._constraints(ids)
        self.monitor = ConservationMonitor(cons, init, self.t0[positions], self.dt)
        self.hook = projection_hook(self.method, self.monitor, self.sigma_g)
        return self.hook

    def _compute(self, ctx: StepContext) -> dict[str, np.ndarray]:
        if self.monitor is None:
            raise RuntimeError("RolloutConservation: begin() a batch before scoring it")
        x = ctx.members.to(torch.float64)  # (M, b, C, *S); stopped members are NaN
        err = self.monitor.errors(x, ctx.index)  # (M, b, L)
        if self.hook is None:
            # no projection records the states for state-driven boundary fluxes: do it here,
            # after the errors of step k (whose target uses steps < k only)
            self.monitor.observe(x, ctx.index)
        return {"conservation_abs": _nan_max(err.absolute, 0).numpy(),
                "conservation_rel": _nan_max(err.relative, 0).numpy()}

    @property
    def score(self) -> Score:
        """The per-step score: ``conservation_abs`` and ``conservation_rel``
        ``(trajectory, time, law)``, the largest over the living members."""
        return Score(
            outputs={"conservation_abs": "law", "conservation_rel": "law"},
            compute=self._compute,
            coords={"law": list(self.names)},
            long_names={
                "conservation_abs": "largest |G u - b| over the law's constraints, worst living member "
                                    "(the law's units)",
                "conservation_rel": "conservation_abs / largest |G| |u| + |b| of the law (float64 "
                                    "round-off is about 1e-16)",
            },
        )


def _unique(names: list[str]) -> list[str]:
    """Law names made distinct (two laws on one field get ``#2``, ``#3`` ...)."""
    out: list[str] = []
    for n in names:
        k, name = 1, n
        while name in out:
            k += 1
            name = f"{n}#{k}"
        out.append(name)
    return out


__all__ = ["PROJECT_CHOICES", "RolloutConservation"]

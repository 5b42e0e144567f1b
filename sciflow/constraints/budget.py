"""The right-hand side ``b(t)`` of a law over a rollout: what the conserved amounts must be.

``b(t_k) = b_0 + F(t_0 + k dt) - F(t_0) + sum_{j < k} dt * q(u_j)``:

- ``b_0``: the amount in the initial state (``G u_0``), or a value the card fixes (a flux
  ``u_in * diameter``), or zero (a divergence);
- ``F(t)``: a closed-form cumulative boundary flux (what has entered since ``t = 0``), e.g. the
  porous medium's inflow ``m^(1 + 1/m) t^(1 + 1/m) / (m + 1)``;
- ``q(u)``: a boundary flux that depends on the state (an outflow), summed over the rollout's own
  states (left Riemann sum in time: the rate of step ``j`` is known before step ``j + 1`` is
  projected, which keeps the projection linear).

``b`` is anchored to the initial amount and the cumulative flux, never to the previous step's
amount: round-off in one step's projection then never carries into the next one's target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sciflow.constraints.base import LinearLaw

#: ``F(t: (B,) seconds) -> (B,)`` amount that entered through the boundary since t = 0
CumulativeFlux = Callable[[np.ndarray], np.ndarray]
#: ``q(u: (..., B, C, *S)) -> (..., B)`` net inflow rate a state implies (outflows negative)
StateRate = Callable[[Tensor], Tensor]


@dataclass
class BudgetSpec:
    """How one law's ``b(t)`` is made (see the module docstring).

    Attributes:
        start: ``"initial"`` (``G u_0``), ``"fixed"`` (``value``) or ``"zero"``.
        value: ``(B, K)`` the fixed amounts (``start = "fixed"``).
        cumulative_flux: ``F(t)`` per batch element, added to every constraint of the law
            (a law with one constraint: an integral), or None.
        rates: state-dependent inflow rates ``q(u)``, each ``(..., B)``.
    """

    start: str = "initial"
    value: Tensor | None = None
    cumulative_flux: CumulativeFlux | None = None
    rates: Sequence[StateRate] = ()

    def __post_init__(self) -> None:
        if self.start not in ("initial", "fixed", "zero"):
            raise ValueError(f"BudgetSpec.start must be 'initial', 'fixed' or 'zero', got {self.start!r}")
        if (self.start == "fixed") != (self.value is not None):
            raise ValueError("BudgetSpec: a value is given exactly when start = 'fixed'")


class Budget:
    """``b(t_k)`` of one law over one rollout.

    Args:
        law: the law (its ``active`` rows get b = 0 elsewhere).
        spec: how b is made.
        initial: ``(B, C, *S)`` the state at t_0 (needed for ``start = "initial"`` and rates).
        t0: ``(B,)`` time of the initial state since the start of the case (for ``F``).
        dt: seconds per step.
    """

    def __init__(self, law: LinearLaw, spec: BudgetSpec, initial: Tensor | None, t0: np.ndarray | float, dt: float):
        B, K = law.batch, law.n_constraints
        if spec.start == "initial":
            if initial is None:
                raise ValueError(f"{law.name}: b starts from the initial amount, but no initial state was given")
            b0 = law.apply(initial)
        elif spec.start == "fixed":
            b0 = torch.as_tensor(spec.value, dtype=torch.float64, device=law.device).expand(B, K).clone()
        else:
            b0 = torch.zeros(B, K, dtype=torch.float64, device=law.device)
        if law.active is not None:
            b0 = b0 * law.active
        self.law, self.spec, self.dt = law, spec, float(dt)
        self.t0 = np.broadcast_to(np.asarray(t0, dtype=np.float64), (B,)).copy()
        self.b0 = b0
        self._F0 = self._flux(self.t0)
        # state-driven amount entered up to and including step j, per member once members are
        # seen: (..., B); step k's target uses the sum through step k - 1
        self._entered: dict[int, Tensor | float] = {-1: 0.0}
        if spec.rates:
            if initial is None:
                raise ValueError(f"{law.name}: state-dependent boundary fluxes need the initial state")
            self.observe(initial, 0)

    def _flux(self, t: np.ndarray) -> Tensor | None:
        if self.spec.cumulative_flux is None:
            return None
        F = np.broadcast_to(np.asarray(self.spec.cumulative_flux(t), dtype=np.float64), (self.law.batch,))
        if not np.all(np.isfinite(F)):
            raise ValueError(f"{self.law.name}: the cumulative boundary flux is not finite at t = {t.tolist()}")
        return torch.as_tensor(F.copy(), dtype=torch.float64, device=self.law.device)

    def at(self, k: int) -> Tensor:
        """``b(t_0 + k dt)``: ``(B, K)``, or ``(M, B, K)`` once state fluxes of ``M`` members are in."""
        b = self.b0
        if self.spec.cumulative_flux is not None:
            b = b + (self._flux(self.t0 + k * self.dt) - self._F0)[:, None]
        if self.spec.rates:
            if k - 1 not in self._entered:
                raise ValueError(f"{self.law.name}: step {k - 1}'s states have not been observed, so b at step {k} "
                                 f"is unknown (observed up to step {max(self._entered)})")
            b = b + torch.as_tensor(self._entered[k - 1], dtype=torch.float64)[..., None]
        return b if self.law.active is None else b * self.law.active

    def observe(self, states: Tensor, k: int) -> None:
        """Record the state of step ``k`` (``(B, C, *S)`` or members ``(M, B, C, *S)``): its
        boundary rates enter ``b`` from step ``k + 1`` on. A step is counted once."""
        seen = max(self._entered)
        if not self.spec.rates or k <= seen:
            return
        if k != seen + 1:
            raise ValueError(f"{self.law.name}: states must be observed step by step; got step {k} after {seen}")
        rate = sum(q(states.to(torch.float64)) for q in self.spec.rates)
        # a stopped member (NaN) adds nothing from now on; its own projection is skipped anyway
        rate = torch.nan_to_num(rate, nan=0.0, posinf=0.0, neginf=0.0)
        self._entered = {seen: self._entered[seen], k: self._entered[seen] + self.dt * rate}


__all__ = ["Budget", "BudgetSpec", "CumulativeFlux", "StateRate"]

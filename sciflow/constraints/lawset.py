"""Several laws on the same states, stacked into one: ``G = [G_1; G_2; ...]``.

Projecting onto each law in turn does not land on all of them at once unless they are orthogonal;
the stack is projected onto jointly. Small laws together form their full normal matrix (exact
solve); with a matrix-free law among them, conjugate gradients runs on the stack with each law's
own preconditioner on its block.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from sciflow.constraints.base import LinearLaw


class LawSet(LinearLaw):
    """The laws ``laws`` (same batch and channels) as one law with ``sum K_i`` constraints."""

    def __init__(self, laws: Sequence[LinearLaw]):
        laws = list(laws)
        if not laws:
            raise ValueError("LawSet: no laws given")
        for law in laws[1:]:
            if (law.batch, law.n_channels) != (laws[0].batch, laws[0].n_channels):
                raise ValueError(
                    f"LawSet: {law.name!r} is for batch {law.batch} x {law.n_channels} channels, "
                    f"{laws[0].name!r} for {laws[0].batch} x {laws[0].n_channels}"
                )
        self.laws = laws
        self.name = " + ".join(law.name for law in laws)
        self.batch, self.n_channels = laws[0].batch, laws[0].n_channels
        self.sizes = [law.n_constraints for law in laws]
        self.n_constraints = sum(self.sizes)
        self.dense = all(law.dense for law in laws)
        if any(law.active is not None for law in laws):
            self.active = torch.cat([
                law.active if law.active is not None
                else torch.ones(law.batch, law.n_constraints, dtype=torch.bool, device=law.device)
                for law in laws
            ], dim=1)

    @property
    def device(self) -> torch.device:
        return self.laws[0].device

    def take(self, index: Tensor) -> LawSet:
        return LawSet([law.take(index) for law in self.laws])

    def support(self) -> Tensor:
        out = self.laws[0].support()
        for law in self.laws[1:]:
            out = out | law.support()
        return out

    def split(self, lam: Tensor) -> list[Tensor]:
        """``(..., B, K)`` -> one ``(..., B, K_i)`` per law."""
        return list(torch.split(lam, self.sizes, dim=-1))

    def apply(self, u: Tensor) -> Tensor:
        return torch.cat([law.apply(u) for law in self.laws], dim=-1)

    def adjoint(self, lam: Tensor) -> Tensor:
        return sum(law.adjoint(part) for law, part in zip(self.laws, self.split(lam)))

    def magnitude(self, u: Tensor) -> Tensor:
        return torch.cat([law.magnitude(u) for law in self.laws], dim=-1)

    def preconditioner(self, sigma: Tensor, sigma_g: float):
        if self.dense:
            return super().preconditioner(sigma, sigma_g)
        blocks = [law.preconditioner(sigma, sigma_g) for law in self.laws]

        def solve(r: Tensor) -> Tensor:
            return torch.cat([p(part) for p, part in zip(blocks, self.split(r))], dim=-1)

        return solve


def stack(laws: Sequence[LinearLaw]) -> LinearLaw:
    """One law for ``laws``: the law itself when there is one, else a :class:`LawSet`."""
    laws = list(laws)
    return laws[0] if len(laws) == 1 else LawSet(laws)


__all__ = ["LawSet", "stack"]

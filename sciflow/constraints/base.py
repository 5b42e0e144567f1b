"""The linear-law interface ``G u = b``: what every conservation law provides.

A law acts on states ``u: (..., B, C, *S)`` (any leading axes, e.g. members ``M``) and maps them
to ``K`` constraint values ``G u: (..., B, K)``. Its geometry (weights, spacings, masks) is per
batch element ``B`` and broadcasts over the leading axes. Everything is float64: a law is only as
exact as the arithmetic it is checked in.

Besides ``G`` and its adjoint ``G^T``, a law knows how to precondition (or solve) its own normal
equations ``(G Sigma G^T + sigma_G^2 I) lambda = r`` for a diagonal ``Sigma``: small laws form the
``K x K`` matrix, many-constraint laws (a divergence) are solved matrix-free. The right-hand side
``b(t)`` is not part of a law: :mod:`sciflow.constraints.anchor` builds it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor


class LinearLaw(ABC):
    """One linear conservation law on a batch of states; see the module docstring.

    Attributes:
        name: what the law is, for messages (e.g. ``"integral of u"``).
        n_channels: channels ``C`` of the states it acts on.
        batch: ``B``, the batch elements its geometry describes.
        n_constraints: ``K``, constraints per batch element.
    """

    name: str
    n_channels: int
    batch: int
    n_constraints: int
    #: True when the normal matrix is formed explicitly (small K); False: matrix-free
    dense: bool = True
    #: ``(B, K)`` bool or None: constraints that hold; the others (a cross-section through an
    #: obstacle, a vertex next to a solid cell) have a zero row in ``G`` and a zero ``b``
    active: Tensor | None = None

    @abstractmethod
    def apply(self, u: Tensor) -> Tensor:
        """``G u``: ``(..., B, C, *S)`` -> ``(..., B, K)`` float64."""

    @abstractmethod
    def adjoint(self, lam: Tensor) -> Tensor:
        """``G^T lambda``: ``(..., B, K)`` -> ``(..., B, C, *S)`` float64 (zero off the law's support)."""

    @abstractmethod
    def magnitude(self, u: Tensor) -> Tensor:
        """``|G| |u|``: the size of the terms each constraint sums, ``(..., B, K)``; the scale
        that round-off in ``G u`` is relative to."""

    @abstractmethod
    def take(self, index: Tensor) -> LinearLaw:
        """The law for batch elements ``index: (N,)`` (repeats allowed): a batch of ``N``."""

    @abstractmethod
    def support(self) -> Tensor:
        """``(B, C, *S)`` bool: the state entries some active constraint touches."""

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def matrix(self) -> Tensor:
        """``G`` as a dense ``(B, K, C, *S)`` tensor (only for laws with ``dense = True``)."""
        eye = torch.eye(self.n_constraints, dtype=torch.float64, device=self.device)
        cols = self.adjoint(eye[:, None, :].expand(-1, self.batch, -1))  # (K, B, C, *S)
        return cols.transpose(0, 1).contiguous()

    def normal(self, lam: Tensor, sigma: Tensor, sigma_g: float) -> Tensor:
        """``(G Sigma G^T + sigma_G^2 I) lambda`` for ``lam: (..., B, K)``, ``sigma: (B, C, *S)``."""
        out = self.apply(sigma * self.adjoint(lam))
        if sigma_g:
            out = out + sigma_g**2 * lam
        # inactive rows are zero in G: an identity there keeps the system definite (lambda = 0)
        return out if self.active is None else out + (~self.active).to(out.dtype) * lam

    def preconditioner(self, sigma: Tensor, sigma_g: float):
        """A function ``r (..., B, K) -> approx (G Sigma G^T + sigma_G^2 I)^-1 r``.

        The default forms the ``K x K`` normal matrix per batch element and factorises it, which
        makes it the exact inverse: right for laws with few constraints."""
        G = self.matrix().flatten(2)  # (B, K, N)
        A = torch.einsum("bkn,bn,bln->bkl", G, sigma.flatten(1), G)
        if sigma_g:
            A = A + sigma_g**2 * torch.eye(self.n_constraints, dtype=A.dtype, device=A.device)
        if self.active is not None:
            A = A + torch.diag_embed((~self.active).to(A.dtype))
        chol, info = torch.linalg.cholesky_ex(A)
        if bool((info != 0).any()):
            bad = torch.nonzero(info).flatten().tolist()
            raise ValueError(
                f"{self.name}: the normal matrix G Sigma G^T of batch element(s) {bad} is singular "
                f"(a constraint with no weight, or a zero variance on its support)"
            )

        def solve(r: Tensor) -> Tensor:
            lead = r.shape[:-2]
            rr = r.reshape(-1, *r.shape[-2:]).transpose(0, 1)  # (B, L, K)
            x = torch.cholesky_solve(rr.transpose(1, 2), chol).transpose(1, 2)
            return x.transpose(0, 1).reshape(*lead, *r.shape[-2:])

        return solve


def as_float64(u: Tensor) -> Tensor:
    return torch.as_tensor(u).to(torch.float64)


__all__ = ["LinearLaw"]

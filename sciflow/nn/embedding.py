"""Embeddings of the conditioning vector (operating parameters, flow time, refinement step)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class FourierFeatures(nn.Module):
    """Sinusoidal features of every scalar entry of a vector, computed independently per entry.

    Each scalar ``s`` becomes ``[s, sin(w_1 s), ..., sin(w_F s), cos(w_1 s), ..., cos(w_F s)]`` with
    angular frequencies ``w_j`` log-spaced in ``[min_freq, max_freq]``. The raw value is kept so
    that a monotone dependence on ``s`` is one linear map away; the high frequencies let an MLP
    separate nearby values (e.g. flow times 0.50 and 0.51).

    Args:
        n_freqs: number of frequencies F per scalar.
        min_freq, max_freq: smallest and largest angular frequency (radians per unit of ``s``).
    """

    def __init__(self, n_freqs: int = 16, min_freq: float = 1.0, max_freq: float = 200.0):
        super().__init__()
        if n_freqs < 1:
            raise ValueError(f"n_freqs must be >= 1, got {n_freqs}")
        if not 0 < min_freq <= max_freq:
            raise ValueError(f"need 0 < min_freq <= max_freq, got {min_freq}, {max_freq}")
        freqs = torch.logspace(math.log10(min_freq), math.log10(max_freq), n_freqs)
        # Not persistent: the frequencies follow from the constructor arguments.
        self.register_buffer("freqs", freqs, persistent=False)
        self.n_freqs = n_freqs

    def out_features(self, in_features: int) -> int:
        """Number of features produced for a vector of ``in_features`` scalars."""
        return in_features * (2 * self.n_freqs + 1)

    def forward(self, s: Tensor) -> Tensor:
        """s: (B, D) -> (B, D * (2 F + 1))."""
        angles = s.unsqueeze(-1) * self.freqs.to(s.dtype)  # (B, D, F)
        feats = torch.cat([s.unsqueeze(-1), torch.sin(angles), torch.cos(angles)], dim=-1)
        return feats.flatten(-2)


class ConditionEmbedding(nn.Module):
    """Conditioning vector -> one embedding vector: Fourier features per entry, concatenated, MLP.

    Args:
        cond_dim: number of scalar entries D of the conditioning vector (>= 1).
        embed_dim: size E of the output embedding.
        n_freqs, min_freq, max_freq: see :class:`FourierFeatures`.
    """

    def __init__(
        self,
        cond_dim: int,
        embed_dim: int,
        *,
        n_freqs: int = 16,
        min_freq: float = 1.0,
        max_freq: float = 200.0,
    ):
        super().__init__()
        if cond_dim < 1:
            raise ValueError(f"cond_dim must be >= 1 for a ConditionEmbedding, got {cond_dim}")
        self.cond_dim = cond_dim
        self.features = FourierFeatures(n_freqs, min_freq, max_freq)
        self.mlp = nn.Sequential(
            nn.Linear(self.features.out_features(cond_dim), embed_dim),
            nn.GELU(),
            nn.Linear(embed_dim, embed_dim),
        )

    def forward(self, cond: Tensor) -> Tensor:
        """cond: (B, D) -> (B, E)."""
        if cond.ndim != 2 or cond.shape[1] != self.cond_dim:
            raise ValueError(f"cond must have shape (B, {self.cond_dim}), got {tuple(cond.shape)}")
        return self.mlp(self.features(cond))


def check_cond(cond: Tensor | None, cond_dim: int, batch: int) -> None:
    """Raise a clear error when ``cond`` does not match an operator's ``cond_dim`` and batch."""
    if cond_dim == 0:
        if cond is not None and cond.numel() > 0:
            raise ValueError(
                f"this operator was built with cond_dim=0 but got cond of shape {tuple(cond.shape)}"
            )
        return
    if cond is None:
        raise ValueError(f"this operator was built with cond_dim={cond_dim} but got cond=None")
    if tuple(cond.shape) != (batch, cond_dim):
        raise ValueError(
            f"cond must have shape (B, cond_dim) = ({batch}, {cond_dim}), got {tuple(cond.shape)}"
        )

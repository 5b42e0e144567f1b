"""Feature-wise linear modulation (FiLM) and the adaptive normalisations built on it."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class FiLM(nn.Module):
    """``x * (1 + scale) + shift`` with ``(scale, shift) = Linear(GELU(emb))`` per channel.

    The ``1 +`` keeps the layer close to the identity for small modulations, so conditioning
    refines an unconditioned network rather than gating it.

    Args:
        embed_dim: size E of the conditioning embedding.
        channels: number of channels C of the modulated features.
    """

    def __init__(self, embed_dim: int, channels: int):
        super().__init__()
        self.channels = channels
        self.proj = nn.Linear(embed_dim, 2 * channels)

    def forward(self, x: Tensor, emb: Tensor, channel_dim: int = 1) -> Tensor:
        """x: (B, C, *S) for ``channel_dim=1`` or (B, *S, C) for ``channel_dim=-1``;
        emb: (B, E) -> same shape as x."""
        if x.shape[channel_dim] != self.channels:
            raise ValueError(
                f"FiLM expects {self.channels} channels on dim {channel_dim}, "
                f"got x of shape {tuple(x.shape)}"
            )
        scale, shift = self.proj(F.gelu(emb)).chunk(2, dim=-1)  # (B, C) each
        if channel_dim == 1:
            view = (x.shape[0], self.channels) + (1,) * (x.ndim - 2)
        elif channel_dim in (-1, x.ndim - 1):
            view = (x.shape[0],) + (1,) * (x.ndim - 2) + (self.channels,)
        else:
            raise ValueError(f"channel_dim must be 1 or -1, got {channel_dim}")
        return x * (1 + scale.view(view)) + shift.view(view)


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm whose affine parameters come from the conditioning embedding (channels-first).

    With ``embed_dim=None`` it is a plain GroupNorm with learned affine parameters, and owns no
    conditioning parameters (so an unconditioned model has none left unused).
    """

    def __init__(self, num_groups: int, channels: int, embed_dim: int | None):
        super().__init__()
        self.norm = nn.GroupNorm(num_groups, channels, affine=embed_dim is None)
        self.film = FiLM(embed_dim, channels) if embed_dim is not None else None

    def forward(self, x: Tensor, emb: Tensor | None) -> Tensor:
        """x: (B, C, *S); emb: (B, E) or None -> (B, C, *S)."""
        x = self.norm(x)
        return self.film(x, emb, channel_dim=1) if self.film is not None else x


class AdaptiveLayerNorm(nn.Module):
    """LayerNorm over the last (channel) axis with affine parameters from the embedding.

    With ``embed_dim=None`` it is a plain LayerNorm with learned affine parameters.
    """

    def __init__(self, channels: int, embed_dim: int | None):
        super().__init__()
        self.norm = nn.LayerNorm(channels, elementwise_affine=embed_dim is None)
        self.film = FiLM(embed_dim, channels) if embed_dim is not None else None

    def forward(self, x: Tensor, emb: Tensor | None) -> Tensor:
        """x: (B, *S, C); emb: (B, E) or None -> (B, *S, C)."""
        x = self.norm(x)
        return self.film(x, emb, channel_dim=-1) if self.film is not None else x

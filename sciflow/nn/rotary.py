"""Rotary position embedding (Su et al. 2021) for points along one spatial axis."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def axis_positions(n: int, periodic: bool, *, device=None) -> Tensor:
    """Positions in [0, 1) of ``n`` grid points: ``j / n`` (periodic, so shifts by whole cells
    are shifts of the position) or cell centres ``(j + 0.5) / n``. Returns (n,) float32."""
    j = torch.arange(n, device=device, dtype=torch.float32)
    return j / n if periodic else (j + 0.5) / n


class RotaryEmbedding1d(nn.Module):
    """Rotate pairs of features by angles ``2 pi f_m p`` of the position ``p`` in [0, 1).

    The feature vector is split in halves ``(a, b)``; pair m is rotated by ``2 pi f_m p`` with
    frequencies ``f_m`` log-spaced in ``[1, max_freq]``. Then ``<R(p) q, R(p') k>`` depends on
    positions only through ``p - p'``. Positions are in physical units of the axis length, so
    the same network sees the same geometry at every resolution. With ``periodic=True`` the
    frequencies are rounded to whole harmonics: the kernel is then 1-periodic in ``p - p'``.

    Args:
        dim: feature size (even).
        max_freq: highest frequency, in cycles per axis length.
        periodic: round frequencies to integers and use positions ``j / n``.
    """

    def __init__(self, dim: int, *, max_freq: float = 32.0, periodic: bool = False):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"rotary embedding needs an even dim >= 2, got {dim}")
        if max_freq < 1:
            raise ValueError(f"max_freq must be >= 1, got {max_freq}")
        freqs = torch.logspace(0.0, math.log10(max_freq), dim // 2)
        if periodic:
            freqs = freqs.round()
        self.register_buffer("angular", 2 * math.pi * freqs, persistent=False)
        self.periodic = periodic

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., n, dim), points along the axis on dim -2 -> (..., n, dim) rotated."""
        n = x.shape[-2]
        pos = axis_positions(n, self.periodic, device=x.device)
        angles = pos[:, None] * self.angular[None, :]  # (n, dim/2), float32 for accuracy
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        a, b = x.chunk(2, dim=-1)
        return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)

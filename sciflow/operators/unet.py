"""A modern PDE U-Net (in the style of PDEArena / PDE-Refiner backbones) for 1D and 2D grids.

Residual blocks (GroupNorm, GELU, 3-point convolutions) with the conditioning embedding applied
as a scale-and-shift of the second normalisation in every block, strided-convolution
downsampling, nearest-neighbour upsampling followed by a convolution, skip connections by
concatenation, and optional self-attention at the bottleneck.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sciflow.nn.embedding import ConditionEmbedding, check_cond
from sciflow.nn.film import AdaptiveGroupNorm
from sciflow.nn.grid import crop_spatial, pad_to_multiple

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}


def _groups(channels: int, max_groups: int) -> int:
    """Largest group count <= max_groups that divides channels and leaves >= 2 channels per
    group (one channel per group would fail on a 1-cell bottleneck of a tiny grid)."""
    limit = max(1, min(max_groups, channels // 2))
    return max(g for g in range(1, limit + 1) if channels % g == 0)


class ResBlock(nn.Module):
    """``x + conv(act(adanorm(conv(act(norm(x))), emb)))`` with a 1x1 skip if channels change.

    x: (B, C_in, *S), emb: (B, E) or None -> (B, C_out, *S).
    """

    def __init__(
        self,
        n_dims: int,
        in_ch: int,
        out_ch: int,
        embed_dim: int | None,
        *,
        n_groups: int,
        padding_mode: str,
        dropout: float = 0.0,
    ):
        super().__init__()
        conv = _CONV[n_dims]
        self.norm1 = nn.GroupNorm(_groups(in_ch, n_groups), in_ch)
        self.conv1 = conv(in_ch, out_ch, 3, padding=1, padding_mode=padding_mode)
        self.norm2 = AdaptiveGroupNorm(_groups(out_ch, n_groups), out_ch, embed_dim)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = conv(out_ch, out_ch, 3, padding=1, padding_mode=padding_mode)
        self.skip = conv(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor | None) -> Tensor:
        h = self.conv1(F.gelu(self.norm1(x)))
        h = self.conv2(self.dropout(F.gelu(self.norm2(h, emb))))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all grid points (used only at the coarse bottleneck).

    x: (B, C, *S) -> (B, C, *S). Cost O(N^2 C) for N points, hence bottleneck-only.
    """

    def __init__(self, channels: int, n_heads: int, n_groups: int):
        super().__init__()
        if channels % n_heads:
            raise ValueError(f"attention: {channels} channels not divisible by {n_heads} heads")
        self.norm = nn.GroupNorm(_groups(channels, n_groups), channels)
        self.attn = nn.MultiheadAttention(channels, n_heads, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, N, C)
        out, _ = self.attn(tokens, tokens, tokens, need_weights=False)
        return x + out.transpose(1, 2).reshape(x.shape)


class Downsample(nn.Module):
    """Stride-2 convolution: (B, C, *S) -> (B, C, *S/2)."""

    def __init__(self, n_dims: int, channels: int, padding_mode: str):
        super().__init__()
        self.conv = _CONV[n_dims](
            channels, channels, 3, stride=2, padding=1, padding_mode=padding_mode
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a convolution: (B, C, *S) -> (B, C, *2S)."""

    def __init__(self, n_dims: int, channels: int, padding_mode: str):
        super().__init__()
        self.conv = _CONV[n_dims](channels, channels, 3, padding=1, padding_mode=padding_mode)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """Conditioned U-Net on regular 1D or 2D grids.

    Args:
        in_channels, out_channels: channels of the input and output fields (from the data).
        n_dims: number of spatial axes, 1 or 2.
        cond_dim: length of the conditioning vector; 0 means no conditioning.
        periodic: circular padding in every convolution (and when padding odd sizes);
            otherwise convolutions zero-pad and sizes are padded by replicating the edge.
        base_channels: channels at the finest level.
        channel_multipliers: channels per level as multiples of ``base_channels``; there are
            ``len(channel_multipliers) - 1`` halvings of the grid, so sizes are padded to a
            multiple of ``2 ** (len(channel_multipliers) - 1)`` and cropped back.
        n_blocks: residual blocks per level (the decoder uses the same number).
        attention: self-attention at the bottleneck (off by default).
        n_heads: heads of that attention.
        n_groups: maximum GroupNorm groups (the largest divisor of the channels not above it).
        dropout: dropout inside residual blocks.
        embed_dim: size of the conditioning embedding.

    Shapes: ``x: (B, in_channels, *S)``, ``cond: (B, cond_dim)`` or None
    -> ``(B, out_channels, *S)``. With ``periodic=True`` the network commutes with circular
    shifts by multiples of the downsampling factor (and approximately with other shifts).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_dims: int,
        cond_dim: int = 0,
        *,
        periodic: bool = False,
        base_channels: int = 32,
        channel_multipliers: Sequence[int] = (1, 2, 2, 4),
        n_blocks: int = 1,
        attention: bool = False,
        n_heads: int = 4,
        n_groups: int = 8,
        dropout: float = 0.0,
        embed_dim: int = 128,
    ):
        super().__init__()
        if n_dims not in _CONV:
            raise ValueError(f"UNet supports n_dims 1 or 2, got {n_dims}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channels must be >= 1, got in={in_channels}, out={out_channels}")
        if cond_dim < 0:
            raise ValueError(f"cond_dim must be >= 0, got {cond_dim}")
        mults = [int(m) for m in channel_multipliers]
        if not mults or min(mults) < 1:
            raise ValueError(
                f"channel_multipliers must be positive ints, got {channel_multipliers}"
            )
        if base_channels < 1 or n_blocks < 1:
            raise ValueError(
                f"need base_channels >= 1 and n_blocks >= 1, got {base_channels}, {n_blocks}"
            )

        self.in_channels, self.out_channels = in_channels, out_channels
        self.n_dims, self.cond_dim, self.periodic = n_dims, cond_dim, periodic
        self.factor = 2 ** (len(mults) - 1)
        pad = "circular" if periodic else "zeros"
        emb_dim = embed_dim if cond_dim > 0 else None
        self.cond_embed = ConditionEmbedding(cond_dim, embed_dim) if cond_dim > 0 else None
        conv = _CONV[n_dims]

        def block(cin: int, cout: int) -> ResBlock:
            return ResBlock(
                n_dims, cin, cout, emb_dim, n_groups=n_groups, padding_mode=pad, dropout=dropout
            )

        chans = [base_channels * m for m in mults]
        self.inp = conv(in_channels, chans[0], 3, padding=1, padding_mode=pad)

        self.down = nn.ModuleList()
        skip_chans: list[int] = []
        ch = chans[0]
        for level, out_ch in enumerate(chans):
            stage = nn.ModuleList()
            for _ in range(n_blocks):
                stage.append(block(ch, out_ch))
                ch = out_ch
                skip_chans.append(ch)
            sample = Downsample(n_dims, ch, pad) if level < len(chans) - 1 else nn.Identity()
            self.down.append(nn.ModuleDict({"blocks": stage, "sample": sample}))

        self.mid1 = block(ch, ch)
        self.mid_attn = AttentionBlock(ch, n_heads, n_groups) if attention else None
        self.mid2 = block(ch, ch)

        self.up = nn.ModuleList()
        for level in reversed(range(len(chans))):
            stage = nn.ModuleList()
            for _ in range(n_blocks):
                stage.append(block(ch + skip_chans.pop(), chans[level]))
                ch = chans[level]
            sample = Upsample(n_dims, ch, pad) if level > 0 else nn.Identity()
            self.up.append(nn.ModuleDict({"blocks": stage, "sample": sample}))

        self.out_norm = nn.GroupNorm(_groups(ch, n_groups), ch)
        self.out = conv(ch, out_channels, 3, padding=1, padding_mode=pad)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """x: (B, in_channels, *S); cond: (B, cond_dim) or None -> (B, out_channels, *S)."""
        if x.ndim != self.n_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"UNet expects x of shape (B, {self.in_channels}, *S) with {self.n_dims} spatial "
                f"dims, got {tuple(x.shape)}"
            )
        check_cond(cond, self.cond_dim, x.shape[0])
        emb = self.cond_embed(cond) if self.cond_embed is not None else None

        # Sizes not divisible by the downsampling factor: pad at the end, crop back at the end.
        # Periodic fields wrap around, unless a toy grid is shorter than the padding it needs.
        need = [(-n) % self.factor for n in x.shape[2:]]
        wrap = self.periodic and all(a <= n for a, n in zip(need, x.shape[2:]))
        x, size = pad_to_multiple(x, self.factor, self.n_dims, "circular" if wrap else "replicate")

        h = self.inp(x)
        skips: list[Tensor] = []
        for stage in self.down:
            for blk in stage["blocks"]:
                h = blk(h, emb)
                skips.append(h)
            h = stage["sample"](h)
        h = self.mid1(h, emb)
        if self.mid_attn is not None:
            h = self.mid_attn(h)
        h = self.mid2(h, emb)
        for stage in self.up:
            for blk in stage["blocks"]:
                h = blk(torch.cat([h, skips.pop()], dim=1), emb)
            h = stage["sample"](h)
        h = self.out(F.gelu(self.out_norm(h)))
        return crop_spatial(h, (0,) * self.n_dims, size)

"""Factorized transformers: FactFormer (Li et al. 2023) and the parallel, implicit variant
IFactFormer-m.

A full attention kernel over N grid points costs O(N^2). Here the kernel is factorized into one
small kernel per axis. For axis a with n_a points:

1. Project the field onto a 1D function of that axis by a learned integral: a linear map
   averaged over the other axes (the mean is the quadrature of the integral), then
   LayerNorm + MLP:  z_a: (B, n_a, d).
2. Build the axis kernel ``K_a = q_a k_a^T / n_a`` per head from ``q_a, k_a = W z_a`` with 1D rotary
   position embeddings and no softmax; ``1 / n_a`` makes it a quadrature of the kernel integral,
   so the operator is consistent across resolutions.
3. Apply the axis kernels to the values ``v = W_v u`` along their axis: one after another
   (FactFormer: ``K_1 (K_2 v)``), or all on the same values with the results concatenated and
   mixed (IFactFormer-m).

Cost per layer for N points on n axes (n_a ~ N^(1/n)): projections O(N d + n_a d^2), kernels
O(n_a^2 d), applying K_a along its axis O(N n_a d); in total O(n N^(1+1/n) d) plus the pointwise
O(N d^2) of the linear maps. No N x N matrix is ever formed.

The implicit option iterates one weight-shared block L times, ``u <- u + f(u) / L``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sciflow.nn.embedding import ConditionEmbedding, check_cond
from sciflow.nn.film import AdaptiveLayerNorm
from sciflow.nn.rotary import RotaryEmbedding1d

Mode = Literal["chained", "parallel"]


def apply_along_axis(kernel: Tensor, v: Tensor, axis: int) -> Tensor:
    """Apply a per-head kernel along one spatial axis.

    kernel: (B, h, n, n); v: (B, h, *S, c) with ``S[axis] == n`` -> (B, h, *S, c), where
    ``out[..., i, ...] = sum_j kernel[i, j] v[..., j, ...]``. Cost O(|S| n c) per head.
    """
    dim = 2 + axis
    moved = v.movedim(dim, 2)  # (B, h, n, *others, c)
    # One (n x n) @ (n x rest) product per head: a broadcast batched matmul would materialise a
    # copy of the kernel for every position on the other axes.
    out = kernel @ moved.reshape(*moved.shape[:3], -1)
    return out.reshape(moved.shape).movedim(2, dim)


class AxisProjection(nn.Module):
    """Learned integral projection of a field onto one axis: (B, *S, d) -> (B, n_axis, d).

    Computes ``MLP(LayerNorm(mean_{other axes}(W u + b)))``. The mean is taken before the
    linear map (they commute), which costs O(N d) instead of O(N d^2).
    """

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, u: Tensor, axis: int) -> Tensor:
        n_dims = u.ndim - 2
        others = [1 + a for a in range(n_dims) if a != axis]
        z = u.mean(dim=others) if others else u
        return self.mlp(self.norm(self.linear(z)))


class FactorizedAttention(nn.Module):
    """Multi-head factorized kernel integral over a grid (see the module docstring).

    u: (B, *S, d) -> (B, *S, d). ``mode="chained"`` applies the axis kernels one after another
    to the values; ``"parallel"`` applies each to the same values and mixes the concatenation.
    """

    def __init__(
        self,
        dim: int,
        n_dims: int,
        *,
        heads: int,
        dim_head: int,
        mode: Mode,
        periodic: bool,
        rotary_max_freq: float,
    ):
        super().__init__()
        if mode not in ("chained", "parallel"):
            raise ValueError(f"mode must be 'chained' or 'parallel', got {mode!r}")
        inner = heads * dim_head
        self.n_dims, self.heads, self.dim_head, self.mode = n_dims, heads, dim_head, mode
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.projections = nn.ModuleList(AxisProjection(dim, dim) for _ in range(n_dims))
        self.to_qk = nn.ModuleList(nn.Linear(dim, 2 * inner, bias=False) for _ in range(n_dims))
        self.rotary = RotaryEmbedding1d(dim_head, max_freq=rotary_max_freq, periodic=periodic)
        self.to_out = nn.Linear(inner * (n_dims if mode == "parallel" else 1), dim)

    def axis_kernel(self, u: Tensor, axis: int) -> Tensor:
        """u: (B, *S, d) -> kernel of that axis (B, heads, n, n), scaled by 1/n (quadrature)."""
        z = self.projections[axis](u, axis)  # (B, n, d)
        b, n, _ = z.shape
        q, k = self.to_qk[axis](z).view(b, n, 2, self.heads, self.dim_head).unbind(2)
        q = self.rotary(q.transpose(1, 2))  # (B, heads, n, dim_head)
        k = self.rotary(k.transpose(1, 2))
        return (q @ k.transpose(-1, -2)) / n

    def forward(self, u: Tensor) -> Tensor:
        b, *size, _ = u.shape
        v = self.to_v(u).view(b, *size, self.heads, self.dim_head).movedim(-2, 1)  # (B,h,*S,c)
        if self.mode == "chained":
            out = v
            for axis in range(self.n_dims):
                out = apply_along_axis(self.axis_kernel(u, axis), out, axis)
        else:
            out = torch.cat(
                [apply_along_axis(self.axis_kernel(u, a), v, a) for a in range(self.n_dims)],
                dim=-1,
            )
        return self.to_out(out.movedim(1, -2).reshape(b, *size, -1))


class FactorizedBlock(nn.Module):
    """Pre-norm transformer block with factorized attention and adaptive LayerNorms.

    ``update(u, emb)`` returns the increment ``f(u)`` so that a block can be applied either as
    ``u + f(u)`` or as an implicit step ``u + f(u) / L``. u: (B, *S, d), emb: (B, E) or None.
    """

    def __init__(
        self,
        dim: int,
        n_dims: int,
        embed_dim: int | None,
        *,
        heads: int,
        dim_head: int,
        mlp_ratio: float,
        mode: Mode,
        periodic: bool,
        rotary_max_freq: float,
    ):
        super().__init__()
        self.norm1 = AdaptiveLayerNorm(dim, embed_dim)
        self.attn = FactorizedAttention(
            dim,
            n_dims,
            heads=heads,
            dim_head=dim_head,
            mode=mode,
            periodic=periodic,
            rotary_max_freq=rotary_max_freq,
        )
        self.norm2 = AdaptiveLayerNorm(dim, embed_dim)
        hidden = round(mlp_ratio * dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def update(self, u: Tensor, emb: Tensor | None) -> Tensor:
        a = self.attn(self.norm1(u, emb))
        return a + self.mlp(self.norm2(u + a, emb))


class _FactorizedOperator(nn.Module):
    """Shared body of :class:`FactFormer` and :class:`IFactFormer` (see their docstrings)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_dims: int,
        cond_dim: int,
        *,
        mode: Mode,
        periodic: bool,
        width: int,
        depth: int,
        heads: int,
        dim_head: int,
        mlp_ratio: float,
        implicit: bool,
        n_iterations: int,
        rotary_max_freq: float,
        embed_dim: int,
    ):
        super().__init__()
        name = type(self).__name__
        if n_dims not in (1, 2):
            raise ValueError(f"{name} supports n_dims 1 or 2, got {n_dims}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channels must be >= 1, got in={in_channels}, out={out_channels}")
        if cond_dim < 0:
            raise ValueError(f"cond_dim must be >= 0, got {cond_dim}")
        if min(width, depth, heads, dim_head, n_iterations) < 1:
            raise ValueError(
                f"{name}: width, depth, heads, dim_head, n_iterations must be >= 1, got "
                f"{width}, {depth}, {heads}, {dim_head}, {n_iterations}"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.n_dims, self.cond_dim, self.periodic = n_dims, cond_dim, periodic
        self.implicit, self.n_iterations = implicit, n_iterations

        emb_dim = embed_dim if cond_dim > 0 else None
        self.cond_embed = ConditionEmbedding(cond_dim, embed_dim) if cond_dim > 0 else None
        self.lifting = nn.Sequential(
            nn.Linear(in_channels, width), nn.GELU(), nn.Linear(width, width)
        )
        n_blocks = 1 if implicit else depth  # implicit: one block, weights shared across steps
        self.blocks = nn.ModuleList(
            FactorizedBlock(
                width,
                n_dims,
                emb_dim,
                heads=heads,
                dim_head=dim_head,
                mlp_ratio=mlp_ratio,
                mode=mode,
                periodic=periodic,
                rotary_max_freq=rotary_max_freq,
            )
            for _ in range(n_blocks)
        )
        self.out_norm = AdaptiveLayerNorm(width, emb_dim)
        self.projection = nn.Sequential(
            nn.Linear(width, width), nn.GELU(), nn.Linear(width, out_channels)
        )

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """x: (B, in_channels, *S); cond: (B, cond_dim) or None -> (B, out_channels, *S)."""
        if x.ndim != self.n_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects x of shape (B, {self.in_channels}, *S) with "
                f"{self.n_dims} spatial dims, got {tuple(x.shape)}"
            )
        check_cond(cond, self.cond_dim, x.shape[0])
        emb = self.cond_embed(cond) if self.cond_embed is not None else None

        u = self.lifting(x.movedim(1, -1))  # channels last: (B, *S, width)
        if self.implicit:
            block = self.blocks[0]
            for _ in range(self.n_iterations):
                u = u + block.update(u, emb) / self.n_iterations
        else:
            for block in self.blocks:
                u = u + block.update(u, emb)
        y = self.projection(F.gelu(self.out_norm(u, emb)))
        return y.movedim(-1, 1)


class FactFormer(_FactorizedOperator):
    """FactFormer: axis kernels applied one after another to the values (``K_1 (K_2 v)``).

    Args:
        in_channels, out_channels, n_dims (1 or 2), cond_dim: injected from the data.
        periodic: rotary frequencies become whole harmonics and positions ``j / n``, which makes
            the operator commute exactly with circular shifts.
        width: token features d. depth: number of blocks (ignored when ``implicit``).
        heads, dim_head: attention heads and features per head.
        mlp_ratio: hidden size of the pointwise MLP as a multiple of ``width``.
        implicit: iterate one weight-shared block ``n_iterations`` times, ``u <- u + f(u) / L``.
        rotary_max_freq: highest rotary frequency, in cycles per axis length.
        embed_dim: size of the conditioning embedding (adaptive LayerNorm in every block).

    Shapes: ``x: (B, in_channels, *S)``, ``cond: (B, cond_dim)`` or None
    -> ``(B, out_channels, *S)``. Cost per block O(n N^(1+1/n) d) for N points on n axes.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_dims: int,
        cond_dim: int = 0,
        *,
        periodic: bool = False,
        width: int = 128,
        depth: int = 4,
        heads: int = 4,
        dim_head: int = 32,
        mlp_ratio: float = 2.0,
        implicit: bool = False,
        n_iterations: int = 10,
        rotary_max_freq: float = 32.0,
        embed_dim: int = 128,
    ):
        super().__init__(
            in_channels,
            out_channels,
            n_dims,
            cond_dim,
            mode="chained",
            periodic=periodic,
            width=width,
            depth=depth,
            heads=heads,
            dim_head=dim_head,
            mlp_ratio=mlp_ratio,
            implicit=implicit,
            n_iterations=n_iterations,
            rotary_max_freq=rotary_max_freq,
            embed_dim=embed_dim,
        )


class IFactFormer(_FactorizedOperator):
    """IFactFormer-m: axis kernels act on the same values in parallel, their outputs are
    concatenated and mixed; by default one weight-shared block is iterated ``n_iterations``
    times (``u <- u + f(u) / L``, the implicit form).

    Arguments as for :class:`FactFormer`; ``implicit`` defaults to True, and ``depth`` counts
    separate blocks when ``implicit=False``. Cost per iteration O(n N^(1+1/n) d).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_dims: int,
        cond_dim: int = 0,
        *,
        periodic: bool = False,
        width: int = 160,
        depth: int = 4,
        heads: int = 5,
        dim_head: int = 32,
        mlp_ratio: float = 2.0,
        implicit: bool = True,
        n_iterations: int = 10,
        rotary_max_freq: float = 32.0,
        embed_dim: int = 128,
    ):
        super().__init__(
            in_channels,
            out_channels,
            n_dims,
            cond_dim,
            mode="parallel",
            periodic=periodic,
            width=width,
            depth=depth,
            heads=heads,
            dim_head=dim_head,
            mlp_ratio=mlp_ratio,
            implicit=implicit,
            n_iterations=n_iterations,
            rotary_max_freq=rotary_max_freq,
            embed_dim=embed_dim,
        )

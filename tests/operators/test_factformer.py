import math

import pytest
import torch

from sciflow.operators.factformer import (
    FactFormer,
    FactorizedAttention,
    IFactFormer,
    apply_along_axis,
)

SMALL = dict(width=16, depth=2, heads=2, dim_head=8, n_iterations=3, embed_dim=8)


def _smooth(n, n_dims):
    """A smooth periodic field on an n^n_dims grid with positions j/n: (1, 2, *S)."""
    mesh = torch.meshgrid(*[torch.arange(n) / n] * n_dims, indexing="ij")
    u = sum(
        torch.sin(2 * math.pi * (k + 1) * x + 0.3 * k) + 0.5 * torch.cos(2 * math.pi * x)
        for k, x in enumerate(mesh)
    )
    return u.expand(1, 2, *([n] * n_dims)).clone()


def test_apply_along_axis_matches_einsum():
    torch.manual_seed(0)
    v = torch.randn(2, 3, 5, 7, 4)
    kx, ky = torch.randn(2, 3, 5, 5), torch.randn(2, 3, 7, 7)
    torch.testing.assert_close(apply_along_axis(kx, v, 0), torch.einsum("bhij,bhjyc->bhiyc", kx, v))
    torch.testing.assert_close(apply_along_axis(ky, v, 1), torch.einsum("bhij,bhxjc->bhxic", ky, v))
    v1 = torch.randn(2, 3, 5, 4)
    torch.testing.assert_close(apply_along_axis(kx, v1, 0), kx @ v1)


@pytest.mark.parametrize("mode", ["chained", "parallel"])
def test_factorized_attention_equals_its_dense_kernel(mode):
    # The factorized layer must equal a dense kernel integral over all N = nx*ny points with
    # kernel kron(Kx, Ky) (chained) or [kron(Kx, I) v, kron(I, Ky) v] (parallel).
    torch.manual_seed(0)
    att = FactorizedAttention(
        6, 2, heads=2, dim_head=4, mode=mode, periodic=False, rotary_max_freq=8.0
    )
    nx, ny = 5, 4
    u = torch.randn(1, nx, ny, 6)
    kx, ky = att.axis_kernel(u, 0)[0], att.axis_kernel(u, 1)[0]  # (h, n, n)
    assert kx.shape == (2, nx, nx) and ky.shape == (2, ny, ny)
    v = att.to_v(u).view(nx * ny, 2, 4).transpose(0, 1)  # (h, N, c), x-major flattening
    heads = []
    for h in range(2):
        if mode == "chained":
            heads.append(torch.kron(kx[h], ky[h]) @ v[h])
        else:
            ax = torch.kron(kx[h], torch.eye(ny)) @ v[h]
            ay = torch.kron(torch.eye(nx), ky[h]) @ v[h]
            heads.append(torch.cat([ax, ay], dim=-1))
    # Heads are concatenated head-major (parallel: each head holds [axis-0 c, axis-1 c]).
    mixed = torch.stack(heads, dim=1).reshape(nx * ny, -1)
    expected = att.to_out(mixed).view(1, nx, ny, 6)
    torch.testing.assert_close(att(u), expected, atol=1e-5, rtol=1e-4)


def test_axis_kernels_are_small():
    # No N x N matrix: each kernel is n_axis x n_axis.
    att = FactorizedAttention(
        8, 2, heads=2, dim_head=4, mode="chained", periodic=False, rotary_max_freq=8.0
    )
    u = torch.randn(3, 12, 20, 8)
    assert att.axis_kernel(u, 0).shape == (3, 2, 12, 12)
    assert att.axis_kernel(u, 1).shape == (3, 2, 20, 20)


@pytest.mark.parametrize("cls", [FactFormer, IFactFormer])
@pytest.mark.parametrize("n_dims,shift", [(1, (5,)), (2, (3, 7))])
def test_periodic_shift_equivariance(cls, n_dims, shift):
    # Whole-harmonic rotary frequencies make the kernels circulant in the periodic case.
    torch.manual_seed(0)
    model = cls(2, 1, n_dims, 2, periodic=True, **SMALL)
    size = (16,) * n_dims
    x, c = torch.randn(2, 2, *size), torch.randn(2, 2)
    dims = tuple(range(-n_dims, 0))
    y = model(x, c)
    torch.testing.assert_close(
        model(torch.roll(x, shift, dims), c), torch.roll(y, shift, dims), atol=1e-5, rtol=1e-4
    )


def test_non_periodic_is_not_shift_equivariant():
    torch.manual_seed(0)
    model = FactFormer(2, 1, 1, 0, periodic=False, **SMALL)
    x = torch.randn(1, 2, 16)
    assert (model(torch.roll(x, 5, -1)) - torch.roll(model(x), 5, -1)).abs().max() > 1e-3


@pytest.mark.parametrize("cls", [FactFormer, IFactFormer])
@pytest.mark.parametrize("n_dims", [1, 2])
def test_resolution_consistency(cls, n_dims):
    # Means and 1/n-scaled kernels are quadratures of integrals: on nested periodic grids fine
    # enough to resolve the rotary harmonics, the fine output restricted to the coarse points
    # equals the coarse output (dropping the 1/n scaling would make them differ by 2x per axis).
    torch.manual_seed(0)
    model = cls(2, 1, n_dims, 0, periodic=True, **SMALL)
    coarse = model(_smooth(64, n_dims))
    fine = model(_smooth(128, n_dims))
    restricted = fine[(Ellipsis,) + (slice(None, None, 2),) * n_dims]
    assert (restricted - coarse).norm() / coarse.norm() < 1e-4


def test_implicit_iteration_formula():
    torch.manual_seed(0)
    kw = dict(SMALL, depth=1)
    explicit = IFactFormer(2, 1, 2, 1, implicit=False, **kw)
    implicit = IFactFormer(2, 1, 2, 1, implicit=True, **dict(kw, n_iterations=1))
    implicit.load_state_dict(explicit.state_dict())  # one block either way
    x, c = torch.randn(2, 2, 8, 8), torch.randn(2, 1)
    torch.testing.assert_close(implicit(x, c), explicit(x, c))

    # L iterations of u <- u + f(u)/L with the same shared block.
    deep = IFactFormer(2, 1, 2, 1, implicit=True, **dict(kw, n_iterations=4))
    deep.load_state_dict(explicit.state_dict())
    emb = deep.cond_embed(c)
    u = deep.lifting(x.movedim(1, -1))
    for _ in range(4):
        u = u + deep.blocks[0].update(u, emb) / 4
    y = deep.projection(torch.nn.functional.gelu(deep.out_norm(u, emb))).movedim(-1, 1)
    torch.testing.assert_close(deep(x, c), y)
    assert not torch.allclose(deep(x, c), explicit(x, c))


def test_parameters_shared_in_implicit_mode():
    n3 = sum(p.numel() for p in IFactFormer(2, 1, 2, 0, **dict(SMALL, n_iterations=3)).parameters())
    n9 = sum(p.numel() for p in IFactFormer(2, 1, 2, 0, **dict(SMALL, n_iterations=9)).parameters())
    ne = sum(p.numel() for p in IFactFormer(2, 1, 2, 0, implicit=False, **SMALL).parameters())
    assert n3 == n9 < ne


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(n_dims=3), "n_dims"),
        (dict(width=0), "width"),
        (dict(n_iterations=0), "n_iterations"),
        (dict(cond_dim=-1), "cond_dim"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(in_channels=1, out_channels=1, n_dims=2, cond_dim=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        FactFormer(**args)


def test_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        FactorizedAttention(
            8, 2, heads=2, dim_head=4, mode="serial", periodic=False, rotary_max_freq=8.0
        )


def test_default_sizes():
    for cls in (FactFormer, IFactFormer):
        n = sum(p.numel() for p in cls(3, 2, 2, 5).parameters())
        assert 0.5e6 < n < 2e6, (cls.__name__, n)

import math

import pytest
import torch

from sciflow.operators.fno import FNO


def _smooth(size, batch=1, channels=2):
    """A band-limited periodic field sampled on a grid of `size` cells: (batch, channels, *size)."""
    axes = [torch.arange(n) / n for n in size]
    mesh = torch.meshgrid(*axes, indexing="ij")
    u = torch.zeros(size)
    for k, x in enumerate(mesh):
        u = u + torch.sin(2 * math.pi * (k + 1) * x + 0.3 * k) + 0.5 * torch.cos(2 * math.pi * x)
    return u.expand(batch, channels, *size).clone()


def _spectral_input_shapes(model, x, cond):
    shapes = []
    hooks = [
        c.register_forward_hook(lambda m, a, o: shapes.append((tuple(a[0].shape[2:]), o.dtype)))
        for c in model.blocks.convs
    ]
    model(x, cond)
    for h in hooks:
        h.remove()
    return shapes


@pytest.mark.parametrize("n_dims,size,shift", [(1, (32,), (5,)), (2, (16, 20), (3, 7))])
def test_periodic_translation_equivariance(n_dims, size, shift):
    torch.manual_seed(0)
    model = FNO(2, 1, n_dims, 2, periodic=True, width=8, modes=6, n_layers=3, embed_dim=8)
    assert not model.coordinates
    x, c = torch.randn(2, 2, *size), torch.randn(2, 2)
    dims = tuple(range(-n_dims, 0))
    y = model(x, c)
    y_shift = model(torch.roll(x, shift, dims), c)
    torch.testing.assert_close(y_shift, torch.roll(y, shift, dims), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("size", [(15, 15), (17, 16), (16, 15)])
def test_periodic_odd_grids_nearly_equivariant(size):
    # neuraloperator's spectral conv alone breaks equivariance by O(1) on odd first axes; the
    # wrapper resamples to even grids, leaving only aliasing of the pointwise nonlinearities.
    torch.manual_seed(0)
    model = FNO(2, 1, 2, 0, periodic=True, width=8, modes=6, n_layers=2)
    x = _smooth(size)
    y = model(x)
    y_shift = model(torch.roll(x, (3, 5), (-2, -1)))
    err = (y_shift - torch.roll(y, (3, 5), (-2, -1))).abs().max() / y.abs().max()
    assert err < 1e-2


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("size", [(15, 15), (17, 9), (7,)])
def test_spectral_layers_only_see_even_grids(periodic, size):
    model = FNO(1, 1, len(size), 1, periodic=periodic, width=4, modes=4, n_layers=2, embed_dim=4)
    shapes = _spectral_input_shapes(model, torch.randn(1, 1, *size), torch.randn(1, 1))
    assert len(shapes) == 2
    for s, _ in shapes:
        assert all(n % 2 == 0 for n in s), s
        if not periodic:
            assert all(n > m for n, m in zip(s, size))  # the domain is padded


def test_non_periodic_does_not_wrap():
    torch.manual_seed(0)
    model = FNO(1, 1, 1, 0, periodic=False, width=8, modes=8, n_layers=2)
    x = torch.randn(1, 1, 32)
    y = model(x)
    assert (model(torch.roll(x, 4, -1)) - torch.roll(y, 4, -1)).abs().max() > 1e-3


def test_spectral_conv_runs_float32_under_autocast():
    model = FNO(2, 2, 2, 1, width=8, modes=4, n_layers=2, embed_dim=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        shapes = _spectral_input_shapes(model, torch.randn(1, 2, 12, 12), torch.randn(1, 1))
    assert [d for _, d in shapes] == [torch.float32, torch.float32]


def test_modes_larger_than_grid_and_per_axis_modes():
    model = FNO(1, 1, 2, 0, width=4, modes=(32, 8), n_layers=1)
    assert model(torch.randn(1, 1, 8, 12)).shape == (1, 1, 8, 12)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(n_dims=3), "n_dims"),
        (dict(modes=(4, 4, 4)), "modes"),
        (dict(modes=0), "modes"),
        (dict(domain_padding=-0.1), "domain_padding"),
        (dict(cond_dim=-1), "cond_dim"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(in_channels=1, out_channels=1, n_dims=2, cond_dim=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        FNO(**args)


def test_default_size_is_reasonable():
    model = FNO(3, 2, 2, 5)
    n = sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())
    assert 0.5e6 < n < 2e6

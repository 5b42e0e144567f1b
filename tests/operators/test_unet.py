import pytest
import torch

from sciflow.operators.unet import UNet

SMALL = dict(base_channels=8, channel_multipliers=(1, 2, 2), embed_dim=8)


@pytest.mark.parametrize("n_dims,size,shift", [(1, (32,), (8,)), (2, (16, 24), (4, 12))])
def test_periodic_equivariance_for_shifts_by_the_downsampling_factor(n_dims, size, shift):
    torch.manual_seed(0)
    model = UNet(2, 1, n_dims, 2, periodic=True, **SMALL)
    assert model.factor == 4
    x, c = torch.randn(2, 2, *size), torch.randn(2, 2)
    dims = tuple(range(-n_dims, 0))
    y = model(x, c)
    torch.testing.assert_close(
        model(torch.roll(x, shift, dims), c), torch.roll(y, shift, dims), atol=1e-5, rtol=1e-4
    )


def test_non_periodic_is_not_circular():
    torch.manual_seed(0)
    model = UNet(1, 1, 1, 0, periodic=False, **SMALL)
    x = torch.randn(1, 1, 32)
    y = model(x)
    assert (model(torch.roll(x, 8, -1)) - torch.roll(y, 8, -1)).abs().max() > 1e-3


@pytest.mark.parametrize("size", [(1,), (3,), (13,), (5, 7), (2, 33)])
@pytest.mark.parametrize("periodic", [True, False])
def test_sizes_not_divisible_by_the_factor(size, periodic):
    model = UNet(1, 3, len(size), 1, periodic=periodic, base_channels=4, embed_dim=4)
    assert model.factor == 8
    assert model(torch.randn(1, 1, *size), torch.randn(1, 1)).shape == (1, 3, *size)


def test_bottleneck_attention():
    torch.manual_seed(0)
    model = UNet(2, 2, 2, 1, attention=True, n_heads=2, **SMALL)
    assert model.mid_attn is not None
    y = model(torch.randn(2, 2, 16, 16), torch.randn(2, 1))
    y.square().mean().backward()
    assert model.mid_attn.attn.in_proj_weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="heads"):
        UNet(2, 2, 2, 1, attention=True, n_heads=3, **SMALL)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(n_dims=3), "n_dims"),
        (dict(channel_multipliers=()), "channel_multipliers"),
        (dict(channel_multipliers=(1, 0)), "channel_multipliers"),
        (dict(n_blocks=0), "n_blocks"),
        (dict(cond_dim=-2), "cond_dim"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(in_channels=1, out_channels=1, n_dims=2, cond_dim=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        UNet(**args)


def test_default_size():
    n2 = sum(p.numel() for p in UNet(3, 2, 2, 5).parameters())
    n1 = sum(p.numel() for p in UNet(3, 2, 1, 5).parameters())
    assert 0.5e6 < n1 < n2 < 2.5e6

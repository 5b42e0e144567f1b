import math

import pytest
import torch

from sciflow.nn.grid import (
    coordinate_channels,
    crop_spatial,
    fourier_resize,
    pad_spatial,
    pad_to_multiple,
)


@pytest.mark.parametrize("mode", ["constant", "replicate", "circular", "reflect"])
def test_pad_then_crop_is_identity(mode):
    x = torch.randn(2, 3, 7, 5)
    padded = pad_spatial(x, (2, 1), (3, 2), mode)
    assert padded.shape == (2, 3, 12, 8)
    torch.testing.assert_close(crop_spatial(padded, (2, 1), (7, 5)), x)


def test_pad_constant_is_zero_and_circular_wraps():
    x = torch.arange(5.0).view(1, 1, 5)
    assert pad_spatial(x, (1,), (2,)).flatten().tolist() == [0, 0, 1, 2, 3, 4, 0, 0]
    assert pad_spatial(x, (1,), (2,), "circular").flatten().tolist() == [4, 0, 1, 2, 3, 4, 0, 1]


def test_pad_to_multiple():
    x = torch.randn(1, 2, 13, 16)
    padded, size = pad_to_multiple(x, 8, 2)
    assert padded.shape == (1, 2, 16, 16) and size == (13, 16)
    torch.testing.assert_close(crop_spatial(padded, (0, 0), size), x)
    with pytest.raises(ValueError, match="circularly"):
        pad_to_multiple(torch.randn(1, 1, 3), 8, 1, mode="circular")
    with pytest.raises(ValueError, match="spatial dims"):
        pad_to_multiple(x, 8, 1)


@pytest.mark.parametrize("old,new", [(15, 16), (16, 15), (9, 32), (32, 9)])
def test_fourier_resize_band_limited_exact(old, new):
    def field(n):
        t = torch.arange(n, dtype=torch.float64) / n
        return 1.0 + torch.sin(2 * math.pi * t) - 0.3 * torch.cos(2 * math.pi * 3 * t + 0.4)

    x = field(old).view(1, 1, old)
    torch.testing.assert_close(fourier_resize(x, (new,)), field(new).view(1, 1, new))


def test_fourier_resize_2d_round_trip_odd_to_even():
    x = torch.randn(2, 3, 15, 9, dtype=torch.float64)
    y = fourier_resize(fourier_resize(x, (16, 10)), (15, 9))
    torch.testing.assert_close(y, x)
    assert fourier_resize(x, (15, 9)) is x


def test_fourier_resize_half_precision_keeps_dtype():
    x = torch.randn(1, 1, 15, dtype=torch.bfloat16)
    assert fourier_resize(x, (16,)).dtype == torch.bfloat16


def test_coordinate_channels():
    g = coordinate_channels(2, (4, 2))
    assert g.shape == (2, 2, 4, 2)
    torch.testing.assert_close(g[0, 0, :, 0], torch.tensor([0.125, 0.375, 0.625, 0.875]))
    torch.testing.assert_close(g[1, 1, 3], torch.tensor([0.25, 0.75]))

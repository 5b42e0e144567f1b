"""Energy spectra (Parseval, single modes) and banded spectrum errors."""

from __future__ import annotations

import math

import pytest
import torch

from sciflow.metrics import energy_spectrum, spectrum_error, wavenumber_bands


@pytest.mark.parametrize("n", [64, 63])
def test_parseval_1d(n):
    u = torch.randn(3, 2, n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    E = energy_spectrum(u)
    assert E.shape == (3, 2, n // 2 + 1)
    torch.testing.assert_close(E.sum(-1), (u**2).mean(-1))
    assert (E >= 0).all()


def test_parseval_2d():
    u = torch.randn(2, 1, 32, 24, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    E = energy_spectrum(u)
    assert E.shape[:2] == (2, 1)
    torch.testing.assert_close(E.sum(-1), (u**2).mean(dim=(-2, -1)))


def test_single_modes_land_in_their_bins():
    n = 64
    x = torch.arange(n, dtype=torch.float64) / n
    u = (1.5 * torch.sin(2 * math.pi * 5 * x + 0.3) + 0.5).reshape(1, 1, n)
    E = energy_spectrum(u)[0, 0]
    assert E[0].item() == pytest.approx(0.25)  # mean^2
    assert E[5].item() == pytest.approx(1.5**2 / 2)
    assert E.sum().item() == pytest.approx(0.25 + 1.125)
    X, Y = torch.meshgrid(x, x, indexing="ij")
    u2 = (2.0 * torch.cos(2 * math.pi * (3 * X + 4 * Y))).reshape(1, 1, n, n)
    E2 = energy_spectrum(u2)[0, 0]
    assert E2[5].item() == pytest.approx(2.0)  # |(3, 4)| = 5, energy 2^2 / 2
    assert E2.sum().item() == pytest.approx(2.0)


def test_spectrum_error_closed_forms():
    u = torch.randn(2, 2, 48, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    zero = torch.zeros(2, 3, dtype=torch.float64)
    torch.testing.assert_close(spectrum_error(u, u), zero)
    torch.testing.assert_close(spectrum_error(-u, u), zero)  # the spectrum ignores sign/phase
    torch.testing.assert_close(spectrum_error(torch.zeros_like(u), u), zero + 1)
    torch.testing.assert_close(spectrum_error(2 * u, u), zero + 3)  # |4E - E| / E
    assert spectrum_error(u, u, bands=[(0, 5), (5, 25)]).shape == (2, 2)


def test_spectrum_error_per_band():
    n = 64
    x = torch.arange(n, dtype=torch.float64) / n
    low = torch.sin(2 * math.pi * 2 * x)
    high = torch.sin(2 * math.pi * 30 * x)
    truth = (low + high).reshape(1, 1, n)
    pred = (low + 2 * high).reshape(1, 1, n)  # only the high band is wrong, by (4 - 1) / 1
    err = spectrum_error(pred, truth)[0]
    assert err[0].item() == pytest.approx(0.0, abs=1e-12)
    assert err[1].item() < 1e-12  # round-off energy in both: ~0, not noise / noise
    assert err[2].item() == pytest.approx(3.0)
    spurious = spectrum_error((low + torch.sin(2 * math.pi * 15 * x)).reshape(1, 1, n), truth)
    assert spurious[0, 1].item() > 1e9  # energy where the truth has none
    zero = torch.zeros(1, 1, n, dtype=torch.float64)
    assert spectrum_error(zero, zero).tolist() == [[0.0, 0.0, 0.0]]
    assert math.isinf(spectrum_error(truth, zero)[0, 0].item())


def test_bands_and_bad_input():
    assert wavenumber_bands(33, 3) == [(1, 12), (12, 22), (22, 33)]
    with pytest.raises(ValueError, match="band"):
        wavenumber_bands(10, [(3, 3)])
    with pytest.raises(ValueError, match=r"\(2, 1, 16\) and \(2, 1, 15\)"):
        spectrum_error(torch.zeros(2, 1, 16), torch.zeros(2, 1, 15))
    with pytest.raises(ValueError, match="spatial_dims=3"):
        energy_spectrum(torch.zeros(1, 1, 4, 4, 4))

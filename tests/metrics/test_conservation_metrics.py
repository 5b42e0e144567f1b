"""Quadrature weights, integrals and the conservation error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sciflow.metrics import cell_average_weights, conservation_error, integral, trapezoid_weights


def test_trapezoid_is_exact_for_linear_functions():
    n, length = 11, 2.0
    x = torch.linspace(0, length, n, dtype=torch.float64)
    w = trapezoid_weights(n, length / (n - 1))
    assert w.sum().item() == pytest.approx(length)
    assert integral(3 * x + 1, w).item() == pytest.approx(1.5 * length**2 + length)
    # 2D: bilinear x*y over [0, 2] x [0, 1] integrates to 1 exactly
    y = torch.linspace(0, 1, 5, dtype=torch.float64)
    w2 = trapezoid_weights((n, 5), (length / (n - 1), 0.25))
    assert w2.shape == (n, 5)
    assert integral(x[:, None] * y[None, :], w2).item() == pytest.approx(1.0)


def test_trapezoid_second_order_and_periodic_spectral():
    # non-periodic: the error of int_0^1 x^2 is dx^2 / 6 exactly
    for n in (5, 9):
        x = torch.linspace(0, 1, n, dtype=torch.float64)
        got = integral(x**2, trapezoid_weights(n, 1 / (n - 1))).item()
        assert got - 1 / 3 == pytest.approx((1 / (n - 1)) ** 2 / 6)
    # periodic: x_i = i dx, sin^2 over a period integrates exactly to L/2 on 16 points
    n, length = 16, 5.0
    x = torch.arange(n, dtype=torch.float64) * length / n
    w = trapezoid_weights(n, length / n, periodic=True)
    torch.testing.assert_close(w, torch.full((n,), length / n, dtype=torch.float64))
    assert integral(torch.sin(2 * math.pi * 3 * x / length) ** 2, w).item() == pytest.approx(
        length / 2
    )


def test_conservation_error_of_shifted_periodic_field_is_zero():
    n, length = 32, 4.0
    x = torch.arange(n, dtype=torch.float64) * length / n
    u0 = (torch.cos(2 * math.pi * x / length) + 0.3).reshape(1, 1, n)
    w = trapezoid_weights(n, length / n, periodic=True)
    b0 = integral(u0, w)
    assert b0.shape == (1, 1) and b0.item() == pytest.approx(0.3 * length)
    moved = torch.roll(u0, 5, dims=-1)
    assert conservation_error(moved, w, b0).item() < 1e-14
    # adding c everywhere is a mass change of c L: an error unless a flux of c L entered
    c = 0.01
    assert conservation_error(u0 + c, w, b0).item() == pytest.approx(c * length)
    assert conservation_error(u0 + c, w, b0, cumulative_flux=c * length).item() < 1e-14
    # ensemble members (M, B, C, N) broadcast against the (B, C) reference
    members = torch.stack([u0, u0 + c, u0 - 2 * c])
    err = conservation_error(members, w, b0)
    torch.testing.assert_close(
        err.flatten(), torch.tensor([0.0, c * length, 2 * c * length], dtype=torch.float64)
    )


def test_cell_average_weights_integrate_cell_averages_exactly():
    """The exact cell averages of x^2 on [0, 1] (not its point values) sum to 1/3 with h per cell,
    on any number of cells; the trapezoid rule on them does not."""
    for n in (3, 8, 17):
        e = np.linspace(0.0, 1.0, n + 1)
        avg = torch.tensor((e[1:] ** 3 - e[:-1] ** 3) / 3 / np.diff(e))
        assert float(integral(avg, cell_average_weights(n, 1.0 / n))) == pytest.approx(1 / 3, rel=1e-14)
        assert abs(float(integral(avg, trapezoid_weights(n, 1.0 / (n - 1)))) - 1 / 3) > 1e-4
    w = cell_average_weights((4, 3), (0.5, 2.0))
    assert w.shape == (4, 3) and bool((w == 1.0).all())


def test_bad_input_raises():
    with pytest.raises(
        ValueError, match=r"\(2, 1, 8\) does not end with the weights' shape \(9,\)"
    ):
        integral(torch.zeros(2, 1, 8), trapezoid_weights(9, 0.1))
    with pytest.raises(ValueError, match="spacing"):
        trapezoid_weights(8, -1.0)
    with pytest.raises(ValueError, match="spacing has 3 entries"):
        trapezoid_weights((4, 4), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="1D or 2D"):
        trapezoid_weights((2, 2, 2), 1.0)
    with pytest.raises(ValueError, match="broadcast"):
        conservation_error(torch.zeros(2, 1, 8), trapezoid_weights(8, 0.1), torch.zeros(3, 1))

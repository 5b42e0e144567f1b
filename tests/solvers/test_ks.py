"""Kuramoto-Sivashinsky solver: conservation, convergence orders, closed forms, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sciflow.solvers import get_problem
from sciflow.solvers.ks import KS, etdrk4_coefficients, integrate_ks, ks_initial_condition

N = 256
L = 64.0


def _u0(seed: int = 3, n: int = N, length: float = L) -> np.ndarray:
    x = np.arange(n) * length / n
    return ks_initial_condition(x, length, np.random.default_rng(seed))[None]


@pytest.fixture(scope="module")
def chaotic_state() -> np.ndarray:
    """A state on the attractor: 80 s after a sum-of-sines start, ``(1, N)``."""
    u, _ = integrate_ks(_u0(), L, frames=1, warmup=80.0)
    return u[:, 0]


def test_registry_and_case_contract():
    problem = get_problem("ks")
    assert isinstance(problem, KS)
    case = problem.simulate({"L": 60.0}, grid=(N,), frames=6, frame_dt=0.2, seed=1)
    case.validate()
    assert case.scalar_fields["u"].shape == (6, N)
    assert case.vector_fields == {}
    np.testing.assert_allclose(case.coords["x"], np.arange(N) * 60.0 / N)
    np.testing.assert_allclose(case.time, 0.2 * np.arange(6))
    assert case.params == {"L": 60.0}
    (bc,) = case.boundaries
    assert bc.bc_type == "periodic" and bc.associated_dims == ["x"]
    assert bc.mask.shape == (N,) and bc.mask[0] and bc.mask[-1]
    for key in ("scheme", "internal_dt", "dealiasing", "wall_seconds", "max_mean_drift"):
        assert key in case.attrs
    assert case.attrs["internal_dt"] <= 0.2 / 4
    assert case.attrs["warmup_seconds"] == pytest.approx(80.0)


def test_initial_condition_convention():
    """Ten sines with whole periods 1..2 over L: zero mean, only Fourier modes 1 and 2."""
    u0 = _u0(seed=7, length=70.0)[0]
    v = np.fft.rfft(u0) / N
    assert abs(v[0]) < 1e-15
    assert np.all(np.abs(v[3:]) < 1e-13)
    assert np.abs(v[1:3]).max() > 1e-2
    assert np.abs(u0).max() <= 10 * 0.5


def test_spatial_mean_conserved_to_roundoff():
    u0 = _u0() + 0.37  # a non-zero mean must be kept as exactly as a zero one
    u, info = integrate_ks(u0, L, frames=200, frame_dt=0.2)
    drift = np.abs(u.mean(axis=-1) - u0.mean())
    assert drift.max() < 1e-13
    assert info["max_mean_drift"][0] == pytest.approx(drift.max(), abs=1e-16)


def test_linear_part_matches_closed_form():
    """Without u u_x, mode m evolves as exp((k^2 - nu k^4) t) with k = 2 pi m / L."""
    x = np.arange(N) * L / N
    nu = 1.0
    for m, amp in [(7, 0.3), (3, 1.0), (20, 2.0)]:  # growing, slowly growing, decaying
        k = 2 * np.pi * m / L
        u0 = amp * np.sin(k * x + 0.4)[None]
        u, _ = integrate_ks(u0, L, frames=11, frame_dt=0.5, nu=nu, nonlinear=False)
        t = 0.5 * np.arange(11)
        exact = amp * np.exp((k**2 - nu * k**4) * t)[:, None] * np.sin(k * x + 0.4)[None]
        np.testing.assert_allclose(u[0], exact, rtol=0, atol=1e-12 * max(1.0, np.abs(exact).max()))


def test_phi_functions_match_direct_formulas_away_from_zero():
    """Contour means equal the closed-form ETDRK4 factors where those are well conditioned."""
    h = 0.1
    lin = np.array([-50.0, -5.0, 2.0])
    c = etdrk4_coefficients(lin, h)
    z = h * lin
    q = h * (np.exp(z / 2) - 1) / z
    f1 = h * (-4 - z + np.exp(z) * (4 - 3 * z + z**2)) / z**3
    f2 = h * (2 + z + np.exp(z) * (z - 2)) / z**3
    f3 = h * (-4 - 3 * z - z**2 + np.exp(z) * (4 - z)) / z**3
    for got, want in [(c.Q, q), (c.f1, f1), (c.f2, f2), (c.f3, f3)]:
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # at z = 0 the factors have the limits h/2, h/6, h/6, h/6 (no 0/0)
    c0 = etdrk4_coefficients(np.zeros(1), h)
    np.testing.assert_allclose(
        [c0.Q[0], c0.f1[0], c0.f2[0], c0.f3[0]], [h / 2, h / 6, h / 6, h / 6], rtol=1e-13
    )


def test_etdrk4_is_fourth_order_in_time():
    """Error against a fine-step reference after 4 s shrinks ~16x per halving of the step."""
    T = 4.0
    u0 = _u0()
    ref, _ = integrate_ks(u0, L, frames=2, frame_dt=T, dt_max=T / 3200)
    errs = []
    for dt in (0.05, 0.025, 0.0125):
        u, _ = integrate_ks(u0, L, frames=2, frame_dt=T, dt_max=dt)
        errs.append(np.abs(u[0, 1] - ref[0, 1]).max())
    orders = [math.log2(a / b) for a, b in zip(errs, errs[1:])]
    assert errs[-1] > 1e-13  # still above round-off, so the ratio means something
    assert all(3.6 < p < 4.4 for p in orders), (errs, orders)


def test_default_step_is_accurate_on_the_attractor(chaotic_state):
    """The default step (0.02 s) is within 1e-6 of a 16x finer step after 4 s of chaos."""
    u, info = integrate_ks(chaotic_state, L, frames=21, frame_dt=0.2)
    ref, _ = integrate_ks(
        chaotic_state, L, frames=21, frame_dt=0.2, dt_max=info["internal_dt"] / 16
    )
    assert np.abs(u - ref).max() / np.abs(ref).max() < 1e-6


def test_spatial_refinement_256_vs_512(chaotic_state):
    """A chaotic state, spectrally interpolated to 512 points, evolves the same for 5 s."""
    v = np.fft.rfft(chaotic_state[0])
    v2 = np.zeros(2 * N // 2 + 1, dtype=complex)
    v2[: N // 2 + 1] = 2 * v
    v2[N // 2] *= 0.5  # the old Nyquist mode is split between +-N/2 on the finer grid
    fine0 = np.fft.irfft(v2, n=2 * N)[None]
    np.testing.assert_allclose(fine0[0, ::2], chaotic_state[0], atol=1e-13)
    coarse, _ = integrate_ks(chaotic_state, L, frames=26, frame_dt=0.2)
    fine, _ = integrate_ks(fine0, L, frames=26, frame_dt=0.2)
    assert np.abs(coarse - fine[:, :, ::2]).max() < 1e-9


def test_deterministic_by_seed_and_batch_equals_single():
    problem = KS(warmup=4.0)
    a = problem.simulate({"L": 62.0}, frames=5, seed=11)
    b = problem.simulate({"L": 62.0}, frames=5, seed=11)
    c = problem.simulate({"L": 62.0}, frames=5, seed=12)
    np.testing.assert_array_equal(a.scalar_fields["u"], b.scalar_fields["u"])
    assert np.abs(a.scalar_fields["u"] - c.scalar_fields["u"]).max() > 1e-2
    batch = problem.simulate_batch([{"L": 66.0}, {"L": 62.0}], seeds=[5, 11], frames=5)
    np.testing.assert_allclose(batch[1].scalar_fields["u"], a.scalar_fields["u"], atol=1e-12)
    assert batch[0].params == {"L": 66.0} and batch[0].attrs["seed"] == 5


@pytest.mark.parametrize("bad", [0.0, -64.0, float("nan"), float("inf"), "long"])
def test_bad_length_raises_naming_L(bad):
    with pytest.raises(ValueError, match="'L'"):
        KS().simulate({"L": bad}, frames=2, seed=0)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="nu"):
        KS(nu=-1.0)
    with pytest.raises(ValueError, match="Re"):
        KS().simulate({"L": 64.0, "Re": 1.0}, frames=2)
    with pytest.raises(ValueError, match="grid"):
        KS().simulate({"L": 64.0}, grid=(64, 64), frames=2)
    with pytest.raises(ValueError, match="u0"):
        integrate_ks(np.zeros(N), L, frames=2)
    with pytest.raises(ValueError, match="frames"):
        integrate_ks(np.zeros((1, N)), L, frames=0)


def test_bounded_over_640_frames():
    """A test-length trajectory stays on the attractor: bounded, energy of order one."""
    case = KS().simulate({"L": 70.0}, frames=640, seed=4)
    u = case.scalar_fields["u"]
    assert np.isfinite(u).all()
    assert np.abs(u).max() < 6.0
    energy = (u**2).mean(axis=-1)
    assert 0.5 < energy.min() and energy.max() < 5.0
    assert case.attrs["max_mean_drift"] < 1e-13

"""Plane channel entrance flow: Poiseuille limit, entry length, pressure gradient, contract."""

from __future__ import annotations

import numpy as np
import pytest

from sciflow.solvers import get_problem
from sciflow.solvers.tube import Tube

BASE = {"u_in": 1.0, "rho": 100.0, "mu": 0.1, "diameter": 0.1, "length": 1.0}  # Re = 100


def durst_entry_length(re: float) -> float:
    """Plane-channel entry length over the channel height H, Re = U_mean H / nu (Durst et al.
    2005): ``L/H = (0.631^1.6 + (0.0442 Re)^1.6)^(1/1.6)``, about 0.044 Re at high Re."""
    return (0.631**1.6 + (0.0442 * re) ** 1.6) ** (1.0 / 1.6)


@pytest.fixture(scope="module")
def developed():
    solver = Tube().make_solver(BASE, (64, 64))
    converged, residual = solver.run_steady(tol=1e-4, t_max=10.0, scale=0.1)
    assert converged, residual
    return solver


def test_developed_profile_is_poiseuille(developed):
    g = developed.grid
    u = developed.cell_velocity()[..., 0]
    i = int(0.9 * g.nx)  # far downstream, past the entry length (0.45 m)
    ratio = u[i].max() / u[i].mean()
    # measured 1.4987 (the discrete maximum sits half a cell off the centre line)
    assert abs(ratio - 1.5) < 0.01 * 1.5
    y = g.yc / g.y1
    np.testing.assert_allclose(u[i], 6.0 * y * (1.0 - y), atol=0.01)
    # volume flux through every section equals the inflow
    np.testing.assert_allclose(
        developed.u.sum(axis=1) * g.hy, BASE["u_in"] * BASE["diameter"], rtol=1e-10
    )


def test_pressure_gradient_matches_poiseuille(developed):
    g = developed.grid
    p = developed.kinematic_pressure() * BASE["rho"]
    x = g.xc
    far = (x > 0.6) & (x < 0.95)
    slope = np.polyfit(x[far], p[far].mean(axis=1), 1)[0]
    expected = -12.0 * BASE["mu"] * BASE["u_in"] / BASE["diameter"] ** 2  # -120 Pa/m
    assert slope == pytest.approx(expected, rel=0.02)  # measured -120.4


def test_entry_length_close_to_correlation(developed):
    g = developed.grid
    # centre line: mean of the two u rows either side of y = D/2, at the u faces (x = xe)
    centre = developed.u[:, g.ny // 2 - 1 : g.ny // 2 + 1].mean(axis=1)
    target = 0.99 * centre[int(0.95 * g.nx)]
    k = int(np.flatnonzero(centre >= target)[0])
    x_e = np.interp(target, centre[k - 1 : k + 1], g.xe[k - 1 : k + 1])
    re = BASE["rho"] * BASE["u_in"] * BASE["diameter"] / BASE["mu"]
    # measured L/H = 4.61 against 4.54 from the correlation
    assert x_e / BASE["diameter"] == pytest.approx(durst_entry_length(re), rel=0.1)


def test_case_contract():
    problem = get_problem("tube")
    assert isinstance(problem, Tube)
    case = problem.simulate(BASE, grid=(32, 16), frames=3, frame_dt=0.01, seed=0)
    case.validate()
    vel = case.vector_fields["velocity"]
    assert vel.shape == (3, 32, 16, 2)
    np.testing.assert_allclose(vel[0, ..., 0], BASE["u_in"])  # plug flow at t = 0
    np.testing.assert_allclose(vel[0, ..., 1], 0.0)
    assert np.abs(case.scalar_fields["pressure"][0]).max() == 0.0
    p = case.scalar_fields["pressure"][-1].mean(axis=1)
    # falls linearly to p = 0 at the outflow (reached at the last cell centre: the convective
    # outflow law leaves no pressure gradient across the outflow face in steady flow)
    assert (np.diff(p) < 0).all() and abs(p[-1]) < 0.01 * p[0]
    assert case.mask.all()
    np.testing.assert_allclose(case.coords["y"], (np.arange(16) + 0.5) * 0.1 / 16)
    assert list(case.params) == ["u_in", "rho", "mu", "diameter", "length"]
    bcs = {b.name: b for b in case.boundaries}
    assert bcs["left"].bc_type == "open" and bcs["right"].bc_type == "open"
    assert bcs["bottom"].bc_type == "wall" and bcs["top"].bc_type == "wall"
    np.testing.assert_array_equal(bcs["left"].values, [1.0])
    assert bcs["right"].mask[-1] and bcs["right"].mask.sum() == 1
    # the walls slow the flow next to them while the core speeds up to keep the flux
    assert vel[-1, 16, 0, 0] < 0.8 and vel[-1, 16, 8, 0] > 1.0
    assert case.attrs["reynolds"] == pytest.approx(100.0)


def test_deterministic():
    a = Tube().simulate(BASE, grid=(16, 8), frames=2, frame_dt=0.02)
    b = Tube().simulate(BASE, grid=(16, 8), frames=2, frame_dt=0.02)
    np.testing.assert_array_equal(a.vector_fields["velocity"], b.vector_fields["velocity"])
    np.testing.assert_array_equal(a.scalar_fields["pressure"], b.scalar_fields["pressure"])


@pytest.mark.parametrize(
    ("name", "value"),
    [("mu", -0.1), ("diameter", 0.0), ("length", float("nan")), ("u_in", 0.0), ("rho", -1.0)],
)
def test_bad_parameters_name_the_culprit(name, value):
    with pytest.raises(ValueError, match=repr(name)):
        Tube().simulate({**BASE, name: value}, grid=(8, 8), frames=2, frame_dt=0.01)

"""Lid-driven cavity: Ghia et al. (1982) centre-line profiles, the Case contract, bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from sciflow.solvers import get_problem
from sciflow.solvers.cavity import Cavity

# Ghia, Ghia & Shin (1982), u/U along the vertical centre-line x = 0.5 (REFERENCES.md)
GHIA_Y = np.array(
    [1.0, 0.9766, 0.9688, 0.9609, 0.9531, 0.8516, 0.7344, 0.6172, 0.5, 0.4531, 0.2813, 0.1719,
     0.1016, 0.0703, 0.0625, 0.0547, 0.0]
)  # fmt: skip
GHIA_U = {
    100: [1.0, 0.84123, 0.78871, 0.73722, 0.68717, 0.23151, 0.00332, -0.13641, -0.20581, -0.2109,
          -0.15662, -0.1015, -0.06434, -0.04775, -0.04192, -0.03717, 0.0],
    400: [1.0, 0.75837, 0.68439, 0.61756, 0.55892, 0.29093, 0.16256, 0.02135, -0.11477, -0.17119,
          -0.32726, -0.24299, -0.14612, -0.10338, -0.09266, -0.08186, 0.0],
}  # fmt: skip

BASE = {"U": 10.0, "rho": 1.0, "mu": 1e-3, "height": 0.01, "width": 0.01}  # Re = 100


@pytest.mark.slow
@pytest.mark.parametrize("re", [100, 400])
def test_steady_centreline_matches_ghia(re):
    p = {"U": 1.0, "rho": 1.0, "mu": 1.0 / re, "height": 1.0, "width": 1.0}
    solver = Cavity().make_solver(p, (64, 64))
    assert solver.grid.shape == (64, 64)
    converged, residual = solver.run_steady(tol=1e-4, t_max=80.0)
    assert converged, residual
    g = solver.grid
    # the u faces of column nx/2 sit exactly on x = 0.5; add the wall values at y = 0 and 1
    u_line = solver.u[g.nx // 2]
    assert g.xe[g.nx // 2] == 0.5
    u = np.interp(GHIA_Y, np.r_[0.0, g.yc, 1.0], np.r_[0.0, u_line, 1.0])
    deviation = np.abs(u - np.array(GHIA_U[re])).max()
    # measured: 0.0041 (Re 100), 0.0062 (Re 400); the brief asks for < 0.02
    assert deviation < 0.01


def test_case_contract():
    problem = get_problem("cavity")
    assert isinstance(problem, Cavity)
    case = problem.simulate(BASE, grid=(16, 12), frames=4, frame_dt=2e-4, seed=3)
    case.validate()
    assert case.vector_fields["velocity"].shape == (4, 16, 12, 2)
    assert case.scalar_fields["pressure"].shape == (4, 16, 12)
    np.testing.assert_allclose(case.time, 2e-4 * np.arange(4))
    np.testing.assert_allclose(case.coords["x"], (np.arange(16) + 0.5) * 0.01 / 16)
    np.testing.assert_allclose(case.coords["y"], (np.arange(12) + 0.5) * 0.01 / 12)
    assert list(case.params) == problem.param_names
    assert case.mask.shape == (16, 12) and case.mask.all()
    # frame 0 is one frame after the lid starts from rest: the record of a run that keeps the
    # rest frame, shifted by one
    with_rest = copy.copy(problem)
    with_rest.skip_rest_frame = False
    rest = with_rest.simulate(BASE, grid=(16, 12), frames=5, frame_dt=2e-4, seed=3)
    assert np.abs(rest.vector_fields["velocity"][0]).max() == 0.0
    assert np.abs(rest.scalar_fields["pressure"][0]).max() == 0.0  # impulsive start: stored as 0
    np.testing.assert_allclose(case.vector_fields["velocity"], rest.vector_fields["velocity"][1:], atol=1e-12)
    np.testing.assert_allclose(case.scalar_fields["pressure"], rest.scalar_fields["pressure"][1:], atol=1e-9)
    assert case.attrs["warmup_time"] == pytest.approx(2e-4)
    top = case.vector_fields["velocity"][0, :, -1, 0]
    assert (top > 0).all()
    top = case.vector_fields["velocity"][-1, :, -1, 0]
    assert (top > 0).all() and top.max() < BASE["U"]
    # closed box: pressure has zero mean in every frame
    np.testing.assert_allclose(case.scalar_fields["pressure"].mean(axis=(1, 2)), 0.0, atol=1e-9)
    names = {b.name: b for b in case.boundaries}
    assert set(names) == {"left", "right", "bottom", "top"}
    assert all(b.bc_type == "wall" for b in case.boundaries)
    assert names["top"].associated_dims == ["y"] and names["top"].mask.tolist() == [False] * 11 + [
        True
    ]
    assert (
        names["left"].associated_dims == ["x"]
        and names["left"].mask[0]
        and names["left"].mask.sum() == 1
    )
    np.testing.assert_array_equal(names["top"].values, [BASE["U"]])
    a = case.attrs
    assert a["reynolds"] == pytest.approx(100.0)
    assert a["max_div_internal"] < 1e-9 * a["div_scale"]
    for key in ("solver", "internal_grid", "n_steps", "wall_seconds", "max_div_output", "cfl"):
        assert key in a


def test_internal_grid_refines_with_reynolds_number():
    cavity = Cavity()
    low = cavity.make_solver({**BASE, "mu": 1e-3}, (64, 64))  # Re 100: cell Re 1.6
    high = cavity.make_solver({**BASE, "mu": 1e-4}, (64, 64))  # Re 1000: cell Re 15.6
    wide = cavity.make_solver({**BASE, "mu": 2e-4, "width": 0.04}, (64, 64))  # hx = 4 hy
    assert low.grid.shape == (64, 64)
    assert high.grid.shape == (128, 128)
    assert wide.grid.shape == (256, 64)


def test_deterministic():
    a = Cavity().simulate(BASE, grid=(12, 12), frames=3, frame_dt=1e-4, seed=0)
    b = Cavity().simulate(BASE, grid=(12, 12), frames=3, frame_dt=1e-4, seed=0)
    np.testing.assert_array_equal(a.vector_fields["velocity"], b.vector_fields["velocity"])
    np.testing.assert_array_equal(a.scalar_fields["pressure"], b.scalar_fields["pressure"])


@pytest.mark.parametrize(
    ("name", "value"),
    [("mu", -1e-3), ("mu", 0.0), ("width", 0.0), ("height", -0.01), ("U", float("nan")),
     ("rho", float("inf")), ("U", "fast")],
)  # fmt: skip
def test_bad_parameters_name_the_culprit(name, value):
    with pytest.raises(ValueError, match=repr(name)):
        Cavity().simulate({**BASE, name: value}, grid=(8, 8), frames=2, frame_dt=1e-4)


def test_missing_unknown_parameters_and_bad_frames():
    params = dict(BASE)
    del params["rho"]
    with pytest.raises(ValueError, match="'rho'"):
        Cavity().simulate(params, grid=(8, 8), frames=2, frame_dt=1e-4)
    with pytest.raises(ValueError, match="nu_typo"):
        Cavity().simulate({**BASE, "nu_typo": 1.0}, grid=(8, 8), frames=2, frame_dt=1e-4)
    with pytest.raises(ValueError, match="frames"):
        Cavity().simulate(BASE, grid=(8, 8), frames=0, frame_dt=1e-4)
    with pytest.raises(ValueError, match="frame_dt"):
        Cavity().simulate(BASE, grid=(8, 8), frames=2, frame_dt=-1.0)
    with pytest.raises(ValueError, match="grid"):
        Cavity().simulate(BASE, grid=(8, 8, 8), frames=2, frame_dt=1e-4)


def test_reynolds_number_outside_validated_range_warns():
    with pytest.warns(UserWarning, match="outside the validated range"):
        case = Cavity().simulate({**BASE, "mu": 2e-5}, grid=(8, 8), frames=2, frame_dt=1e-6)
    assert case.attrs["reynolds"] == pytest.approx(5000.0)
    assert case.attrs["in_validated_range"] is False
    assert case.attrs["internal_grid"] == [32, 32]  # refinement capped at max_refine = 4

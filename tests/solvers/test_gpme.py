"""GPME (heat, porous medium, Stefan): exact cell averages and totals, the finite-volume solver's
convergence to the exact solutions and its exact conservation, and generation from the cards."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from sciflow.data.card import load_card
from sciflow.solvers import get_problem
from sciflow.solvers.gpme import Heat, PorousMedium, PorousMediumFV, Stefan
from sciflow.solvers.gpme_exact import (
    pme_cell_average,
    pme_mass,
    pme_point,
    stefan_alpha,
    stefan_cell_average,
    stefan_mass,
    stefan_point,
)
from sciflow.solvers.gpme_fv import cell_edges, solve_gpme
from sciflow.solvers.sweep import plan, run_job


def _quad_average(f, edges, n=2000):
    """Cell averages of ``f`` by a fine midpoint rule."""
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        x = a + (np.arange(n) + 0.5) * (b - a) / n
        out.append(f(x).mean())
    return np.array(out)


def test_exact_cell_averages_and_totals():
    e = cell_edges(1.0, 32)
    for m in (1.0, 2.5, 6.0):
        np.testing.assert_allclose(pme_cell_average(e, 0.6, m), _quad_average(lambda x, m=m: pme_point(x, 0.6, m), e),
                                   atol=2e-4)
        assert pme_cell_average(e, 0.6, m).sum() / 32 == pytest.approx(pme_mass(0.6, m), rel=1e-13)
    for us in (0.55, 0.7):
        np.testing.assert_allclose(stefan_cell_average(e, 0.08, us),
                                   _quad_average(lambda x, us=us: stefan_point(x, 0.08, us), e), atol=2e-4)
        assert stefan_cell_average(e, 0.08, us).sum() / 32 == pytest.approx(stefan_mass(0.08, us), rel=1e-13)
    # the Stefan front constant solves (1 - u*) exp(-a^2) = sqrt(pi) u* a erf(a)
    for us in (0.55, 0.6, 0.7):
        a = float(stefan_alpha(us))
        assert (1 - us) * math.exp(-a * a) == pytest.approx(math.sqrt(math.pi) * us * a * math.erf(a), rel=1e-12)
    h = Heat().exact(cell_edges(2 * math.pi, 64), 0.3, {"k": 2.0})
    assert abs(h.sum()) < 1e-13 and h.max() == pytest.approx(math.exp(-0.6), rel=2e-3)


def _fv_error(problem, p, n, t):
    edges = cell_edges(problem.length, n)
    u, inflow, _ = solve_gpme(lambda v: problem.diffusivity(v, p), problem.exact(edges, 0.0, p)[None],
                              problem.length, lambda s: problem.boundary(s, p)[0],
                              lambda s: problem.boundary(s, p)[1], np.array([0.0, t]))
    return np.abs(u[0, -1] - problem.exact(edges, t, p)).mean(), u, inflow


@pytest.mark.slow
def test_fv_solver_converges_to_the_exact_porous_medium_solution():
    """L1 error of the cell averages against the exact ones: second order where the solution is
    Lipschitz (m = 1), and at least 1.1 for m = 2 (1.16, 1.30 measured from 16 to 64 cells; the
    asymptotic order at a front u ~ (t - x)^(1/m) is 1 + 1/m)."""
    for m, order in ((1.0, 1.9), (2.0, 1.1)):
        errors = [_fv_error(PorousMedium(), {"m": m}, n, 0.4)[0] for n in (16, 32, 64)]
        observed = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
        assert observed.min() > order, (m, errors, observed)
    errors = [_fv_error(Heat(), {"k": 2.0}, n, 0.3)[0] for n in (16, 32, 64)]
    assert np.log2(errors[0] / errors[1]) > 1.95 and np.log2(errors[1] / errors[2]) > 1.95


def test_fv_solver_conserves_exactly():
    """The total changes by exactly what crossed the ends, whatever the resolution; the
    accumulated inflow approaches the exact one."""
    for problem, p, t in ((PorousMedium(), {"m": 3.0}, 0.3), (Stefan(), {"u_star": 0.6}, 0.02)):
        _, u, inflow = _fv_error(problem, p, 32, t)
        h = problem.length / 32
        assert abs(u[0, -1].sum() * h - u[0, 0].sum() * h - inflow[0, -1]) < 1e-14
        exact_total = pme_mass(t, 3.0) if isinstance(problem, PorousMedium) else stefan_mass(t, 0.6)
        assert inflow[0, -1] == pytest.approx(exact_total, rel=0.1)  # 32 cells, front 10 cells in


def test_fv_stefan_front_stays_behind_u_star():
    p = {"u_star": 0.6}
    err, u, _ = _fv_error(Stefan(), p, 64, 0.05)
    assert err < 0.02 and u.min() >= -1e-12 and u.max() <= 1 + 1e-12


def test_problems_simulate_cases_and_refuse_bad_parameters():
    case = get_problem("pme").simulate({"m": 2.0}, grid=(16,), frames=3, frame_dt=0.1)
    assert case.scalar_fields["u"].shape == (3, 16) and list(case.coords) == ["x"]
    fv = PorousMediumFV().simulate({"m": 2.0}, grid=(16,), frames=3, frame_dt=0.1)
    assert np.abs(fv.scalar_fields["u"] - case.scalar_fields["u"]).max() < 0.05
    with pytest.raises(ValueError, match="m must be >= 1"):
        PorousMedium().simulate({"m": 0.5}, grid=(16,), frames=2, frame_dt=0.1)
    with pytest.raises(ValueError, match="u_star"):
        Stefan().simulate({"u_star": 1.2}, grid=(16,), frames=2, frame_dt=0.1)
    with pytest.raises(ValueError, match="params must be exactly"):
        Heat().simulate({"m": 1.0}, grid=(16,), frames=2, frame_dt=0.1)


@pytest.mark.parametrize("name", ["heat", "pme", "stefan"])
def test_cards_generate_well_files(name, tmp_path):
    card = load_card(name)
    job = plan(card, n=3, root=tmp_path)[0]
    path, _ = run_job(card, job)
    with h5py.File(path) as f:
        u = f["t0_fields/u"][()]
        assert u.shape == (len(job.cases), card.frames["train"], card.grid[0])
        assert np.isfinite(u).all()

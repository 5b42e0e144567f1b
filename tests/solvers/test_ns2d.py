"""MAC projection core: closed-form flows, projection, fast Poisson solvers, fluxes, resampling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sciflow.solvers.ns2d import NS2D, SCHEMES, advective_flux
from sciflow.solvers.ns2d_bc import (
    Boundaries,
    Inflow,
    Outflow,
    Periodic,
    Wall,
    face_roles,
    pad_u,
    pad_v,
)
from sciflow.solvers.ns2d_grid import CellResampler, StaggeredGrid, circle_solid, overlap_matrix
from sciflow.solvers.ns2d_output import central_divergence

PERIODIC = Boundaries(Periodic(), Periodic(), Periodic(), Periodic())
CHANNEL = Boundaries(Inflow(1.0), Outflow(), Wall(), Wall())

BOUNDARY_SETS = [
    Boundaries(Wall(), Wall(), Wall(), Wall(1.0)),
    CHANNEL,
    Boundaries(Outflow(), Inflow(lambda y: 1.0 + y), Wall(-0.5), Outflow()),
    Boundaries(Periodic(), Periodic(), Wall(), Wall(1.0)),
    PERIODIC,
    Boundaries(Inflow(1.0), Outflow(), Periodic(), Periodic()),
]


def _taylor_green(n: int, nu: float, t_end: float, scheme: str) -> tuple[float, float]:
    """Max errors of velocity and pressure of the decaying Taylor-Green vortex on ``n x n``."""
    L = 2.0 * math.pi
    g = StaggeredGrid(0.0, L, 0.0, L, n, n)
    s = NS2D(g, PERIODIC, nu, scheme=scheme)
    Xu, Yu = np.meshgrid(g.xe, g.yc, indexing="ij")
    Xv, Yv = np.meshgrid(g.xc, g.ye, indexing="ij")
    s.set_velocity(np.sin(Xu) * np.cos(Yu), -np.cos(Xv) * np.sin(Yv))
    s.advance(t_end)
    F = math.exp(-2.0 * nu * t_end)
    err_u = max(
        np.abs(s.u - F * np.sin(Xu) * np.cos(Yu)).max(),
        np.abs(s.v + F * np.cos(Xv) * np.sin(Yv)).max(),
    )
    X, Y = np.meshgrid(g.xc, g.yc, indexing="ij")
    p_exact = 0.25 * (np.cos(2 * X) + np.cos(2 * Y)) * F**2
    p = s.kinematic_pressure()
    err_p = np.abs((p - p.mean()) - p_exact).max()
    return float(err_u), float(err_p)


@pytest.mark.parametrize("scheme", SCHEMES[:4])
def test_taylor_green_converges(scheme):
    # velocity error 16 -> 32 cells: 7.9x (quick), 3.9x (central), 5.8x (koren), 5.2x (vanleer);
    # the limiters clip the extrema on coarse grids, so their order shows only with resolution
    e16, p16 = _taylor_green(16, 0.05, 1.0, scheme)
    e32, p32 = _taylor_green(32, 0.05, 1.0, scheme)
    assert e32 < 0.003
    assert e16 / e32 > 3.5
    assert p32 < 0.004 and p16 / p32 > 3.0  # the pressure is solved at the frame time itself


def test_couette_steady_state_is_linear():
    # from rest, the slowest mode decays like exp(-pi^2 nu t): 1e-13 by t = 3
    g = StaggeredGrid(0.0, 1.0, 0.0, 1.0, 4, 8)
    s = NS2D(g, Boundaries(Periodic(), Periodic(), Wall(), Wall(speed=2.0)), nu=1.0)
    s.advance(3.0)
    np.testing.assert_allclose(s.u, np.broadcast_to(2.0 * g.yc, s.u.shape), atol=1e-8)
    np.testing.assert_allclose(s.v, 0.0, atol=1e-10)


def test_plug_flow_is_steady_without_walls():
    # uniform inflow, outflow, periodic in y: u = 1 everywhere is an exact steady solution
    g = StaggeredGrid(0.0, 2.0, 0.0, 1.0, 12, 8)
    s = NS2D(g, Boundaries(Inflow(1.0), Outflow(), Periodic(), Periodic()), nu=0.01)
    s.set_velocity(np.ones((13, 8)), np.zeros((12, 9)))
    s.advance(0.5)
    np.testing.assert_allclose(s.u, 1.0, atol=1e-12)
    np.testing.assert_allclose(s.kinematic_pressure(), 0.0, atol=1e-10)


@pytest.mark.parametrize("k", range(len(BOUNDARY_SETS)))
@pytest.mark.parametrize("with_solid", [False, True])
def test_projection_is_divergence_free_and_fast_solvers_match_lu(k, with_solid):
    bcs = BOUNDARY_SETS[k]
    g = StaggeredGrid(0.0, 2.0, 0.0, 1.0, 20, 12)
    solid = circle_solid(g, 0.7, 0.45, 0.3) if with_solid else None
    fast = NS2D(g, bcs, 0.01, solid=solid)
    lu = NS2D(g, bcs, 0.01, solid=solid, pressure_method="lu")
    rng = np.random.default_rng(k)
    q = rng.standard_normal(fast.roles.nq)
    fast._constrain(q)
    q_lu = q.copy()
    fast.pressure.project(q)
    lu.pressure.project(q_lu)
    assert np.abs(fast.pressure.divergence(q)).max() < 1e-10
    np.testing.assert_allclose(q, q_lu, atol=1e-10)
    np.testing.assert_array_equal(q[fast.roles.fixed], fast.roles.fixed_values)
    # a second projection changes nothing
    again = q.copy()
    fast.pressure.project(again)
    np.testing.assert_allclose(again, q, atol=1e-10)
    expected = (
        "lu" if with_solid and not bcs.has_outflow() else ("capacitance" if with_solid else "box")
    )
    assert fast.pressure.method == expected


def test_solid_faces_stay_at_rest_and_mask_shape_is_checked():
    g = StaggeredGrid(0.0, 2.0, 0.0, 1.0, 40, 20)
    solid = circle_solid(g, 0.6, 0.5, 0.3)
    s = NS2D(g, CHANNEL, 0.01, solid=solid)
    s.advance(0.2)
    uv = s.cell_velocity()
    assert np.abs(uv[solid]).max() == 0.0
    assert np.abs(s.divergence()).max() < 1e-10
    with pytest.raises(ValueError, match="solid mask"):
        NS2D(g, CHANNEL, 0.01, solid=np.zeros((3, 3), bool))


def test_boundary_ghosts_put_the_prescribed_values_on_the_sides():
    bcs = Boundaries(Wall(speed=0.3), Outflow(), Wall(), Wall(speed=2.0))
    rng = np.random.default_rng(0)
    u = rng.standard_normal((6, 4))
    v = rng.standard_normal((5, 5))
    U, V = pad_u(u, bcs), pad_v(v, bcs)
    # tangential: the mean of ghost and first interior value is the wall speed
    np.testing.assert_allclose(0.5 * (U[2:-2, -2] + U[2:-2, -3]), 2.0)
    np.testing.assert_allclose(0.5 * (U[2:-2, 1] + U[2:-2, 2]), 0.0)
    np.testing.assert_allclose(0.5 * (V[1, 2:-2] + V[2, 2:-2]), 0.3)
    # outflow: zero normal gradient, for both components
    np.testing.assert_array_equal(U[-1, 2:-2], u[-1])
    np.testing.assert_array_equal(V[-1, 2:-2], v[-1])
    P = pad_u(u, PERIODIC)
    np.testing.assert_array_equal(P[1, 2:-2], u[-2])  # face -1 is face n-1 (face n = face 0)
    np.testing.assert_array_equal(P[2:-2, 1], u[:, -1])


def test_face_roles_count_and_values():
    g = StaggeredGrid(0.0, 1.0, 0.0, 1.0, 4, 3)
    roles = face_roles(g, Boundaries(Inflow(lambda y: 2.0 * y), Outflow(), Wall(), Wall()))
    nu = 5 * 3
    assert roles.nq == nu + 4 * 4
    # fixed: 3 inflow u faces + 2 x 4 wall v faces; free: the rest (outflow faces included)
    assert roles.fixed.size == 3 + 8
    assert roles.free.size == roles.nq - roles.fixed.size
    np.testing.assert_allclose(roles.fixed_values[:3], 2.0 * g.yc)
    (out,) = roles.outflow
    np.testing.assert_array_equal(out.faces, 4 * 3 + np.arange(3))


def test_periodic_must_be_paired_and_inflow_needs_outflow():
    with pytest.raises(ValueError, match="both be periodic"):
        Boundaries(Periodic(), Wall(), Wall(), Wall())
    g = StaggeredGrid(0.0, 1.0, 0.0, 1.0, 4, 4)
    with pytest.raises(ValueError, match="net volume flux"):
        NS2D(g, Boundaries(Inflow(1.0), Wall(), Wall(), Wall()), 0.1)


@pytest.mark.parametrize("nu", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_viscosity(nu):
    g = StaggeredGrid(0.0, 1.0, 0.0, 1.0, 4, 4)
    with pytest.raises(ValueError, match="nu"):
        NS2D(g, PERIODIC, nu)


def test_bad_grid_and_options():
    with pytest.raises(ValueError, match="x1"):
        StaggeredGrid(0.0, 0.0, 0.0, 1.0, 4, 4)
    with pytest.raises(ValueError, match="y0"):
        StaggeredGrid(0.0, 1.0, float("nan"), 1.0, 4, 4)
    with pytest.raises(ValueError, match="ny"):
        StaggeredGrid(0.0, 1.0, 0.0, 1.0, 4, 1)
    g = StaggeredGrid(0.0, 1.0, 0.0, 1.0, 4, 4)
    with pytest.raises(ValueError, match="scheme"):
        NS2D(g, PERIODIC, 0.1, scheme="weno")
    with pytest.raises(ValueError, match="set_velocity"):
        NS2D(g, PERIODIC, 0.1).set_velocity(np.zeros((4, 4)), np.zeros((4, 5)))


def test_advance_lands_on_target_and_respects_cfl():
    g = StaggeredGrid(0.0, 1.0, 0.0, 1.0, 16, 16)
    s = NS2D(g, Boundaries(Wall(), Wall(), Wall(), Wall(1.0)), 1e-3, cfl=0.5)
    dts = []
    s.advance(0.3, lambda solver: dts.append(solver.t))
    assert s.t == 0.3
    steps = np.diff([0.0, *dts])
    assert steps.max() <= 0.5 * g.hx / 1.0 * (1 + 1e-9)  # lid speed 1 sets the first steps


@pytest.mark.parametrize("scheme", SCHEMES)
def test_flux_matches_pointwise_limiter_formulas(scheme):
    rng = np.random.default_rng(1)
    qm1, q0, q1, q2, a = rng.standard_normal((5, 300))
    phi = {
        "koren": lambda r: max(0.0, min(2 * r, (1 + 2 * r) / 3, 2.0)),
        "vanleer": lambda r: (r + abs(r)) / (1 + abs(r)),
        "quick": lambda r: (3 + r) / 4,
        "central": lambda r: 1.0,
        "upwind": lambda r: 0.0,
    }[scheme]
    expected = []
    for k in range(a.size):
        up, far, down = (q0[k], qm1[k], q1[k]) if a[k] >= 0 else (q1[k], q2[k], q0[k])
        d = down - up
        expected.append(a[k] * (up + 0.5 * phi((up - far) / d) * d))
    np.testing.assert_allclose(advective_flux(qm1, q0, q1, q2, a, scheme), expected, atol=1e-12)


def test_flux_exact_on_polynomials():
    x = np.array([-1.0, 0.0, 1.0, 2.0])  # nodes; the face sits at 0.5
    a = np.array([1.0, -1.0])
    for scheme in ("quick", "central", "koren", "vanleer"):
        q = 3.0 + 2.0 * x  # linear data: every scheme but upwind is exact
        np.testing.assert_allclose(advective_flux(*[np.full(2, c) for c in q], a, scheme), a * 4.0)
    q = x**2  # QUICK is exact on quadratics
    np.testing.assert_allclose(advective_flux(*[np.full(2, c) for c in q], a, "quick"), a * 0.25)


@pytest.mark.parametrize("scheme", ["koren", "vanleer"])
def test_limited_flux_is_finite_where_slopes_disagree(scheme):
    # a wall (0) next to a unit inflow: upwind slope s = -1 with d = 0; van Leer's old
    # denominator s + d + 1 was 0 there and gave NaN (dam cases at u_in = 1 m/s)
    qm1, q0, q1, q2 = (np.array([v, v]) for v in (1.0, 0.0, 0.0, 1.0))
    flux = advective_flux(qm1, q0, q1, q2, np.array([1.0, -1.0]), scheme)
    np.testing.assert_array_equal(flux, [0.0, 0.0])  # limited to first order: the upwind 0


def _suction_channel(total_pressure: bool) -> NS2D:
    """A 4 x 1 periodic strip sucking fluid out of its right side at 1 m/s (a prescribed
    outward inflow), so it is drawn in through the open left side: plug flow."""
    g = StaggeredGrid(0.0, 4.0, 0.0, 1.0, 64, 16)
    bcs = Boundaries(
        Outflow(backflow_total_pressure=total_pressure), Inflow(-1.0), Periodic(), Periodic()
    )
    return NS2D(g, bcs, nu=0.05)


def test_backflow_total_pressure_adds_the_bernoulli_drop_only_on_reversed_faces():
    s = _suction_channel(True)
    side = s.roles.outflow[0]
    assert side.sign == -1.0 and side.total_pressure
    q = np.zeros(s.roles.nq)
    q[side.faces] = np.linspace(-0.5, 1.0, side.faces.size)  # outward (< 0) at the bottom only
    q[side.tangential.ravel()] = 0.3  # neighbouring cells share a tangential face
    before = q.copy()
    s.apply_backflow_pressure(q, 0.01)
    qn = before[side.faces]
    # outward flow (qn < 0 on the left side) is left alone; reversed faces gain
    # sign * dt |u|^2 / h = -0.01 (qn^2 + 0.3^2) / hx, i.e. are pushed back outwards
    expected = np.where(qn > 0.0, qn - 0.01 * (qn**2 + 0.09) / s.grid.hx, qn)
    np.testing.assert_allclose(q[side.faces], expected, rtol=1e-12)
    assert np.array_equal(np.delete(q, side.faces), np.delete(before, side.faces))
    off = _suction_channel(False)
    q = before.copy()
    off.apply_backflow_pressure(q, 0.01)
    assert np.array_equal(q, before)


def test_backflow_total_pressure_gives_bernoulli_at_the_open_side():
    # fluid drawn from a still ambient at 1 m/s: its static pressure at the open side is
    # -|u|^2 / 2 (total pressure 0), where a static-pressure side would hold 0
    pressure = {}
    for total in (False, True):
        s = _suction_channel(total)
        s.advance(0.5)
        np.testing.assert_allclose(s.u, 1.0, atol=1e-12)  # drawn in uniformly
        pressure[total] = s.kinematic_pressure()
    np.testing.assert_allclose(pressure[False], 0.0, atol=1e-12)
    np.testing.assert_allclose(pressure[True], -0.5, atol=1e-9)


def test_resampler_conserves_integrals_and_averages_blocks():
    fine = StaggeredGrid(0.0, 2.0, -1.0, 1.0, 12, 10)
    coarse = StaggeredGrid(0.0, 2.0, -1.0, 1.0, 5, 4)  # non-integer ratios
    r = CellResampler.between(fine, coarse)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 12, 10))
    out = r(a)
    assert out.shape == (3, 5, 4)
    np.testing.assert_allclose(
        out.sum(axis=(1, 2)) * coarse.hx * coarse.hy, a.sum(axis=(1, 2)) * fine.hx * fine.hy
    )
    np.testing.assert_allclose(r(np.full((12, 10), 7.0)), 7.0)
    block = CellResampler.between(fine, StaggeredGrid(0.0, 2.0, -1.0, 1.0, 6, 5))
    np.testing.assert_allclose(block(a[0]), a[0].reshape(6, 2, 5, 2).mean(axis=(1, 3)))
    np.testing.assert_allclose(overlap_matrix(fine.xe, coarse.xe).sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="resampler"):
        r(np.zeros((4, 4)))


def test_central_divergence_of_a_linear_field_and_masking():
    g = StaggeredGrid(0.0, 1.0, 0.0, 2.0, 6, 5)
    X, Y = np.meshgrid(g.xc, g.yc, indexing="ij")
    uv = np.stack([3.0 * X, -1.0 * Y], axis=-1)
    div = central_divergence(uv, g.hx, g.hy)
    np.testing.assert_allclose(div[1:-1, 1:-1], 2.0)
    assert np.isnan(div[0]).all() and np.isnan(div[:, -1]).all()
    fluid = np.ones((6, 5), bool)
    fluid[3, 2] = False
    div = central_divergence(uv, g.hx, g.hy, fluid)
    assert np.isnan(div[2, 2]) and np.isnan(div[3, 2]) and np.isfinite(div[1, 2])

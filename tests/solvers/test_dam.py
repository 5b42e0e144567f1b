"""Free surface with gravity: THINC volume of fluid, the two-phase solver (Martin & Moyce dam
break, hydrostatics, single-phase limit, split vs exact projection) and the dam problem."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sciflow.solvers import get_problem
from sciflow.solvers.dam import Dam, barrier_solid
from sciflow.solvers.ns2d import NS2D
from sciflow.solvers.ns2d_bc import Boundaries, Inflow, Outflow, Wall, face_roles
from sciflow.solvers.ns2d_grid import StaggeredGrid
from sciflow.solvers.ns2d_twophase import Fluid, TwoPhaseNS2D
from sciflow.solvers.ns2d_vof import VolumeOfFluid, rectangle_fraction, thinc_outflow

BASE = {"u_in": 1.0, "rho": 100.0, "mu": 0.1, "barrier_height": 0.1, "barrier_width": 0.05}
WATER, AIR = Fluid(1000.0, 1e-3), Fluid(10.0, 1e-5)  # density ratio 100
CLOSED = Boundaries(Wall(), Wall(), Wall(), Wall())

# Martin & Moyce (1952), column of width a and height 2a: (T = t sqrt(2 g / a), Z = x / a)
MARTIN_MOYCE = [
    (0.41, 1.11), (0.84, 1.22), (1.19, 1.44), (1.43, 1.67), (1.63, 1.89), (1.83, 2.11),
    (1.98, 2.33), (2.20, 2.56), (2.32, 2.78), (2.51, 3.00),
]  # fmt: skip


# -- THINC / VOF -------------------------------------------------------------------------------


def test_thinc_integral_over_the_cell_is_the_cell_average():
    a = np.array([1e-3, 0.2, 0.5, 0.8, 0.999])
    for am, ap in ((0.0, 1.0), (1.0, 0.0)):
        full, _ = thinc_outflow(a, np.full(5, am), np.full(5, ap), np.ones(5), np.zeros(5), 3.5)
        np.testing.assert_allclose(full, a, rtol=1e-12)
        # liquid on the high side leaves the high face first: more than the average share
        hi, lo = thinc_outflow(a, np.full(5, am), np.full(5, ap), np.full(5, 0.3), np.full(5, 0.3), 3.5)
        assert ((hi > 0.3 * a) == (ap > am)).all() and ((lo < 0.3 * a) == (ap > am)).all()
        assert (hi >= 0).all() and (hi <= 0.3).all() and (lo >= 0).all() and (lo <= 0.3).all()


def test_thinc_falls_back_to_upwind_off_the_interface():
    a = np.array([0.0, 1.0, 0.4])
    hi, lo = thinc_outflow(a, np.array([0.0, 0.0, 0.9]), np.array([1.0, 1.0, 0.9]), np.full(3, 0.25), np.full(3, 0.5), 3.5)
    np.testing.assert_allclose(hi, 0.25 * a)  # empty, full and non-monotone cells
    np.testing.assert_allclose(lo, 0.5 * a)


def test_vof_translates_a_slug_sharply_and_conserves_volume():
    n, dt = 64, 0.4 / 64  # Courant number 0.4
    vof = VolumeOfFluid((n, 2), (1.0 / n, 1.0), inflow_fraction={"left": 1.0})
    alpha = np.zeros((n, 2))
    alpha[:8] = 1.0
    u, v = np.ones((n + 1, 2)), np.zeros((n, 3))
    for _ in range(60):
        alpha = vof.advect(alpha, u, v, dt)
    # front at 8 / 64 + 60 * 0.4 / 64 = 32 / 64; the tanh profile spreads it over ~4 cells
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0
    np.testing.assert_allclose(alpha[:29], 1.0, atol=1e-12)
    np.testing.assert_allclose(alpha[35:], 0.0, atol=1e-7)  # the tanh tail
    k = int(np.flatnonzero(alpha[:, 0] >= 0.5).max())
    x_half = (k + 0.5 + (alpha[k, 0] - 0.5) / (alpha[k, 0] - alpha[k + 1, 0])) / n
    assert x_half == pytest.approx(0.5, abs=0.5 / n)
    area = 1.0 / n
    assert alpha.sum() * area == pytest.approx(2 * 32 / 64, rel=1e-12)
    assert vof.boundary_volume.left == pytest.approx(60 * 0.4 / 64 * 2, rel=1e-12)


def test_vof_in_a_rotating_box_stays_bounded_and_conserves_volume():
    n = 40
    g = StaggeredGrid(0.0, 1.0, 0.0, 1.0, n, n)
    # solid-body-like vortex from a stream function vanishing on the walls: div-free faces
    psi = np.sin(np.pi * g.xe)[:, None] ** 2 * np.sin(np.pi * g.ye)[None, :] ** 2 / np.pi
    u = (psi[:, 1:] - psi[:, :-1]) / g.hy
    v = -(psi[1:, :] - psi[:-1, :]) / g.hx
    alpha = rectangle_fraction(g.xe, g.ye, 0.2, 0.55, 0.3, 0.62)
    vof = VolumeOfFluid(g.shape, (g.hx, g.hy))
    v0 = alpha.sum()
    dt = 0.45 * g.hx / max(np.abs(u).max(), np.abs(v).max())
    for _ in range(150):
        alpha = vof.advect(alpha, u, v, dt)
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0
    assert abs(alpha.sum() - v0) < 1e-10 * v0
    assert abs(vof.clipped) < 1e-12
    # the blob keeps a sharp edge: most of the liquid sits in nearly full cells
    assert alpha[alpha > 0.99].sum() > 0.6 * v0


def test_rectangle_fraction_is_exact():
    g = StaggeredGrid(0.0, 1.0, 0.0, 1.0, 4, 4)
    f = rectangle_fraction(g.xe, g.ye, 0.1, 0.6, 0.0, 0.3)
    assert f.sum() * g.hx * g.hy == pytest.approx(0.5 * 0.3)
    assert f[0, 0] == pytest.approx(0.6) and f[2, 1] == pytest.approx(0.4 * 0.2)


def test_vof_bad_input():
    with pytest.raises(ValueError, match="inflow_fraction"):
        VolumeOfFluid((4, 4), (1.0, 1.0), inflow_fraction={"front": 1.0})
    with pytest.raises(ValueError, match="left"):
        VolumeOfFluid((4, 4), (1.0, 1.0), inflow_fraction={"left": 1.5})
    with pytest.raises(ValueError, match="beta"):
        VolumeOfFluid((4, 4), (1.0, 1.0), beta=0.0)


# -- partial inflow (core extension) ------------------------------------------------------------


def test_inflow_span_gives_the_exact_volume_flux():
    g = StaggeredGrid(0.0, 1.0, 0.0, 0.4, 4, 7)  # 0.1 cuts a face
    roles = face_roles(g, Boundaries(Inflow(2.0, span=(0.0, 0.1)), Outflow(), Wall(), Wall()))
    left = np.zeros(roles.nq)
    left[roles.fixed] = roles.fixed_values
    speeds = left[: g.ny]
    assert speeds.sum() * g.hy == pytest.approx(2.0 * 0.1, rel=1e-12)
    assert speeds[0] == pytest.approx(2.0) and 0.0 < speeds[1] < 2.0 and (speeds[2:] == 0).all()
    with pytest.raises(ValueError, match="span"):
        Inflow(1.0, span=(0.2, 0.1))


# -- two-phase solver ---------------------------------------------------------------------------


def _front(solver: TwoPhaseNS2D) -> float:
    """x where the liquid fraction of the bottom row last crosses 1/2 (linear between centres)."""
    row = solver.alpha[:, 0]
    i = int(np.flatnonzero(row >= 0.5).max())
    x = solver.grid.xc
    if i + 1 == row.size:
        return float(x[i])
    return float(x[i] + (row[i] - 0.5) / (row[i] - row[i + 1]) * (x[i + 1] - x[i]))


def martin_moyce(cells_per_a: int) -> list[tuple[float, float, float]]:
    """``(T, Z_reference, Z_simulated)`` of a water column a x 2a (a = 0.1 m) collapsing in a
    closed 5a x 2.5a box with air above (density ratio 100)."""
    a = 0.1
    g = StaggeredGrid(0.0, 5 * a, 0.0, 2.5 * a, 5 * cells_per_a, int(2.5 * cells_per_a))
    s = TwoPhaseNS2D(g, CLOSED, WATER, AIR, rectangle_fraction(g.xe, g.ye, 0.0, a, 0.0, 2 * a))
    scale = math.sqrt(2 * 9.81 / a)
    out = []
    for T, Z in MARTIN_MOYCE:
        s.advance(T / scale)
        out.append((T, Z, _front(s) / a))
    assert abs(s.volume_error()) < 1e-12 * s.volume0
    return out


@pytest.mark.slow
def test_martin_moyce_surge_front():
    # 16 cells per a (80 x 40 cells), density ratio 100. Measured Z at the reference T:
    # 1.08 1.35 1.63 1.84 2.04 2.25 2.43 2.69 2.84 3.08 (reference 1.11 1.22 1.44 1.67 1.89 2.11
    # 2.33 2.56 2.78 3.00). The simulated front leads the measurement by up to 12.9 % at
    # T = 0.8-1.4, as Navier-Stokes solutions of the instantaneous release tend to (the
    # experiment's release took time; refining to 32 cells per a moves the front further ahead);
    # from T = 1.6 on it is within 8 %, and the front speed matches.
    res = martin_moyce(16)
    dev = {T: abs(z - Z) / Z for T, Z, z in res}
    assert max(dev.values()) < 0.15
    assert all(d < 0.10 for T, d in dev.items() if T >= 1.6 or T < 0.5)
    (T0, Z0, z0), (T1, Z1, z1) = res[4], res[-1]  # T = 1.63 and 2.51
    assert (z1 - z0) / (T1 - T0) == pytest.approx((Z1 - Z0) / (T1 - T0), rel=0.10)


def _at_rest(right) -> TwoPhaseNS2D:
    g = StaggeredGrid(0.0, 1.5, 0.0, 0.4, 96, 32)
    solid = barrier_solid(g, 0.1, 0.05)
    level = 0.0937  # below the crest, not on a cell edge
    alpha = rectangle_fraction(g.xe, g.ye, 0.0, 0.5, 0.0, level)
    s = TwoPhaseNS2D(
        g, Boundaries(Wall(), right, Wall(), Wall()), Fluid(100.0, 0.1), Fluid(1.0, 1e-3), alpha,
        solid=solid, dt_max=0.01,
    )  # fmt: skip
    s.advance(1.0)
    return s


@pytest.mark.parametrize(
    "right",
    [Outflow(), Outflow(backflow_total_pressure=True), Wall()],
    ids=["outlet", "outlet-total-pressure", "closed"],
)
def test_liquid_at_rest_stays_at_rest_with_hydrostatic_pressure(right):
    s = _at_rest(right)
    # measured max |u| after 100 steps: 5e-14 m/s (outlet), 8e-11 m/s (closed, pinned LU)
    assert np.abs(s.q).max() < 1e-9
    g, level = s.grid, 0.0937
    p = s.kinematic_pressure() * 100.0
    X, Y = np.meshgrid(g.xc, g.yc, indexing="ij")
    water = (X < 0.5) & (Y < level)
    exact = 9.81 * (0.4 - Y) + np.where(water, 99.0 * 9.81 * (level - Y), 0.0)
    fluid = ~s.solid
    if isinstance(right, Wall):  # a closed box fixes pressure differences only
        exact += (p - exact)[fluid].mean()
    err = np.abs(p - exact)
    interface = (X < 0.5) & (np.abs(Y - level) < g.hy)
    # exact away from the interface row; there within rho g hy / 4 (the smeared density)
    assert err[fluid & ~interface].max() < 0.05
    assert err[fluid].max() < 0.25 * 100.0 * 9.81 * g.hy
    assert abs(s.volume_error()) < 1e-12


def test_single_liquid_reproduces_the_single_phase_core():
    # a full box (alpha = 1) without gravity is the core's problem: same steps, same answer
    g = StaggeredGrid(0.0, 1.0, 0.0, 0.5, 24, 12)
    bcs = Boundaries(Inflow(1.0), Outflow(), Wall(), Wall())
    solid = np.zeros(g.shape, bool)
    solid[8:11, :5] = True
    one = NS2D(g, bcs, 0.01, solid=solid)
    two = TwoPhaseNS2D(
        g, bcs, Fluid(2.0, 0.02), Fluid(1.0, 0.01), np.ones(g.shape), gravity=(0.0, 0.0),
        solid=solid, inflow_fraction={"left": 1.0},
    )  # fmt: skip
    u0 = np.ones((g.nx + 1, g.ny))
    one.set_velocity(u0, np.zeros((g.nx, g.ny + 1)))
    two.set_velocity(u0, np.zeros((g.nx, g.ny + 1)))
    for _ in range(20):
        dt = 0.5 * one.stable_dt()
        one.step(dt)
        two.step(dt)
    np.testing.assert_allclose(two.q, one.q, atol=1e-10)
    np.testing.assert_allclose(two.alpha[~solid], 1.0, atol=1e-14)
    p1 = one.kinematic_pressure() * 2.0
    p2 = two.kinematic_pressure() * 2.0
    np.testing.assert_allclose(p2, p1, atol=1e-8 * np.abs(p1).max())


def test_split_projection_follows_the_exact_one():
    problem = {proj: Dam(internal_grid=(96, 32), projection=proj) for proj in ("split", "exact")}
    run = {}
    for proj, dam in problem.items():
        s = dam.make_solver(BASE)
        s.advance(0.3)
        run[proj] = s
    a, b = run["split"], run["exact"]
    # measured: mean |alpha difference| 0.002, mean |u difference| 0.006 m/s
    assert np.abs(a.alpha - b.alpha).mean() < 0.01
    assert np.abs(a.cell_velocity() - b.cell_velocity()).mean() < 0.02
    for s in (a, b):
        assert np.abs(s.divergence()).max() < 1e-9
        assert abs(s.volume_error()) < 1e-12 * s.volume0


def test_two_phase_bad_input():
    g = StaggeredGrid(0.0, 1.0, 0.0, 1.0, 8, 8)
    ones = np.ones(g.shape)
    with pytest.raises(ValueError, match="density"):
        Fluid(0.0, 1.0)
    with pytest.raises(ValueError, match="alpha"):
        TwoPhaseNS2D(g, CLOSED, WATER, AIR, np.ones((8, 7)))
    with pytest.raises(ValueError, match="alpha"):
        TwoPhaseNS2D(g, CLOSED, WATER, AIR, 1.5 * ones)
    with pytest.raises(ValueError, match="vof_courant"):
        TwoPhaseNS2D(g, CLOSED, WATER, AIR, ones, vof_courant=0.8)
    with pytest.raises(ValueError, match="projection"):
        TwoPhaseNS2D(g, CLOSED, WATER, AIR, ones, projection="cg")
    with pytest.raises(ValueError, match="max_speed"):
        TwoPhaseNS2D(g, CLOSED, WATER, AIR, ones, max_speed=0.0)


def test_blow_up_guard_names_speed_and_time():
    # a collapsing column reaches ~1 m/s within 0.1 s: a 0.2 m/s guard must stop it, loudly
    g = StaggeredGrid(0.0, 0.5, 0.0, 0.25, 20, 10)
    alpha = rectangle_fraction(g.xe, g.ye, 0.0, 0.1, 0.0, 0.2)
    s = TwoPhaseNS2D(g, CLOSED, WATER, AIR, alpha, max_speed=0.2)
    with pytest.raises(FloatingPointError, match=r"face speed .* max_speed=0.2 at t="):
        s.advance(0.2)
    assert 0.0 < s.t < 0.2


# -- the dam problem ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_case():
    dam = Dam(internal_grid=(96, 32))
    return dam.simulate(BASE, grid=(32, 16), frames=4, frame_dt=0.05, seed=0)


def test_dam_case_contract(small_case):
    case = small_case
    assert isinstance(get_problem("dam"), Dam)
    case.validate()
    assert set(case.vector_fields) == {"velocity"}
    assert set(case.scalar_fields) == {"pressure", "volume_fraction"}
    assert case.vector_fields["velocity"].shape == (4, 32, 16, 2)
    assert list(case.params) == ["u_in", "rho", "mu", "barrier_height", "barrier_width"]
    np.testing.assert_allclose(case.time, [0.0, 0.05, 0.1, 0.15])
    alpha = case.scalar_fields["volume_fraction"]
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0
    # t = 0: water behind the barrier up to its crest (0.1 m = 4 output rows), air elsewhere
    x, y = case.coords["x"], case.coords["y"]
    behind = (x < 0.5)[:, None] & (y < 0.1)[None, :]
    np.testing.assert_allclose(alpha[0][behind & case.mask], 1.0)
    np.testing.assert_allclose(alpha[0][~behind], 0.0)
    # barrier (3 internal columns from x = 0.5, 2/3 of output column 11) masked below 0.1
    assert not case.mask[11, 0] and not case.mask[11, 3] and case.mask[11, 4]
    assert case.mask.sum() == case.mask.size - 4
    bcs = {b.name: b for b in case.boundaries}
    assert bcs["left"].bc_type == "open" and bcs["right"].bc_type == "open"
    assert bcs["bottom"].bc_type == "wall" and bcs["top"].bc_type == "wall"
    np.testing.assert_array_equal(bcs["barrier"].mask, ~case.mask)
    # inflow raises the liquid volume by u_in * 0.1 m per second (nothing has left yet)
    a = case.attrs
    assert a["liquid_volume_inflow"] == pytest.approx(0.1 * 0.15, rel=1e-9)
    assert a["liquid_volume_final"] == pytest.approx(a["liquid_volume_initial"] + 0.015, rel=1e-9)
    assert a["volume_error"] < 1e-12 and a["max_div_internal"] < 1e-8
    assert a["reynolds"] == pytest.approx(100.0)
    assert a["barrier_height_used"] == pytest.approx(0.1)
    assert a["barrier_width_used"] == pytest.approx(0.046875)  # 3 cells of 1.5 / 96
    # pressure: about hydrostatic at the reservoir's bottom (rho g h = 98 Pa plus the inflow's
    # stagnation), still air near the outlet
    p = case.scalar_fields["pressure"]
    assert 80.0 < p[1, 4, 0] < 160.0
    assert abs(p[1, -1, -1]) < 1.0
    # the inflow pushes the water in: u > 0 in the inlet rows next to the left side
    assert case.vector_fields["velocity"][1, 0, :2, 0].min() > 0.5


def test_dam_outlet_holds_the_total_pressure_of_backflow():
    # without it, air jets drawn in through the outlet ran away at Re >= 155 (u_in 1.55 m/s)
    solver = Dam(internal_grid=(96, 32)).make_solver(BASE)
    (outlet,) = solver.roles.outflow
    assert outlet.sign == 1.0 and outlet.total_pressure


def test_dam_deterministic(small_case):
    again = Dam(internal_grid=(96, 32)).simulate(BASE, grid=(32, 16), frames=4, frame_dt=0.05)
    for name in ("pressure", "volume_fraction"):
        np.testing.assert_array_equal(again.scalar_fields[name], small_case.scalar_fields[name])
    np.testing.assert_array_equal(
        again.vector_fields["velocity"], small_case.vector_fields["velocity"]
    )


def test_thin_barrier_still_shows_in_the_mask():
    dam = Dam()
    s = dam.make_solver({**BASE, "barrier_width": 0.01})
    mask = dam.output_mask(s, dam.output_grid((64, 64)))
    # one internal column (7.8 mm), a third of an output cell (23.4 mm): still one output column
    assert s.solid.any(axis=1).sum() == 1
    assert (~mask).sum() == 16 and (~mask[21, :16]).all()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("u_in", 0.0),
        ("rho", float("nan")),
        ("mu", -0.1),
        ("barrier_height", 0.4),
        ("barrier_width", 1.0),
        ("barrier_width", 0.0),
    ],
)
def test_dam_bad_parameters_name_the_culprit(name, value):
    with pytest.raises(ValueError, match=repr(name)):
        Dam(internal_grid=(24, 8)).simulate({**BASE, name: value}, grid=(8, 8), frames=2, frame_dt=0.01)


def test_dam_bad_options():
    with pytest.raises(ValueError, match="density_ratio"):
        Dam(density_ratio=0.5)
    with pytest.raises(ValueError, match="internal_grid"):
        Dam(internal_grid=(4, 64))


def test_dam_restarts_with_a_smaller_courant_number(monkeypatch):
    from sciflow.solvers import dam as dam_module

    tried = []

    def fake(problem, params, **kwargs):
        tried.append(problem.cfl)
        if problem.cfl > 0.3:
            raise FloatingPointError("face speed 90 m/s above the blow-up guard")
        return real(problem, params, **kwargs)

    real = dam_module.FlowProblem.simulate
    monkeypatch.setattr(dam_module.FlowProblem, "simulate", fake)
    dam = Dam(internal_grid=(48, 16))
    case = dam.simulate(BASE, grid=(16, 8), frames=2, frame_dt=0.01)
    assert tried == [0.5, 0.25] and dam.cfl == 0.5
    assert case.attrs["cfl"] == 0.25 and case.attrs["restarts"] == 1
    assert "blow-up guard" in case.attrs["restart_reasons"][0]

    monkeypatch.setattr(dam_module.FlowProblem, "simulate", lambda *a, **k: (_ for _ in ()).throw(FloatingPointError("x")))
    with pytest.raises(FloatingPointError, match=r"dam case .*'u_in': 1.0.* every Courant number"):
        dam.simulate(BASE, grid=(16, 8), frames=2, frame_dt=0.01)

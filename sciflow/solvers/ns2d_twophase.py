"""Two immiscible incompressible fluids (a liquid and a gas) with gravity on the MAC core.

    du/dt + (u . grad) u = (1/rho) (-grad p + div(mu (grad u + grad u^T))) + g,    div u = 0,
    rho = alpha rho_l + (1 - alpha) rho_g,    mu = alpha mu_l + (1 - alpha) mu_g,

with the liquid fraction ``alpha`` advected by :class:`~sciflow.solvers.ns2d_vof.VolumeOfFluid`
(THINC, direction-split, volume-conserving). No surface tension.

The solver works with the pressure relative to the still gas, ``p' = p - p_a`` with
``p_a = rho_g g . (x - x_c)`` the hydrostatic pressure of the gas at rest (``x_c`` the box's
top-right corner, where ``p_a = 0``); gravity then acts as buoyancy ``g (1 - rho_g / rho)``. An
outflow side's ``p' = 0`` is so the pressure of still ambient air, not ``p = 0`` along the whole
side, which a gas column under gravity cannot be in balance with (it would be pumped through
the opening).

Reused from the single-phase core (:mod:`ns2d`): the grid, boundary conditions and face roles,
the advection fluxes (QUICK by default), SSP-RK3 with a projection per stage, the constant-
coefficient pressure solvers and the output path. What differs:

- viscous term in stress form with the cell viscosity (corners: harmonic mean of the four
  cells, which keeps the shear stress continuous across an interface and the viscosity seen by
  a gas face near the liquid a gas-like one), divided by the face density (mean of the two
  cells); the viscous step limit uses the largest such viscosity over density of any face;
- buoyancy on every free face; time step also limited by ``dt sqrt(|g| / h) <= cfl / 2`` and by
  the VOF's Courant number per direction (``vof_courant``, at most 1/2);
- per step: the fraction is advected first with the velocity at the start of the step, then
  the momentum stages use the density of the mid-step fraction ``(alpha_n + alpha_n+1) / 2``;
- projection with the variable coefficient ``D (1/rho) G p = D q* / dt``, in one of two ways
  (``projection``):

  ``"split"`` (default; Dodd & Ferrante 2014): ``(1/rho) grad p`` is written as
  ``(1/rho_0) grad p + (1/rho - 1/rho_0) grad p_hat`` with ``rho_0`` the smaller density and
  ``p_hat`` an estimate of ``p'``, so each stage needs one constant-coefficient solve, the
  fast transforms (or capacitance method) the core factorised once per geometry, and the result
  is divergence-free to round-off whatever ``p_hat`` is. ``p_hat`` is the hydrostatic ``p'``
  of the current density columns (integrated down from the top) plus the dynamic part of the
  last stage's pressure, which is recovered cell by cell as
  ``p = p_hat + (rho / rho_0) (p_split - p_hat)`` (exact inside each phase). At rest under
  gravity it is exact, so a still liquid stays still to round-off.

  ``"exact"``: assemble and factorise (sparse LU) the variable-coefficient operator every step:
  about 20x slower on the dam's 192 x 64 grid; kept as the reference the split is tested against.

Pressure returned for output (:meth:`TwoPhaseNS2D.kinematic_pressure`) is always solved exactly
from the current state; it is the physical pressure ``p' + p_a`` divided by the liquid density,
so that, like for the single-phase solver, ``rho_l * kinematic_pressure()`` is in Pa.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from sciflow.solvers.ns2d import _RK3, _VISCOUS_LIMIT, NS2D, _momentum
from sciflow.solvers.ns2d_bc import Boundaries
from sciflow.solvers.ns2d_grid import StaggeredGrid
from sciflow.solvers.ns2d_poisson import SparseLUPoisson
from sciflow.solvers.ns2d_vof import VolumeOfFluid

PROJECTIONS = ("split", "exact")


@dataclass(frozen=True)
class Fluid:
    """Density (kg/m^3) and dynamic viscosity (Pa s) of one phase."""

    density: float
    viscosity: float

    def __post_init__(self) -> None:
        for name in ("density", "viscosity"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"fluid {name} must be finite and > 0, got {value!r}")

    @property
    def kinematic_viscosity(self) -> float:
        return self.viscosity / self.density


def corner_viscosity(mu: np.ndarray) -> np.ndarray:
    """Harmonic mean of the four cells around each corner of ``mu: (nx, ny)`` (edge values
    past the box), ``(nx + 1, ny + 1)``."""
    M = 1.0 / np.pad(mu, 1, mode="edge")
    return 4.0 / (M[:-1, :-1] + M[1:, :-1] + M[:-1, 1:] + M[1:, 1:])


def viscous_stress_divergence(
    U: np.ndarray, V: np.ndarray, mu: np.ndarray, mu_corner: np.ndarray, hx: float, hy: float
) -> tuple[np.ndarray, np.ndarray]:
    """``div(mu (grad u + grad u^T))`` at the u and v faces.

    ``U: (nx + 5, ny + 4)`` and ``V: (nx + 4, ny + 5)``: face velocities padded with two ghost
    layers (:func:`pad_u`, :func:`pad_v`); ``mu: (nx, ny)`` cell viscosity (extended past the
    box by its edge values); ``mu_corner: (nx + 1, ny + 1)`` viscosity at the cell corners
    (:func:`corner_viscosity`). Normal stresses live at cell centres, the shear stress at cell
    corners. Returns ``(fu: (nx + 1, ny), fv: (nx, ny + 1))``; with a uniform ``mu`` this is
    ``mu`` times the core's Laplacian on a divergence-free field.
    """
    M = np.pad(mu, 1, mode="edge")  # (nx + 2, ny + 2): cells -1..nx, -1..ny
    # normal stresses at cells -1..nx (x) and -1..ny (y)
    txx = 2.0 * M[:, 1:-1] * (U[2:-1, 2:-2] - U[1:-2, 2:-2]) / hx
    tyy = 2.0 * M[1:-1, :] * (V[2:-2, 2:-1] - V[2:-2, 1:-2]) / hy
    # shear stress at corners (xe_i, ye_k), i = 0..nx, k = 0..ny
    mc = mu_corner
    dudy = (U[2:-2, 2:-1] - U[2:-2, 1:-2]) / hy
    dvdx = (V[2:-1, 2:-2] - V[1:-2, 2:-2]) / hx
    txy = mc * (dudy + dvdx)
    fu = (txx[1:] - txx[:-1]) / hx + (txy[:, 1:] - txy[:, :-1]) / hy
    fv = (txy[1:] - txy[:-1]) / hx + (tyy[:, 1:] - tyy[:, :-1]) / hy
    return fu, fv


def extend_into_solid(a: np.ndarray, solid: np.ndarray) -> np.ndarray:
    """``a: (nx, ny)`` with each solid cell set to the mean of its fluid 4-neighbours (0 if it
    has none), so averages onto faces and corners next to an obstacle see the fluid's value."""
    if not solid.any():
        return a
    fluid = (~solid).astype(np.float64)
    s = np.zeros_like(a)
    n = np.zeros_like(a)
    af = a * fluid
    s[1:] += af[:-1]
    n[1:] += fluid[:-1]
    s[:-1] += af[1:]
    n[:-1] += fluid[1:]
    s[:, 1:] += af[:, :-1]
    n[:, 1:] += fluid[:, :-1]
    s[:, :-1] += af[:, 1:]
    n[:, :-1] += fluid[:, 1:]
    out = a.copy()
    out[solid] = np.where(n[solid] > 0, s[solid] / np.maximum(n[solid], 1.0), 0.0)
    return out


def _face_mean(c: np.ndarray, axis: int) -> np.ndarray:
    """Cell values ``(nx, ny)`` averaged onto the faces normal to ``axis`` (boundary faces take
    their one cell's value)."""
    c = np.moveaxis(c, axis, 0)
    f = np.empty((c.shape[0] + 1, *c.shape[1:]))
    f[1:-1] = 0.5 * (c[1:] + c[:-1])
    f[0] = c[0]
    f[-1] = c[-1]
    return np.moveaxis(f, 0, axis)


class TwoPhaseNS2D(NS2D):
    """Liquid and gas with a volume-of-fluid interface and gravity on one fixed geometry.

    Args:
        grid, bcs, solid, scheme, dt_max: as for :class:`NS2D` (periodic sides not supported).
        liquid, gas: the two phases.
        alpha: ``(nx, ny)`` initial liquid fraction in [0, 1] (solid cells ignored).
        gravity: ``(gx, gy)`` in m/s^2.
        cfl: advective Courant number of the momentum ``dt (max|u|/hx + max|v|/hy)``.
        vof_courant: largest ``dt max|u| / hx`` (and ``dt max|v| / hy``), at most 0.5 (the VOF
            sweeps need 1/2 per direction).
        projection: ``"split"`` or ``"exact"`` (module docstring).
        inflow_fraction: side -> liquid fraction of fluid entering through it (default 0: gas).
        thinc_beta: interface sharpness of the VOF reconstruction.
        max_speed: blow-up guard: a face speed above it (m/s) raises ``FloatingPointError``
            instead of letting the adaptive step shrink towards zero (default: no guard).

    State beyond :class:`NS2D`: ``alpha: (nx, ny)``, ``vof`` (its boundary-volume bookkeeping),
    ``volume0`` (initial liquid volume, m^2).
    """

    def __init__(
        self,
        grid: StaggeredGrid,
        bcs: Boundaries,
        liquid: Fluid,
        gas: Fluid,
        alpha: np.ndarray,
        *,
        gravity: tuple[float, float] = (0.0, -9.81),
        solid: np.ndarray | None = None,
        scheme: str = "quick",
        cfl: float = 0.5,
        vof_courant: float = 0.45,
        max_speed: float | None = None,
        dt_max: float | None = None,
        projection: str = "split",
        inflow_fraction: Mapping[str, float] | None = None,
        thinc_beta: float = 3.5,
    ) -> None:
        if bcs.periodic_x or bcs.periodic_y:
            raise ValueError("two-phase solver: periodic sides are not supported")
        if not 0.0 < float(vof_courant) <= 0.5:
            raise ValueError(f"vof_courant must be in (0, 0.5] (VOF sweeps), got {vof_courant!r}")
        if projection not in PROJECTIONS:
            raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
        gx, gy = (float(x) for x in gravity)
        if not (math.isfinite(gx) and math.isfinite(gy)):
            raise ValueError(f"gravity must be finite, got {gravity!r}")
        nu_max = max(liquid.kinematic_viscosity, gas.kinematic_viscosity)
        super().__init__(grid, bcs, nu_max, solid=solid, scheme=scheme, cfl=cfl, dt_max=dt_max)
        nx, ny = grid.shape
        alpha = np.asarray(alpha, dtype=np.float64)
        if alpha.shape != (nx, ny):
            raise ValueError(f"alpha: expected shape {(nx, ny)}, found {alpha.shape}")
        if not (np.isfinite(alpha).all() and alpha.min() >= 0.0 and alpha.max() <= 1.0):
            raise ValueError("alpha must hold finite liquid fractions in [0, 1]")
        self.liquid, self.gas, self.gravity = liquid, gas, (gx, gy)
        self.vof_courant = float(vof_courant)
        if max_speed is not None and not (math.isfinite(max_speed) and max_speed > 0.0):
            raise ValueError(f"max_speed must be finite and positive, got {max_speed!r}")
        self.max_speed = max_speed
        self.projection = projection
        self.alpha = np.where(self.solid, 0.0, alpha)
        self.vof = VolumeOfFluid(
            grid.shape,
            (grid.hx, grid.hy),
            solid=self.solid,
            inflow_fraction=inflow_fraction,
            beta=thinc_beta,
        )
        self.volume0 = self.liquid_volume()
        self._rho0 = min(liquid.density, gas.density)
        fluid_cells = np.flatnonzero(~self.solid.ravel())
        self._cells = fluid_cells
        self._closed = not bcs.has_outflow()
        # gauge of the split pressure in a closed box: the top-most, right-most fluid cell
        self._ref = int(fluid_cells[np.argmax((fluid_cells % ny) * (nx + 1) + fluid_cells // ny)])
        nu_ = self.roles.nu
        self._gravity = np.zeros(self.roles.nq)
        self._gravity[:nu_] = gx
        self._gravity[nu_:] = gy
        X, Y = np.meshgrid(grid.xc, grid.yc, indexing="ij")
        # hydrostatic pressure of the still gas, 0 at the top-right corner, (nx * ny,)
        self._p_ambient = (gas.density * (gx * (X - grid.x1) + gy * (Y - grid.y1))).ravel()
        self._set_properties(self.alpha)
        self._p_dyn = np.zeros(nx * ny)  # dynamic part of the last stage's pressure (split)
        self.p = self._hydrostatic() + self._p_dyn  # p' of the last stage, Pa

    # -- properties --------------------------------------------------------------------------

    def _set_properties(self, alpha: np.ndarray) -> None:
        """Densities and viscosities of fraction ``alpha: (nx, ny)`` on cells, faces, corners."""
        g = self.grid
        a = extend_into_solid(alpha, self.solid)
        rl, rg = self.liquid.density, self.gas.density
        ml, mg = self.liquid.viscosity, self.gas.viscosity
        self._rho_c = a * rl + (1.0 - a) * rg
        self._mu_c = a * ml + (1.0 - a) * mg
        self._mu_corner = corner_viscosity(self._mu_c)
        rho_u, rho_v = _face_mean(self._rho_c, 0), _face_mean(self._rho_c, 1)
        self._beta_u, self._beta_v = 1.0 / rho_u, 1.0 / rho_v
        # largest viscosity over density in any face's stencil: the explicit viscous limit
        mc, mx = self._mu_corner, np.pad(self._mu_c, 1, mode="edge")
        nu_u = np.maximum(
            np.maximum(mx[:-1, 1:-1], mx[1:, 1:-1]), np.maximum(mc[:, :-1], mc[:, 1:])
        )
        nu_v = np.maximum(np.maximum(mx[1:-1, :-1], mx[1:-1, 1:]), np.maximum(mc[:-1], mc[1:]))
        self._nu_eff = max(float((nu_u * self._beta_u).max()), float((nu_v * self._beta_v).max()))
        self._beta = np.concatenate([self._beta_u.ravel(), self._beta_v.ravel()])
        self._body = self._gravity * (1.0 - self.gas.density * self._beta)  # buoyancy
        if self._has_solid:
            # no-slip halfway to a face inside a solid (ghost -q), as in the core
            mu_u, mu_v = _face_mean(self._mu_c, 0), _face_mean(self._mu_c, 1)
            self._wall_u = self.roles.solid_wall_u * mu_u * self._beta_u / g.hy**2
            self._wall_v = self.roles.solid_wall_v * mu_v * self._beta_v / g.hx**2

    def _hydrostatic(self) -> np.ndarray:
        """``p'`` of the current density columns at rest, ``(nx * ny,)``: 0 at the top side,
        integrated downwards with the face densities the projection uses (so that
        ``G p' = (rho - rho_g) g`` on vertical faces). Horizontal gravity is not included."""
        g = abs(self.gravity[1])
        rho = self._rho_c - self.gas.density
        ny = rho.shape[1]
        p = np.empty_like(rho)
        p[:, -1] = 0.5 * rho[:, -1] * g * self.grid.hy
        if ny > 1:
            steps = 0.5 * (rho[:, 1:] + rho[:, :-1]) * g * self.grid.hy  # (nx, ny - 1)
            p[:, :-1] = p[:, -1:] + np.cumsum(steps[:, ::-1], axis=1)[:, ::-1]
        if self.gravity[1] > 0.0:
            p = -p
        return p.ravel()

    def _exact_operator(self) -> SparseLUPoisson:
        """Factorised ``D (1/rho) G`` on the fluid cells for the current properties."""
        P = self.pressure
        L = (P.D[self._cells] @ (sp.diags(self._beta) @ P.G)[:, self._cells]).tocsr()
        return SparseLUPoisson(L, self._cells, self.grid.nx * self.grid.ny, pinned=self._closed)

    # -- state -------------------------------------------------------------------------------

    def liquid_volume(self) -> float:
        """Liquid volume (area in 2D, m^2) in the box."""
        return float(self.alpha[~self.solid].sum()) * self.grid.hx * self.grid.hy

    def volume_error(self) -> float:
        """Liquid volume now minus (initial + net inflow so far), m^2: zero up to round-off and
        the clipping of the VOF's fraction excursions."""
        return self.liquid_volume() - self.volume0 - self.vof.boundary_volume.net

    def set_velocity(self, u: np.ndarray, v: np.ndarray, *, project: bool = True) -> None:
        """As :meth:`NS2D.set_velocity`, projecting with the variable density (an impulsive start
        moves the light phase more than the heavy one)."""
        super().set_velocity(u, v, project=False)
        if project:
            self._set_properties(self.alpha)
            phi = self._exact_operator().solve(self.pressure.D @ self.q)
            self.q -= self._beta * (self.pressure.G @ phi)

    def kinematic_pressure(self) -> np.ndarray:
        """Physical pressure over the liquid density at the current time, ``(nx, ny)`` (0 in
        solids): ``D (1/rho) G p' = D rhs(q)`` solved exactly for the current fraction, plus the
        still gas's hydrostatic pressure."""
        self._set_properties(self.alpha)
        p = self._exact_operator().solve(self.pressure_source())
        return self.pressure.to_cells((p + self._p_ambient) / self.liquid.density)

    def stage_pressure(self) -> np.ndarray:
        """Physical pressure of the last Runge-Kutta stage over the liquid density, ``(nx, ny)``."""
        return self.pressure.to_cells((self.p + self._p_ambient) / self.liquid.density)

    # -- one step ----------------------------------------------------------------------------

    def face_forces(self, U: np.ndarray, V: np.ndarray, ru: np.ndarray, rv: np.ndarray) -> None:
        """Advection + viscous stresses / rho + buoyancy at every face (see :meth:`NS2D.face_forces`)."""
        g = self.grid
        ru[...] = _momentum(U, V, g.hx, g.hy, 0.0, self.scheme)
        rv[...] = _momentum(V.T, U.T, g.hy, g.hx, 0.0, self.scheme).T
        fu, fv = viscous_stress_divergence(U, V, self._mu_c, self._mu_corner, g.hx, g.hy)
        ru += fu * self._beta_u + self._body[: ru.size].reshape(ru.shape)
        rv += fv * self._beta_v + self._body[ru.size :].reshape(rv.shape)

    def stable_dt(self) -> float:
        """Largest step allowed by the advective CFL (which also keeps the VOF's per-direction
        Courant number below 1/2), the viscous limit and the gravity wave limit."""
        g = self.grid
        sx, sy = self._boundary_speed
        umax = max(sx, float(np.abs(self.q[: self.roles.nu]).max()))
        vmax = max(sy, float(np.abs(self.q[self.roles.nu :]).max()))
        if self.max_speed is not None and max(umax, vmax) > self.max_speed:
            raise FloatingPointError(
                f"two-phase solver: face speed {max(umax, vmax):.3g} m/s above the blow-up guard "
                f"max_speed={self.max_speed:.3g} at t={self.t:.6g} (step {self.n_steps})"
            )
        adv = umax / g.hx + vmax / g.hy
        visc = self._nu_eff * (1.0 / g.hx**2 + 1.0 / g.hy**2)
        grav = math.sqrt(math.hypot(*self.gravity) / min(g.hx, g.hy))
        vof = self._interface_speed() / self.vof_courant
        dt = 1.0 / max(adv / self.cfl, vof, visc / _VISCOUS_LIMIT, 2.0 * grav / self.cfl, 1e-300)
        return dt if self.dt_max is None else min(dt, self.dt_max)

    def _interface_speed(self) -> float:
        """Largest ``|u| / hx`` or ``|v| / hy`` over faces whose liquid fraction flux can differ
        from a plain copy: faces next to a cell holding an interface (``0 < alpha < 1``) or
        between cells of different fraction. Elsewhere the VOF moves nothing (gas next to
        gas) or moves full cells exactly (liquid next to liquid, at any Courant number)."""
        g = self.grid
        a = self.alpha
        mixed = (a > 1e-9) & (a < 1.0 - 1e-9)
        speed = 0.0
        for axis, h, vel in ((0, g.hx, self.u), (1, g.hy, self.v)):
            lo = [slice(None)] * 2
            hi = [slice(None)] * 2
            lo[axis], hi[axis] = slice(None, -1), slice(1, None)
            lo, hi = tuple(lo), tuple(hi)
            inner = mixed[lo] | mixed[hi] | (np.abs(a[lo] - a[hi]) > 1e-9)
            # boundary faces: the cell inside decides (inflow brings liquid into any cell)
            pad = [(0, 0), (0, 0)]
            pad[axis] = (1, 1)
            active = np.pad(inner, pad, constant_values=True)
            sel = vel[active]
            if sel.size:
                speed = max(speed, float(np.abs(sel).max()) / h)
        return speed

    def _project_split(self, q: np.ndarray, dt_k: float, p_hyd: np.ndarray) -> None:
        P = self.pressure
        beta0 = 1.0 / self._rho0
        p_hat = p_hyd + self._p_dyn
        q -= dt_k * (self._beta - beta0) * (P.G @ p_hat)
        phi = P.project(q)
        p = phi / (beta0 * dt_k)
        if self._closed:  # the constant-coefficient solve fixes no level: keep p_hat's
            p += p_hat[self._ref] - p[self._ref]
        p = p_hat + (self._rho_c.ravel() / self._rho0) * (p - p_hat)
        p *= self.pressure.fluid  # solid cells carry no equation; keep them from drifting
        self.p = p
        self._p_dyn = p - p_hyd

    def step(self, dt: float) -> None:
        """Advance by ``dt``: VOF first, then SSP-RK3 stages at the mid-step density."""
        alpha_old = self.alpha
        self.alpha = self.vof.advect(alpha_old, self.u, self.v, dt)
        self._set_properties(0.5 * (alpha_old + self.alpha))
        exact = self._exact_operator() if self.projection == "exact" else None
        p_hyd = self._hydrostatic() if exact is None else None
        q0 = self.q
        q = q0
        for a, b in _RK3:
            if a:
                q = a * q0 + b * (q + dt * self.rhs(q))
            else:
                q = q + dt * self.rhs(q)
            self.apply_backflow_pressure(q, b * dt)
            if exact is not None:
                phi = exact.solve(self.pressure.D @ q)
                q -= self._beta * (self.pressure.G @ phi)
                self.p = phi / (b * dt)
            else:
                self._project_split(q, b * dt, p_hyd)
        q[self.roles.fixed] = self.roles.fixed_values
        self.q = q
        self.t += dt
        self.n_steps += 1
        if self.n_steps % 64 == 0 and not np.isfinite(q).all():
            raise FloatingPointError(
                f"two-phase ns2d: velocity became non-finite at t={self.t:.6g} (step {self.n_steps})"
            )


__all__ = [
    "PROJECTIONS",
    "Fluid",
    "TwoPhaseNS2D",
    "corner_viscosity",
    "extend_into_solid",
    "viscous_stress_divergence",
]

"""Incompressible 2D Navier-Stokes on a staggered (MAC) grid: the core shared by every flow problem.

    du/dt + (u . grad) u = -grad p + nu lap u,    div u = 0      (p kinematic: pressure / rho)

- Space: MAC grid (:mod:`ns2d_grid`); advection in flux form with face values reconstructed by a
  chosen scheme (``"quick"``, upwind-biased third order, by default: it reproduces Ghia's
  cavity profiles to < 0.01 on 64 x 64 and costs half a limiter; ``"koren"`` and ``"vanleer"``
  TVD limiters where overshoots matter; ``"central"``, ``"upwind"``); second-order central
  viscous term.
- Time: explicit three-stage strong-stability-preserving Runge-Kutta (Shu & Osher), each stage
  projected onto divergence-free fields with the pre-factorised pressure Laplacian
  (:mod:`ns2d_pressure`); adaptive step from the advective CFL and the viscous limit.
- Boundaries (:mod:`ns2d_bc`): walls with a tangential speed, inflow profiles, convective
  outflow with p = 0, periodic sides; obstacles as solid cells (staircase no-slip).

A problem module builds an :class:`NS2D`, advances it, and reads cell-centred velocity and
pressure (see :mod:`ns2d_output` for frames, resampling and diagnostics).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from sciflow.solvers.ns2d_bc import Boundaries, Wall, face_roles, pad_u, pad_v
from sciflow.solvers.ns2d_grid import StaggeredGrid
from sciflow.solvers.ns2d_pressure import PressureSolver

SCHEMES = ("quick", "koren", "vanleer", "central", "upwind")
DEFAULT_CFL = {"quick": 1.0, "koren": 0.6, "vanleer": 0.6, "central": 1.0, "upwind": 1.0}

# SSP-RK3 stages: q_k = a_k q_n + b_k (q_{k-1} + dt R(q_{k-1})), then projection. b_k is the
# fraction of dt by which that stage's pressure gradient acts.
_RK3 = ((0.0, 1.0), (0.75, 0.25), (1.0 / 3.0, 2.0 / 3.0))
# Stability of explicit SSP-RK3 for the central viscous term: dt * nu * 4 (1/hx^2 + 1/hy^2)
# must stay below 2.51 (the real-axis limit); 0.5 here keeps a margin of 20 %.
_VISCOUS_LIMIT = 0.5


def advective_flux(
    qm1: np.ndarray, q0: np.ndarray, q1: np.ndarray, q2: np.ndarray, a: np.ndarray, scheme: str
) -> np.ndarray:
    """Flux ``a * q_face`` through the point midway between nodes ``q0`` and ``q1``.

    ``q_face`` is reconstructed upwind-biased: ``q0 + psi(s+, d) / 2`` for ``a > 0`` and
    ``q1 - psi(s-, d) / 2`` for ``a < 0``, with ``d = q1 - q0`` and the upwind slopes
    ``s+ = q0 - qm1``, ``s- = q2 - q1``; ``psi = phi(s / d) d`` is the limited slope (Koren:
    ``minmod(2 s, (d + 2 s) / 3, 2 d)``; QUICK: ``(3 d + s) / 4``). Both sides are computed and
    blended by ``max(a, 0)`` and ``min(a, 0)``, which is much faster than selecting per element.
    All arrays share one shape.
    """
    if scheme == "central":
        return 0.5 * a * (q0 + q1)
    ap = np.maximum(a, 0.0)
    am = a - ap
    if scheme == "upwind":
        return ap * q0 + am * q1
    if scheme == "quick":
        return ap * (0.75 * q0 + 0.375 * q1 - 0.125 * qm1) + am * (
            0.75 * q1 + 0.375 * q0 - 0.125 * q2
        )
    d = q1 - q0
    if scheme == "koren":
        sd = np.sign(d)
        ad2 = 2.0 * np.abs(d)

        def psi2(s: np.ndarray) -> np.ndarray:  # 2 * minmod(2 s, (d + 2 s) / 3, 2 d)
            m = np.minimum(np.minimum(2.0 * np.abs(s), np.abs(d + 2.0 * s) * (1.0 / 3.0)), ad2)
            return (np.sign(s) + sd) * m

        return ap * (q0 + 0.25 * psi2(q0 - qm1)) + am * (q1 - 0.25 * psi2(q2 - q1))
    if scheme == "vanleer":

        def psi(s: np.ndarray) -> np.ndarray:  # harmonic mean of s and d where they agree
            sd = s * d
            pos = sd > 0.0
            # the denominator is only used where s and d agree (then |s + d| > 0); elsewhere 1,
            # not s + d + 1, which is 0 for e.g. s = -1, d = 0 (a wall next to a unit inflow)
            return 2.0 * sd * pos / np.where(pos, s + d, 1.0)

        return ap * (q0 + 0.5 * psi(q0 - qm1)) + am * (q1 - 0.5 * psi(q2 - q1))
    raise ValueError(f"unknown advection scheme {scheme!r}; known: {SCHEMES}")


def _momentum(
    A: np.ndarray, B: np.ndarray, hn: float, ht: float, nu: float, scheme: str
) -> np.ndarray:
    """Advection + diffusion for the component normal to axis 0.

    ``A``: that component padded, ``(n + 5, m + 4)`` (faces 0..n along axis 0, cells along
    axis 1); ``B``: the other component padded, ``(n + 4, m + 5)``; ``hn``/``ht``: spacing along
    axis 0 / axis 1. Returns ``(n + 1, m)``.
    """
    n1 = A.shape[0] - 4  # n + 1 faces
    m = A.shape[1] - 4
    a = A[2:-2, 2:-2]
    # flux along axis 0 at the cell centres between faces k and k+1, k = -1..n
    c0, c1 = A[1 : n1 + 2, 2:-2], A[2 : n1 + 3, 2:-2]
    vel = 0.5 * (c0 + c1)
    F = advective_flux(A[0 : n1 + 1, 2:-2], c0, c1, A[3 : n1 + 4, 2:-2], vel, scheme)
    # flux along axis 1 at the corners between cells j and j+1, j = -1..m-1, carried by the
    # other component averaged onto the corner
    vel = 0.5 * (B[1 : n1 + 1, 2:-2] + B[2 : n1 + 2, 2:-2])
    Ac = A[2:-2]
    H = advective_flux(
        Ac[:, 0 : m + 1], Ac[:, 1 : m + 2], Ac[:, 2 : m + 3], Ac[:, 3 : m + 4], vel, scheme
    )
    if nu == 0.0:  # advection only (the two-phase solver adds its own viscous stresses)
        return -(F[1:] - F[:-1]) / hn - (H[:, 1:] - H[:, :-1]) / ht
    lap = (A[3:-1, 2:-2] - 2.0 * a + A[1:-3, 2:-2]) / hn**2 + (
        A[2:-2, 3:-1] - 2.0 * a + A[2:-2, 1:-3]
    ) / ht**2
    return nu * lap - (F[1:] - F[:-1]) / hn - (H[:, 1:] - H[:, :-1]) / ht


class NS2D:
    """Projection solver on one fixed geometry.

    Args:
        grid: the MAC grid.
        bcs: condition per side.
        nu: kinematic viscosity (> 0).
        solid: ``(nx, ny)`` bool, True on solid (obstacle) cells; None for none.
        scheme: advection reconstruction, one of :data:`SCHEMES`.
        cfl: advective Courant number ``dt * (max|u|/hx + max|v|/hy)``; None picks the
            scheme's default (:data:`DEFAULT_CFL`: 1.0 for QUICK/central/upwind, measured stable
            on the Taylor-Green vortex and the cylinder wake up to 1.2; 0.6 for the TVD limiters,
            which lose the TVD property and grow wiggles at 1.0).
        dt_max: upper bound on the step (None: none).
        pressure_method: ``"auto"`` (fast transforms where the box allows) or ``"lu"``.

    State: ``q`` (flat face velocities, ``u.ravel()`` then ``v.ravel()``), views ``u: (nx+1, ny)``
    and ``v: (nx, ny+1)``, time ``t``, step count ``n_steps`` and ``phi: (nx * ny,)``, the
    kinematic pressure of the last Runge-Kutta stage (see :meth:`stage_pressure`).
    """

    def __init__(
        self,
        grid: StaggeredGrid,
        bcs: Boundaries,
        nu: float,
        *,
        solid: np.ndarray | None = None,
        scheme: str = "quick",
        cfl: float | None = None,
        dt_max: float | None = None,
        pressure_method: str = "auto",
    ) -> None:
        nu = float(nu)
        if not (math.isfinite(nu) and nu > 0.0):
            raise ValueError(f"viscosity nu must be finite and > 0, got {nu!r}")
        if scheme not in SCHEMES:
            raise ValueError(f"unknown advection scheme {scheme!r}; known: {SCHEMES}")
        cfl = DEFAULT_CFL[scheme] if cfl is None else float(cfl)
        if not (0.0 < cfl <= 1.5):
            raise ValueError(f"cfl must be in (0, 1.5], got {cfl!r}")
        self.grid, self.bcs, self.nu = grid, bcs, nu
        self.scheme, self.cfl, self.dt_max = scheme, cfl, dt_max
        nx, ny = grid.shape
        self.solid = np.zeros((nx, ny), bool) if solid is None else np.asarray(solid, bool).copy()
        self.roles = face_roles(grid, bcs, self.solid)
        self.pressure = PressureSolver.build(grid, bcs, self.roles, self.solid, pressure_method)
        self._free = np.zeros(self.roles.nq)
        self._free[self.roles.free] = 1.0
        self._wall_u = nu * self.roles.solid_wall_u / grid.hy**2
        self._wall_v = nu * self.roles.solid_wall_v / grid.hx**2
        self._has_solid = bool(self.solid.any())
        self._r = np.empty(self.roles.nq)
        self._Pu = np.empty((nx + 5, ny + 4))
        self._Pv = np.empty((nx + 4, ny + 5))
        # speeds the boundaries impose, which the flow may not show yet (fluid at rest at t=0)
        sx = sy = 0.0
        for side, bc in bcs.items():
            along_x = side in ("bottom", "top")
            if isinstance(bc, Wall):
                sx, sy = (max(sx, abs(bc.speed)), sy) if along_x else (sx, max(sy, abs(bc.speed)))
        fixed = np.zeros(self.roles.nq)
        fixed[self.roles.fixed] = self.roles.fixed_values
        sx = max(sx, float(np.abs(fixed[: self.roles.nu]).max(initial=0.0)))
        sy = max(sy, float(np.abs(fixed[self.roles.nu :]).max(initial=0.0)))
        self._boundary_speed = (sx, sy)
        self.q = np.zeros(self.roles.nq)
        self.q[self.roles.fixed] = self.roles.fixed_values
        self.t = 0.0
        self.n_steps = 0
        self.phi = np.zeros(nx * ny)

    # -- state -----------------------------------------------------------------------------

    @property
    def u(self) -> np.ndarray:
        nx, ny = self.grid.shape
        return self.q[: self.roles.nu].reshape(nx + 1, ny)

    @property
    def v(self) -> np.ndarray:
        nx, ny = self.grid.shape
        return self.q[self.roles.nu :].reshape(nx, ny + 1)

    def set_velocity(self, u: np.ndarray, v: np.ndarray, *, project: bool = True) -> None:
        """Set the face velocities ``u: (nx+1, ny)``, ``v: (nx, ny+1)``; boundary and solid faces
        are overwritten by their prescribed values and the field is projected."""
        nx, ny = self.grid.shape
        if u.shape != (nx + 1, ny) or v.shape != (nx, ny + 1):
            raise ValueError(
                f"set_velocity: expected u {(nx + 1, ny)}, v {(nx, ny + 1)}; got {u.shape}, {v.shape}"
            )
        self.q[: self.roles.nu] = u.ravel()
        self.q[self.roles.nu :] = v.ravel()
        self._constrain(self.q)
        if project:
            self.pressure.project(self.q)

    def cell_velocity(self) -> np.ndarray:
        """Velocity averaged to the cell centres, ``(nx, ny, 2)`` (zero in solid cells)."""
        u, v = self.u, self.v
        return np.stack([0.5 * (u[:-1] + u[1:]), 0.5 * (v[:, :-1] + v[:, 1:])], axis=-1)

    def kinematic_pressure(self) -> np.ndarray:
        """Pressure / density at the current time at the cell centres, ``(nx, ny)`` (0 in solids).

        Solved from the current velocity as the potential that keeps ``du/dt`` divergence-free
        (``L p = D rhs(q)``), so it belongs to time ``t`` exactly; the pressure of the last
        Runge-Kutta stage (:meth:`stage_pressure`) lags by about half a step.
        """
        return self.pressure.to_cells(self.pressure.poisson.solve(self.pressure_source()))

    def pressure_source(self) -> np.ndarray:
        """``D`` of the current rates, ``(nx * ny,)``: the right-hand side of the pressure
        equation at time ``t`` (with the side pressure of reversed total-pressure outflow)."""
        r = self.rhs(self.q)
        self.apply_backflow_pressure(self.q, 1.0, out=r)
        return self.pressure.D @ r

    def stage_pressure(self) -> np.ndarray:
        """Pressure / density of the last Runge-Kutta stage, ``(nx, ny)`` (0 in solids): free to
        read every step, first order in time."""
        return self.pressure.to_cells(self.phi)

    def divergence(self) -> np.ndarray:
        """Discrete divergence on the cells, ``(nx, ny)`` (0 in solids)."""
        return self.pressure.to_cells(self.pressure.divergence(self.q))

    # -- one step --------------------------------------------------------------------------

    def _constrain(self, q: np.ndarray) -> None:
        q[self.roles.fixed] = self.roles.fixed_values
        if self.roles.slave.size:
            q[self.roles.slave] = q[self.roles.master]

    def rhs(self, q: np.ndarray) -> np.ndarray:
        """Advection + diffusion at every face, ``(nq,)``; zero on fixed and periodic-copy faces,
        the convective outflow law on outflow faces. The returned array is overwritten by the
        next call."""
        g = self.grid
        nx, ny = g.shape
        nu_ = self.roles.nu
        u = q[:nu_].reshape(nx + 1, ny)
        v = q[nu_:].reshape(nx, ny + 1)
        U = pad_u(u, self.bcs, self._Pu)
        V = pad_v(v, self.bcs, self._Pv)
        r = self._r
        ru = r[:nu_].reshape(nx + 1, ny)
        rv = r[nu_:].reshape(nx, ny + 1)
        self.face_forces(U, V, ru, rv)
        if self._has_solid:
            # no-slip halfway between a face and its neighbour inside a solid: ghost -q
            ru -= self._wall_u * u
            rv -= self._wall_v * v
        r *= self._free
        self.apply_outflow_law(q, r)
        return r

    def face_forces(self, U: np.ndarray, V: np.ndarray, ru: np.ndarray, rv: np.ndarray) -> None:
        """Write the forces per unit mass into ``ru: (nx + 1, ny)`` and ``rv: (nx, ny + 1)`` (views
        of the rhs) from the padded velocities ``U: (nx + 5, ny + 4)``, ``V: (nx + 4, ny + 5)``:
        advection and diffusion here; subclasses with other physics override this alone."""
        g = self.grid
        ru[...] = _momentum(U, V, g.hx, g.hy, self.nu, self.scheme)
        rv[...] = _momentum(V.T, U.T, g.hy, g.hx, self.nu, self.scheme).T

    def apply_outflow_law(self, q: np.ndarray, r: np.ndarray) -> None:
        """Overwrite ``r: (nq,)`` on outflow faces with the convective law ``dq/dt = -c dq/dn``
        (``c`` the mean outflow speed of the side, 0 when it flows in)."""
        for side in self.roles.outflow:
            c = max(0.0, side.sign * float(q[side.faces].mean()))
            r[side.faces] = -c * (q[side.faces] - q[side.inner]) / side.h

    def apply_backflow_pressure(
        self, q: np.ndarray, dt_stage: float, out: np.ndarray | None = None
    ) -> None:
        """Before a projection, add to ``out: (nq,)`` (default ``q``) the velocity change
        ``dt_stage`` of the pressure gradient that the total-pressure condition puts on reversed
        outflow faces (sides with ``Outflow(backflow_total_pressure=True)``), evaluated with the
        velocities ``q: (nq,)``.

        The projection holds ``p = 0`` on the side, half a cell outside the last centre, so a
        side value ``p_b`` adds ``sign * 2 p_b / h`` to the normal gradient on its face. With
        ``p_b = -rho |u|^2 / 2`` (``|u|^2`` from the face's normal velocity and the mean
        tangential velocity of the cell inside) the kinematic increment ``-dt_stage * 2 p_b /
        (rho h)`` is independent of the density, so one formula serves both solvers.
        """
        for side in self.roles.outflow:
            if not side.total_pressure:
                continue
            qn = q[side.faces]
            back = side.sign * qn < 0.0
            if not back.any():
                continue
            qt = 0.5 * (q[side.tangential[:, 0]] + q[side.tangential[:, 1]])
            target = q if out is None else out
            target[side.faces] += np.where(
                back, side.sign * dt_stage * (qn**2 + qt**2) / side.h, 0.0
            )

    def stable_dt(self) -> float:
        """Largest step allowed by the advective CFL and the viscous limit."""
        g = self.grid
        sx, sy = self._boundary_speed
        umax = max(sx, float(np.abs(self.q[: self.roles.nu]).max()))
        vmax = max(sy, float(np.abs(self.q[self.roles.nu :]).max()))
        adv = umax / g.hx + vmax / g.hy
        visc = self.nu * (1.0 / g.hx**2 + 1.0 / g.hy**2)
        dt = 1.0 / max(adv / self.cfl, visc / _VISCOUS_LIMIT)
        return dt if self.dt_max is None else min(dt, self.dt_max)

    def step(self, dt: float) -> None:
        """Advance by ``dt`` with SSP-RK3, projecting every stage."""
        q0 = self.q
        q = q0
        phi = self.phi
        for a, b in _RK3:
            # rhs is zero on fixed faces and a + b = 1, so prescribed values carry through
            if a:
                q = a * q0 + b * (q + dt * self.rhs(q))
            else:
                q = q + dt * self.rhs(q)
            self.apply_backflow_pressure(q, b * dt)
            phi = self.pressure.project(q) / (b * dt)
        q[self.roles.fixed] = self.roles.fixed_values  # drop round-off of the stage blends
        self.q = q
        self.phi = phi
        self.t += dt
        self.n_steps += 1
        if self.n_steps % 64 == 0 and not np.isfinite(q).all():
            raise FloatingPointError(
                f"ns2d: velocity became non-finite at t={self.t:.6g} (step {self.n_steps})"
            )

    # -- driving ---------------------------------------------------------------------------

    def advance(self, t_end: float, callback: Callable[[NS2D], None] | None = None) -> None:
        """Step until ``t == t_end`` exactly (the last steps are evened out); ``callback(self)``
        after every step."""
        while True:
            remaining = t_end - self.t
            dt = self.stable_dt()
            if remaining <= 1e-9 * dt:
                break
            self.step(remaining / max(math.ceil(remaining / dt - 1e-9), 1))
            if callback is not None:
                callback(self)
        self.t = max(self.t, float(t_end))  # absorb round-off so frame times are exact

    def run_steady(
        self, *, tol: float, t_max: float, scale: float = 1.0, check_every: int = 25
    ) -> tuple[bool, float]:
        """Step until ``max |dq/dt| * scale < tol`` (checked every ``check_every`` steps) or ``t_max``.

        ``scale`` makes the residual dimensionless (e.g. ``L / U**2``). Returns
        ``(converged, residual)``.
        """
        residual = math.inf
        while self.t < t_max:
            before = self.q.copy()
            t_before = self.t
            for _ in range(check_every):
                self.step(min(self.stable_dt(), max(t_max - self.t, 1e-300)))
                if self.t >= t_max:
                    break
            # mean rate over the block: robust to one short final step
            residual = float(np.abs(self.q - before).max()) / (self.t - t_before) * scale
            if residual < tol:
                return True, residual
        return False, residual


__all__ = ["DEFAULT_CFL", "NS2D", "SCHEMES", "advective_flux"]

"""A 2D weakly compressible SPH solver (WCSPH), vectorised over particle pairs with numpy.

- Kernel: Wendland C2, ``h = h_factor * dx`` (support ``2h``), ``h = 2 dx`` by default: at
  ``1.3 dx`` (about 21 neighbours) the Taylor-Green decay was 3-12 % too fast, a tank at rest
  kept drifting and the dam-break front ran further ahead; at ``2 dx`` (about 50) none of that.
  Verlet neighbour lists from a k-d tree (:mod:`sciflow.solvers.sph_kernel`).
- Equation of state: Tait, ``p = rho0 c0^2 / gamma ((rho / rho0)^gamma - 1) + p_background``
  (``gamma = 1`` is the linear law); ``c0`` is chosen by the problem as 10x its largest flow speed,
  which keeps density variations near 1 %.
- Momentum: the symmetric pressure gradient ``-sum_j m (p_i / rho_i^2 + p_j / rho_j^2) grad W``,
  laminar viscosity in Morris et al.'s (1997) form, optional Monaghan artificial viscosity
  (``alpha``) on approaching pairs, and a body force declared as data
  (:mod:`sciflow.data.particles.forcing`).
- Density: continuity ``d rho_i / dt = sum_j m (v_i - v_j) . grad W``, re-initialised every
  ``reinit_every`` steps by the Shepard-filtered summation.
- Walls: fixed particles (several layers) with Adami, Hu & Adams' (2012) boundary condition:
  wall pressure extrapolated from the fluid including the body force, wall density from the
  equation of state, and the no-slip velocity ``2 u_wall - u_fluid`` in the viscous term. Moving
  walls (a lid) keep their positions and carry a prescribed velocity.
- Time stepping: kick-drift-kick (velocity Verlet) at a fixed ``dt`` that must respect the
  acoustic CFL ``cfl h / (c0 + u_max)``, the viscous ``0.125 h^2 / nu`` and the body-force
  ``0.25 sqrt(h / |f|)`` limits (:func:`stable_dt`).

Every particle has the same, constant mass ``rho0 dx^D``, so the total mass is exact as long as
no particle leaves the domain, which :meth:`SPH.guard` checks (with finiteness and the speed)
at every stored frame: a fluid particle outside ``fluid_bounds`` is an error, never clamped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sciflow.data.particles.box import Box
from sciflow.data.particles.forcing import body_force, validate_force
from sciflow.data.particles.metadata import FLUID, MOVING_WALL, SOLID_WALL
from sciflow.solvers.sph_kernel import NeighborList, WendlandC2


@dataclass
class SPHSettings:
    """Numerical and physical settings of one SPH run (SI units, or any consistent set)."""

    dx: float
    c0: float
    rho0: float = 1000.0
    nu: float = 0.0
    alpha: float = 0.0
    gamma: float = 7.0
    p_background: float = 0.0
    h_factor: float = 2.0
    skin: float = 0.3  # in units of dx
    cfl: float = 0.25
    reinit_every: int = 20
    # the Shepard re-initialisation only where the kernel support is this full (its sum
    # sum_j V_j W_ij, 1 inside the fluid, about 0.5 at a flat free surface); 0: everywhere
    shepard_min_support: float = 0.0
    clamp_wall_pressure: bool = False  # free surfaces: walls never pull fluid (p_wall >= 0)
    force: dict[str, Any] = field(default_factory=lambda: {"law": "none"})
    max_mach: float = 0.5  # a flow faster than this fraction of c0 is taken as a blow-up
    wall_repulsion: float = 0.0  # D (m^2/s^2) of the short-range wall force; 0: none

    @property
    def h(self) -> float:
        return self.h_factor * self.dx


def stable_dt(s: SPHSettings, u_max: float, force_max: float) -> dict[str, float]:
    """The three time-step limits: acoustic CFL, viscous diffusion, body force."""
    h = s.h
    limits = {"cfl": s.cfl * h / (s.c0 + u_max)}
    limits["viscous"] = 0.125 * h * h / s.nu if s.nu > 0 else np.inf
    limits["force"] = 0.25 * np.sqrt(h / force_max) if force_max > 0 else np.inf
    return limits


def steps_per_frame(s: SPHSettings, frame_dt: float, u_max: float, force_max: float) -> int:
    """The smallest number of steps per stored frame whose step satisfies every limit."""
    return int(np.ceil(frame_dt / min(stable_dt(s, u_max, force_max).values()) - 1e-9))


@dataclass
class SPHRun:
    """What :meth:`SPH.run` returns: stored frames and per-frame diagnostics."""

    position: np.ndarray  # (T, N_stored, D)
    time: np.ndarray  # (T,)
    kinetic_energy: np.ndarray  # (T,) of the fluid, 0.5 sum m |v|^2
    max_speed: np.ndarray  # (T,)
    max_density_error: np.ndarray  # (T,) max |rho / rho0 - 1| over the fluid
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # recorded per-frame arrays


class SPH:
    """Particles of one run: fluid (type 0), solid walls (1) and moving walls (2).

    Args:
        x: ``(N, D)`` initial positions; v: ``(N, D)`` initial velocities (walls: their prescribed
            velocity, e.g. a lid's).
        types: ``(N,)`` particle types.
        box: the box (bounds, periodicity) every particle stays in.
        settings: :class:`SPHSettings`.
        rho: ``(N,)`` initial densities (default ``rho0``; a hydrostatic start passes its own).
        fluid_bounds: the box fluid particles must stay inside (past it, a particle went through
            a wall).
    """

    method = "WCSPH"
    continuity_density = True  # density by the continuity equation (False: kernel summation)

    def __init__(self, x: np.ndarray, v: np.ndarray, types: np.ndarray, box: Box, settings: SPHSettings,
                 rho: np.ndarray | None = None, fluid_bounds: Box | None = None):
        self.s = settings
        validate_force(settings.force, x.shape[1], "SPHSettings.force")
        if x.shape[1] != 2:
            raise ValueError(f"SPH: only 2D is implemented, positions have shape {x.shape}")
        unknown = sorted(set(np.unique(types).tolist()) - {FLUID, SOLID_WALL, MOVING_WALL})
        if unknown:
            raise ValueError(f"SPH: particle types {unknown} are not fluid (0) or walls (1, 2)")
        self.box = box
        self.fluid_bounds = fluid_bounds
        self.types = np.asarray(types)
        self.fluid = self.types == FLUID
        self.wall = ~self.fluid
        self.x = box.wrap(np.asarray(x, dtype=np.float64).copy())
        self.v = np.asarray(v, dtype=np.float64).copy()
        self.v_wall = np.where(self.wall[:, None], self.v, 0.0)
        self.v[self.wall] = 0.0
        N, D = self.x.shape
        self.N, self.D = N, D
        self.mass = settings.rho0 * settings.dx**D
        self.rho = np.full(N, settings.rho0) if rho is None else np.asarray(rho, dtype=np.float64).copy()
        self.kernel = WendlandC2(settings.h, D)
        self.nl = NeighborList(box, self.kernel.support, settings.skin * settings.dx, keep=self.fluid)
        self.B = settings.rho0 * settings.c0**2 / settings.gamma
        self.eta2 = 0.01 * settings.h**2
        self.t = 0.0
        self.steps = 0
        self._pairs_for: int = -1
        self._force_wall = body_force(settings.force, self.x[self.wall])
        self._refresh_pairs()
        self.start()

    def start(self) -> None:
        """Accelerations at the initial state (after a caller changed ``rho`` or ``v``, call again)."""
        self.a, self.p = self.momentum(self._geometry(self.x), self.x, self.v, self.rho)

    # -- equation of state -------------------------------------------------------------------
    def pressure(self, rho: np.ndarray) -> np.ndarray:
        g = self.s.gamma
        ratio = rho / self.s.rho0
        return self.B * ((ratio if g == 1 else ratio**g) - 1.0) + self.s.p_background

    def density(self, p: np.ndarray) -> np.ndarray:
        g = self.s.gamma
        base = np.maximum((p - self.s.p_background) / self.B + 1.0, 1e-6)
        return self.s.rho0 * (base if g == 1 else base ** (1.0 / g))

    # -- pairs -----------------------------------------------------------------------------------
    def _refresh_pairs(self) -> None:
        rebuilt = self.nl.update(self.x)
        if not rebuilt and self._pairs_for == self.nl.builds:
            return
        P = self.nl.pairs
        fi, fj = self.fluid[P[:, 0]], self.fluid[P[:, 1]]
        ff = P[fi & fj]
        fw = P[fi ^ fj]
        # orient fluid-wall pairs as (fluid, wall)
        swap = ~self.fluid[fw[:, 0]]
        fw = np.where(swap[:, None], fw[:, ::-1], fw)
        self.pairs = np.concatenate([ff, fw])  # (M, 2): fluid-fluid first, then fluid-wall
        self.n_ff = len(ff)
        self._pairs_for = self.nl.builds

    def _geometry(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        ii, jj = self.pairs[:, 0], self.pairs[:, 1]
        rij = self.box.displacement(x[ii], x[jj])
        r = np.sqrt(np.einsum("md,md->m", rij, rij))
        W = self.kernel.w(r)
        dW = self.kernel.dw(r)
        grad = rij * (dW / np.maximum(r, 1e-12 * self.s.dx))[:, None]  # grad_i W_ij
        return ii, jj, rij, r, W, dW, grad

    def _sum(self, idx: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Scatter-add pair values ``w (M,)`` or ``(M, D)`` onto particles ``idx``."""
        if w.ndim == 1:
            return np.bincount(idx, w, minlength=self.N)
        return np.stack([np.bincount(idx, w[:, d], minlength=self.N) for d in range(w.shape[1])], -1)

    # -- right-hand side -------------------------------------------------------------------------
    def wall_state(self, geo: tuple[np.ndarray, ...], v: np.ndarray, rho: np.ndarray,
                   p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Adami et al. (2012): wall pressure, density and no-slip velocity from nearby fluid."""
        ii, jj, rij, _, W, _, _ = geo
        k = slice(self.n_ff, None)
        f, w, Wk = ii[k], jj[k], W[k]
        sw = np.bincount(w, Wk, minlength=self.N)
        sp = np.bincount(w, p[f] * Wk, minlength=self.N)
        # (g - a_wall) . sum_f rho_f (x_w - x_f) W; rij = x_f - x_w here
        srr = self._sum(w, -(rho[f] * Wk)[:, None] * rij[k])
        sv = self._sum(w, v[f] * Wk[:, None])
        walls = np.flatnonzero(self.wall)
        has = sw[walls] > 0
        pw = np.zeros(self.N)
        pw[walls[has]] = (sp[walls[has]] + np.einsum("nd,nd->n", self._force_wall[has], srr[walls[has]])) / sw[walls[has]]
        if self.s.clamp_wall_pressure:
            pw = np.maximum(pw, 0.0)
        p_all = np.where(self.wall, pw, p)
        rho_all = np.where(self.wall, self.density(pw), rho)
        v_all = v.copy()
        u_f = np.zeros((self.N, self.D))
        u_f[walls[has]] = sv[walls[has]] / sw[walls[has], None]
        v_all[self.wall] = 2.0 * self.v_wall[self.wall] - u_f[self.wall]
        return p_all, rho_all, v_all

    def continuity(self, geo: tuple[np.ndarray, ...], v: np.ndarray) -> np.ndarray:
        """Density rates ``(N,)`` (zero on walls), with the walls' prescribed velocity."""
        ii, jj, _, _, _, _, grad = geo
        v_cont = np.where(self.wall[:, None], self.v_wall, v)
        dv = np.einsum("md,md->m", v_cont[ii] - v_cont[jj], grad) * self.mass
        drho = np.bincount(ii, dv, minlength=self.N) + np.bincount(jj, dv, minlength=self.N)
        drho[self.wall] = 0.0
        return drho

    def momentum(self, geo: tuple[np.ndarray, ...], x: np.ndarray, v: np.ndarray,
                 rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Accelerations ``(N, D)`` (zero on walls) and pressures ``(N,)`` (walls: extrapolated)."""
        s = self.s
        ii, jj, rij, r, W, dW, grad = geo
        p = self.pressure(rho)
        p_all, rho_all, v_all = self.wall_state(geo, v, rho, p)
        m = self.mass
        # pressure: -m (p_i / rho_i^2 + p_j / rho_j^2) grad_i W_ij, equal and opposite
        coef = -m * (p_all[ii] / rho_all[ii] ** 2 + p_all[jj] / rho_all[jj] ** 2)
        f = coef[:, None] * grad
        vij = v_all[ii] - v_all[jj]
        if s.nu > 0:  # Morris et al. (1997): (mu_i + mu_j) / (rho_i rho_j) r.gradW / (r^2 + eta^2) v_ij
            mu = s.nu * (rho_all[ii] + rho_all[jj]) / (rho_all[ii] * rho_all[jj])
            f += (m * mu * r * dW / (r * r + self.eta2))[:, None] * vij
        if s.alpha > 0:  # Monaghan: only approaching pairs
            vr = np.einsum("md,md->m", vij, rij)
            mu_ij = np.where(vr < 0, s.h * vr / (r * r + self.eta2), 0.0)
            pi_ij = -s.alpha * s.c0 * mu_ij / (0.5 * (rho_all[ii] + rho_all[jj]))
            f += (-m * pi_ij)[:, None] * grad
        a = self._sum(ii, f) - self._sum(jj, f)
        if s.wall_repulsion > 0:
            a += self._sum(ii, self.repulsion(rij, r))
        a[self.fluid] += body_force(s.force, x[self.fluid])
        a[self.wall] = 0.0
        self._rho_all = rho_all
        return a, p_all

    def repulsion(self, rij: np.ndarray, r: np.ndarray) -> np.ndarray:
        """A last-resort wall force per unit mass on fluid particles, ``(M, D)`` over the pairs:
        ``D ((r0 / r)^4 - (r0 / r)^2) r_ij / r^2`` for fluid-wall pairs closer than
        ``r0 = 0.75 dx`` (Monaghan's 1994 form, softer exponents). A fluid particle at rest beside
        a wall sits about ``dx`` from the first wall row, where it is zero; it stops the tip of a
        thin jet, where the free-surface pressure is near zero and Adami's wall pressure alone
        barely pushes back, from sliding through the wall."""
        out = np.zeros_like(rij)
        k = slice(self.n_ff, None)
        r0 = 0.75 * self.s.dx
        q = r0 / np.maximum(r[k], 1e-12 * self.s.dx)
        mag = np.where(q > 1, self.s.wall_repulsion * (q**4 - q**2) / r[k] ** 2, 0.0)
        out[k] = mag[:, None] * rij[k]
        return out

    def reinitialise_density(self, geo: tuple[np.ndarray, ...]) -> None:
        """Shepard-filtered summation density of the fluid (fluid and wall neighbours)."""
        ii, jj, _, _, W, _, _ = geo
        m = self.mass
        rho_all = self._rho_all
        W0 = self.kernel.w(np.zeros(1))[0]
        num = m * W0 + np.bincount(ii, m * W, minlength=self.N) + np.bincount(jj, m * W, minlength=self.N)
        vol = m / rho_all
        den = vol * W0 + np.bincount(ii, vol[jj] * W, minlength=self.N) + np.bincount(jj, vol[ii] * W, minlength=self.N)
        # where the support is cut (free surface) the filtered summation is biased low and
        # re-initialising there pulls surface particles inwards; continuity keeps them instead
        full = self.fluid & (den >= self.s.shepard_min_support)
        self.rho[full] = num[full] / den[full]

    # -- time stepping ---------------------------------------------------------------------------
    def step(self, dt: float) -> None:
        """One kick-drift-kick step; the density is drifted with the positions (from the
        half-step velocity), which keeps the acoustic oscillation symplectic: kicking density and
        velocity together with stale rates amplifies every sound wave by ``1 + (omega dt / 2)^2``
        per step."""
        fl = self.fluid
        v_half = self.v.copy()
        v_half[fl] += 0.5 * dt * self.a[fl]
        x = self.x.copy()
        x[fl] += dt * v_half[fl]
        self.x = self.box.wrap(x)
        self._refresh_pairs()
        geo = self._geometry(self.x)
        self.rho = self.rho + dt * self.continuity(geo, v_half)
        self.steps += 1
        self.t += dt
        if self.s.reinit_every and self.steps % self.s.reinit_every == 0:
            self.reinitialise_density(geo)
        self.a, self.p = self.momentum(geo, self.x, v_half, self.rho)
        self.v = v_half
        self.v[fl] += 0.5 * dt * self.a[fl]

    def kinetic_energy(self) -> float:
        return 0.5 * self.mass * float(np.sum(self.v[self.fluid] ** 2))

    def guard(self) -> None:
        """Raise if the state is not finite, a fluid particle left the domain, or the flow
        outran the sound speed (``max_mach``)."""
        fl = self.fluid
        if not (np.isfinite(self.x).all() and np.isfinite(self.v).all() and np.isfinite(self.rho).all()):
            raise FloatingPointError(f"SPH: the state became non-finite at t = {self.t:.4g} s (step {self.steps})")
        speed = np.sqrt(np.max(np.sum(self.v[fl] ** 2, axis=1), initial=0.0))
        if speed > self.s.max_mach * self.s.c0:
            raise FloatingPointError(f"SPH: flow speed {speed:.4g} passed {self.s.max_mach} c0 = "
                                     f"{self.s.max_mach * self.s.c0:.4g} at t = {self.t:.4g} s (a blow-up)")
        if self.fluid_bounds is not None:
            out = self.fluid_bounds.outside(self.x) & fl
            if out.any():
                n = int(np.flatnonzero(out)[0])
                raise RuntimeError(f"SPH: {int(out.sum())} fluid particle(s) left the domain at t = {self.t:.4g} s, "
                                   f"first particle {n} at {self.x[n].tolist()}")

    def run(self, frames: int, write_every: int, dt: float, *, stored: np.ndarray | None = None,
            record: Mapping[str, Callable[[SPH], np.ndarray]] | None = None,
            progress: Callable[[int], None] | None = None) -> SPHRun:
        """Store ``frames`` frames ``write_every`` steps of ``dt`` apart (frame 0 is the start).

        ``stored`` selects the particles whose positions are kept (default all); ``record`` maps
        names to functions of the solver whose per-frame results go to ``SPHRun.extra``.
        """
        sel = slice(None) if stored is None else stored
        pos, ke, vmax, derr = [], [], [], []
        extra: dict[str, list[np.ndarray]] = {k: [] for k in (record or {})}
        for k in range(frames):
            if k:
                for _ in range(write_every):
                    self.step(dt)
            self.guard()
            pos.append(self.x[sel].copy())
            ke.append(self.kinetic_energy())
            vmax.append(float(np.sqrt(np.max(np.sum(self.v[self.fluid] ** 2, axis=1), initial=0.0))))
            derr.append(float(np.max(np.abs(self.rho[self.fluid] / self.s.rho0 - 1.0), initial=0.0)))
            for name, fn in (record or {}).items():
                extra[name].append(np.asarray(fn(self)))
            if progress is not None:
                progress(k)
        return SPHRun(np.stack(pos), np.arange(frames) * write_every * dt, np.array(ke), np.array(vmax),
                      np.array(derr), {k: np.stack(v) for k, v in extra.items()})

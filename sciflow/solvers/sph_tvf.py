"""SPH with the transport-velocity formulation (Adami, Hu & Adams 2013) for flows without a free
surface (Taylor-Green vortex, lid-driven cavity).

Standard weakly compressible SPH loses its particle order where the flow stretches the lattice
(the Taylor-Green vortex's stagnation points): particles pair up, pressure noise grows and the
kinetic energy decays several times too fast. The transport-velocity formulation advects the
particles with ``v + dv_b`` where ``dv_b`` comes from a constant background pressure ``p_b``
(``-p_b / m_i sum_j (V_i^2 + V_j^2) grad W_ij``, zero on a uniform distribution), which keeps
them evenly spread, and adds the stress ``A = rho v (v_transport - v)`` this creates to the
momentum equation. Density is the kernel summation ``rho_i = m sum_j W_ij`` (no free surface);
the momentum equation uses the inter-particle averaged pressure and Hu & Adams' viscous term:

``dv_i/dt = 1/m sum_j (V_i^2 + V_j^2) [-p_ij e + (A_i + A_j)/2 . e + eta_ij v_ij / r] dW/dr``

with ``p_ij = (rho_j p_i + rho_i p_j) / (rho_i + rho_j)``. Walls keep the Adami et al. (2012)
condition of :class:`~sciflow.solvers.sph.SPH` (wall particles sit on a lattice of spacing
``dx``, so their volume is ``dx^D``). Time stepping is the same kick-drift-kick.
"""

from __future__ import annotations

import numpy as np

from sciflow.data.particles.forcing import body_force
from sciflow.solvers.sph import SPH


class TransportVelocitySPH(SPH):
    """:class:`SPH` with the transport-velocity formulation; ``settings.p_background`` is ``p_b``
    (it moves particles, it is not added to the pressure)."""

    method = "TVF-SPH"
    continuity_density = False

    def start(self) -> None:
        self.pb = self.s.p_background
        self.vt = self.v.copy()
        self.a, self.b, self.rho, self.p = self.rhs_tvf(self.x, self.v, self.vt)
        self.drho = np.zeros(self.N)

    def pressure(self, rho: np.ndarray) -> np.ndarray:
        g = self.s.gamma
        ratio = rho / self.s.rho0
        return self.B * ((ratio if g == 1 else ratio**g) - 1.0)

    def density(self, p: np.ndarray) -> np.ndarray:
        g = self.s.gamma
        base = np.maximum(p / self.B + 1.0, 1e-6)
        return self.s.rho0 * (base if g == 1 else base ** (1.0 / g))

    def rhs_tvf(self, x: np.ndarray, v: np.ndarray, vt: np.ndarray) -> tuple[np.ndarray, ...]:
        """Momentum accelerations ``(N, D)``, transport accelerations ``(N, D)``, summation densities
        ``(N,)`` and pressures ``(N,)`` at positions ``x`` with velocities ``v`` and transport
        velocities ``vt``."""
        s, m, D = self.s, self.mass, self.D
        geo = self._geometry(x)
        ii, jj, rij, r, W, dW, _ = geo
        W0 = self.kernel.w(np.zeros(1))[0]
        sigma = W0 + np.bincount(ii, W, minlength=self.N) + np.bincount(jj, W, minlength=self.N)
        rho = np.where(self.fluid, m * sigma, s.rho0)
        p = self.pressure(rho)
        p_all, rho_all, v_all = self.wall_state(geo, v, rho, p)
        V = np.where(self.fluid, 1.0 / sigma, s.dx**D)
        vv = V[ii] ** 2 + V[jj] ** 2
        e = rij / np.maximum(r, 1e-12 * s.dx)[:, None]
        rI, rJ = rho_all[ii], rho_all[jj]
        p_ij = (rJ * p_all[ii] + rI * p_all[jj]) / (rI + rJ)
        vvdW = vv * dW
        # (A_i + A_j)/2 . e with A = rho v (vt - v)^T on fluid particles: A_i e = rho_i v_i ((vt_i - v_i) . e)
        w = np.where(self.fluid, rho_all, 0.0)
        dvt = vt - v
        sI = w[ii] * np.einsum("md,md->m", dvt[ii], e)
        sJ = w[jj] * np.einsum("md,md->m", dvt[jj], e)
        f = (-vvdW * p_ij)[:, None] * e + (0.5 * vvdW)[:, None] * (sI[:, None] * v[ii] + sJ[:, None] * v[jj])
        if s.nu > 0:
            eta = s.nu * rho_all
            eta_ij = 2 * eta[ii] * eta[jj] / (eta[ii] + eta[jj])
            f += (vvdW * eta_ij / np.maximum(r, 1e-12 * s.dx))[:, None] * (v_all[ii] - v_all[jj])
        a = (self._sum(ii, f) - self._sum(jj, f)) / m
        fb = (-self.pb * vvdW)[:, None] * e
        b = (self._sum(ii, fb) - self._sum(jj, fb)) / m
        a[self.fluid] += body_force(s.force, x[self.fluid])
        a[self.wall] = 0.0
        b[self.wall] = 0.0
        self._rho_all = rho_all
        return a, b, rho, p_all

    def step(self, dt: float) -> None:
        fl = self.fluid
        v_half = self.v.copy()
        v_half[fl] += 0.5 * dt * self.a[fl]
        vt = v_half.copy()
        vt[fl] += 0.5 * dt * self.b[fl]
        x = self.x.copy()
        x[fl] += dt * vt[fl]
        self.x = self.box.wrap(x)
        self._refresh_pairs()
        self.a, self.b, self.rho, self.p = self.rhs_tvf(self.x, v_half, vt)
        self.vt = vt
        self.v = v_half
        self.v[fl] += 0.5 * dt * self.a[fl]
        self.steps += 1
        self.t += dt

    def reinitialise_density(self) -> None:
        """Summation density is recomputed every step; nothing to re-initialise."""

"""The particle stepper: GNS kinematics, normalisation and training noise around a particle operator.

Units are frame units, as in GNS and LagrangeBench: with positions ``x_t`` one model step apart,
velocity ``v_t = x_t - x_{t-1}`` and acceleration ``a_t = x_{t+1} - 2 x_t + x_{t-1}`` (minimum
images on periodic axes). The operator sees the last ``h`` velocities normalised by the data's
statistics and predicts the normalised acceleration; a step is semi-implicit Euler with dt = 1:
``v_{t+1} = v_t + a_t``, ``x_{t+1} = x_t + v_{t+1}``, folded into the box on periodic axes.
Kinematic particles (walls) keep their positions (or take prescribed ones) and fluid particles
are held inside the walls (``fluid_bounds``), so no particle leaves the domain.

Training noise (GNS): a random walk on the input positions of the dynamic particles, whose last
velocity has standard deviation ``noise_std`` (the per-step velocity noise is ``noise_std /
sqrt(h)``, accumulated). The target is corrected so the model does not learn the noise: the
target position carries the same noise as the last input position, so the target acceleration is
``a_t - (n_t - n_{t-1})`` and integrating it from the noisy inputs gives the noisy-frame position
``x_{t+1} + n_t``. The normalisation standard deviations fold the noise in, ``sqrt(std^2 +
noise_std^2)``.

Unlike the grid steppers, this one takes positions in physical units and normalises itself: the
normalised quantities (velocities, accelerations) are derived from the positions inside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from sciflow.nn.neighbors import Domain
from sciflow.operators import build_particle_operator


class ParticleStepper(nn.Module):
    """Train and step a particle operator (see the module docstring).

    Args:
        operator: particle operator spec ``{"class_path": "gns", "init_args": {...}}``.
        dim, history, n_params: data sizes; ``history`` input velocities (``history + 1`` positions).
        bounds, periodic: the box; radius, dx: connectivity radius and particle spacing.
        stats: ``vel_mean, vel_std, acc_mean, acc_std`` (``dim`` each, frame units of one model
            step) and ``params_mean, params_std`` (``n_params`` each).
        kinematic_types: particle types whose positions are prescribed (walls).
        fluid_bounds: box the other particles are held in (default ``bounds``).
        noise_std: random-walk noise on input positions in training (position units).
    """

    def __init__(self, operator: Mapping[str, Any] | str, *, dim: int, history: int, n_params: int,
                 bounds: Sequence[Sequence[float]], periodic: Sequence[bool], radius: float, dx: float,
                 stats: Mapping[str, Sequence[float]], kinematic_types: Sequence[int] = (1, 2),
                 fluid_bounds: Sequence[Sequence[float]] | None = None, noise_std: float = 3e-4):
        super().__init__()
        if noise_std < 0:
            raise ValueError(f"ParticleStepper: noise_std must be >= 0, got {noise_std}")
        self.dim, self.history, self.n_params = int(dim), int(history), int(n_params)
        self.domain = Domain.from_bounds(bounds, periodic)
        self.noise_std = float(noise_std)
        missing = [k for k in ("vel_mean", "vel_std", "acc_mean", "acc_std", "params_mean", "params_std")
                   if k not in stats]
        if missing:
            raise ValueError(f"ParticleStepper: statistics {missing} missing (have {sorted(stats)}); compute them "
                             f"with sciflow.data.particles.compute_particle_stats")
        f32 = lambda k, n: self._vector(stats[k], n, k)  # noqa: E731
        fold = lambda s: torch.sqrt(s**2 + self.noise_std**2)  # noqa: E731
        self.register_buffer("vel_mean", f32("vel_mean", dim))
        self.register_buffer("vel_std", fold(f32("vel_std", dim)))
        self.register_buffer("acc_mean", f32("acc_mean", dim))
        self.register_buffer("acc_std", fold(f32("acc_std", dim)))
        self.register_buffer("params_mean", f32("params_mean", n_params))
        self.register_buffer("params_std", f32("params_std", n_params))
        self.register_buffer("kinematic_types", torch.tensor(list(kinematic_types), dtype=torch.long))
        inner = Domain.from_bounds(fluid_bounds if fluid_bounds is not None else bounds, periodic)
        self.register_buffer("fluid_lo", torch.tensor(inner.lower, dtype=torch.float32))
        self.register_buffer("fluid_hi", torch.tensor([lo + s for lo, s in zip(inner.lower, inner.size)]))
        self.operator = build_particle_operator(
            operator, dim=dim, history=history, cond_dim=n_params, bounds=[list(b) for b in bounds],
            periodic=list(periodic), radius=float(radius), dx=float(dx))

    @staticmethod
    def _vector(values: Sequence[float], n: int, name: str) -> Tensor:
        t = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
        if t.numel() != n:
            raise ValueError(f"ParticleStepper: statistic {name!r} has {t.numel()} values, expected {n}")
        if name.endswith("_std") and bool((t <= 0).any()):
            raise ValueError(f"ParticleStepper: statistic {name!r} must be > 0, got {t.tolist()}")
        return t

    # -- checks and kinematics ---------------------------------------------------------------------
    def check_positions(self, position: Tensor, particle_type: Tensor, what: str = "position") -> None:
        """Raise a ``ValueError`` naming the frame, particle and coordinate of the first bad value:
        wrong shape, NaN/Inf, or a particle outside the bounds on a non-periodic axis."""
        if position.ndim != 3 or position.shape[-1] != self.dim:
            raise ValueError(f"{what} must be (frames, N, D={self.dim}), got shape {tuple(position.shape)}")
        N = position.shape[1]
        if tuple(particle_type.shape) != (N,):
            raise ValueError(f"particle_type must be (N={N},), got shape {tuple(particle_type.shape)}")
        bad = ~torch.isfinite(position)
        lo, size, per = self.domain.tensors(position)
        outside = ((position < lo) | (position > lo + size)) & ~per
        for mask, why in ((bad, "is not finite"), (outside, "is outside the bounds")):
            if bool(mask.any()):
                t, i, d = (int(v) for v in torch.nonzero(mask)[0])
                raise ValueError(
                    f"{what}: particle {i} at frame {t} {why}: coordinate {d} = {float(position[t, i, d]):.6g}, "
                    f"bounds [{self.domain.lower[d]:.6g}, {self.domain.lower[d] + self.domain.size[d]:.6g}]")

    def velocities(self, position: Tensor) -> Tensor:
        """``position (h + 1, N, D)`` -> velocities ``(N, h, D)`` in frame units, oldest first."""
        return self.domain.displacement(position[1:], position[:-1]).transpose(0, 1)

    def dynamic(self, particle_type: Tensor) -> Tensor:
        """``(N,)`` bool: the particle moves with the flow."""
        return ~torch.isin(particle_type, self.kinematic_types.to(particle_type.device))

    def normalize_params(self, params: Tensor | None) -> Tensor | None:
        if self.n_params == 0:
            return None
        if params is None or params.ndim != 2 or params.shape[1] != self.n_params:
            raise ValueError(f"params must be (B, P={self.n_params}), got {None if params is None else tuple(params.shape)}")
        return (params - self.params_mean) / self.params_std

    def random_walk_noise(self, position: Tensor, dynamic: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Noise ``(h + 1, N, D)`` for ``position (h + 1, N, D)``: 0 on the first frame, a random walk
        after it whose last velocity has std ``noise_std``; kinematic particles get none."""
        h = position.shape[0] - 1
        v = torch.randn(position.shape[0] - 1, *position.shape[1:], generator=generator,
                        device=position.device, dtype=position.dtype) * (self.noise_std / h**0.5)
        v = torch.cumsum(v, dim=0) * dynamic[None, :, None].to(v.dtype)
        return torch.cat([torch.zeros_like(position[:1]), torch.cumsum(v, dim=0)])

    def target_acceleration(self, position: Tensor, target: Tensor) -> Tensor:
        """``a = x_{t+1} - 2 x_t + x_{t-1}`` ``(N, D)`` from ``position (h + 1, N, D)`` and
        ``target (N, D)`` (``x_{t+1}``), minimum images on periodic axes."""
        return self.domain.displacement(target, position[-1]) - self.domain.displacement(position[-1], position[-2])

    # -- the algorithm -------------------------------------------------------------------------------
    def predict(self, position: Tensor, particle_type: Tensor, batch: Tensor, params: Tensor | None) -> Tensor:
        """The operator's normalised acceleration ``(N, D)`` for ``position (h + 1, N, D)``."""
        v = (self.velocities(position) - self.vel_mean) / self.vel_std
        return self.operator(position[-1], v, particle_type, batch, self.normalize_params(params))

    def loss(self, position: Tensor, target: Tensor, particle_type: Tensor, batch: Tensor,
             params: Tensor | None = None, *, noise: bool = True, generator: torch.Generator | None = None) -> Tensor:
        """MSE of the normalised acceleration over the dynamic particles.

        ``position (h + 1, N, D)``, ``target (N, D)`` or ``(1, N, D)`` (the next positions),
        ``particle_type (N,)``, ``batch (N,)``, ``params (B, P)``; ``noise``: add the training noise.
        """
        if position.shape[0] != self.history + 1:
            raise ValueError(f"position must hold history + 1 = {self.history + 1} frames, got {position.shape[0]}")
        target = target[-1] if target.ndim == 3 else target
        self.check_positions(torch.cat([position, target[None]]), particle_type)
        dyn = self.dynamic(particle_type)
        if noise and self.noise_std > 0:
            n = self.random_walk_noise(position, dyn, generator)
            position = self.domain.wrap(position + n)
            target = target + n[-1]  # the target carries the last input frame's noise (GNS)
        a = (self.target_acceleration(position, target) - self.acc_mean) / self.acc_std
        pred = self.predict(position, particle_type, batch, params)
        if not bool(dyn.any()):
            raise ValueError("loss: the batch has no dynamic (non-kinematic) particle")
        return torch.mean((pred[dyn] - a[dyn]) ** 2)

    def acceleration(self, position: Tensor, particle_type: Tensor, batch: Tensor, params: Tensor | None) -> Tensor:
        """Physical acceleration ``(N, D)`` in frame units."""
        return self.predict(position, particle_type, batch, params) * self.acc_std + self.acc_mean

    def constrain(self, x: Tensor, particle_type: Tensor) -> Tensor:
        """Wrap periodic axes and hold the dynamic particles inside ``fluid_bounds``."""
        x = self.domain.wrap(x)
        per = torch.tensor(self.domain.periodic, device=x.device)
        held = torch.maximum(torch.minimum(x, self.fluid_hi.to(x)), self.fluid_lo.to(x))
        dyn = self.dynamic(particle_type)[:, None]
        return torch.where(dyn & ~per, held, x)

    def step(self, position: Tensor, particle_type: Tensor, batch: Tensor, params: Tensor | None = None,
             kinematic: Tensor | None = None) -> Tensor:
        """Next positions ``(N, D)`` from ``position (h + 1, N, D)``; ``kinematic (N, D)``: prescribed
        next positions of kinematic particles (default: where they are)."""
        if position.shape[0] != self.history + 1:
            raise ValueError(f"position must hold history + 1 = {self.history + 1} frames, got {position.shape[0]}")
        self.check_positions(position, particle_type)
        a = self.acceleration(position, particle_type, batch, params)
        v = self.domain.displacement(position[-1], position[-2]) + a
        nxt = self.constrain(position[-1] + v, particle_type)
        fixed = position[-1] if kinematic is None else kinematic
        return torch.where(self.dynamic(particle_type)[:, None], nxt, fixed)


__all__ = ["ParticleStepper"]

"""The rollout engine for particle surrogates: an ensemble stepped autoregressively, one step at a
time, with particle states in place of grid states.

The state is a graph batch: the ``B`` trajectories' particles concatenated along the particle axis
(``batch (N,)`` names the trajectory of each particle). Each model of a deep ensemble steps its
``samples`` copies of the batch together, as one graph of ``samples * N`` particles; members are
stacked model-major (member ``m = model * samples + sample``) like the grid engine's
(:mod:`sciflow.rollout`). Only the last ``h + 1`` positions of each member are kept: memory does
not grow with the number of steps.

Walls: kinematic particles take prescribed positions (``kinematic``, e.g. the stored ones) or
stay where they are, and the stepper holds the others inside the walls, so no particle leaves the
domain. Blow-up: a member's trajectory stops (its positions read NaN from then on, a
:class:`~sciflow.rollout.BlowupWarning` names member, trajectory and step) when a position is not
finite or a particle moves faster than ``blowup`` times the larger of the trajectory's initial
top speed and the data's typical speed (``|vel_mean| + vel_std``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch_geometric.utils import scatter
from tqdm.auto import tqdm

from sciflow.rollout import BlowupWarning

if TYPE_CHECKING:
    from sciflow.particle_surrogate import ParticleSurrogate


@dataclass
class ParticleStep:
    """One model step of a particle rollout.

    Attributes:
        index: model step ``k = 1..steps``.
        time: ``k * dt`` in seconds.
        members: ``(M, N, D)`` positions of every member (all trajectories' particles); NaN for
            stopped member trajectories.
        alive: ``(M, B)`` bool; False once a member's trajectory blew up.
    """

    index: int
    time: float
    members: Tensor
    alive: Tensor


def _spec(model: ParticleSurrogate) -> dict:
    spec = dict(getattr(model, "hparams", {}).get("data_spec") or {})
    if spec.get("kind") != "particles":
        raise TypeError(f"rollout_particles: {type(model).__name__} is not a particle surrogate "
                        f"(data kind {spec.get('kind', 'grid')!r})")
    return spec


def _speed(model: ParticleSurrogate) -> float:
    st = model.stepper
    return float((st.vel_mean.abs() + st.vel_std).norm())


def rollout_particles(
    models: Sequence[ParticleSurrogate],
    initial: Tensor,
    particle_type: Tensor,
    params: Tensor | None,
    steps: int,
    *,
    batch: Tensor | None = None,
    samples: int = 1,
    kinematic: Tensor | None = None,
    blowup: float = 100.0,
    progress: bool = False,
    dt: float | None = None,
) -> Iterator[ParticleStep]:
    """Roll an ensemble of particle surrogates forward ``steps`` model steps.

    Args:
        models: particle surrogates trained on the same kind of data (same ``dim`` and history
            length ``h``, which must be equal).
        initial: ``(h + 1, N, D)`` positions in the data's units, one model step apart; the last
            frame is t = 0.
        particle_type: ``(N,)`` type ids.
        params: ``(B, P)`` parameters of each trajectory (None when the data has none).
        steps: model steps.
        batch: ``(N,)`` sorted trajectory index of each particle (default: one trajectory).
        samples: copies per model (members ``M = len(models) * samples``; identical for
            deterministic steppers).
        kinematic: ``(steps, N, D)`` prescribed positions of the kinematic particles at each
            step (default: they stay where they are).
        blowup: speed factor of the blow-up check (see the module docstring).
        progress: a tqdm bar over steps.
        dt: seconds per model step; default the models' ``data_spec["dt"]``.

    Yields:
        ``ParticleStep(index=k, time=k * dt, members (M, N, D), alive (M, B))``.
    """
    if not models:
        raise ValueError("rollout_particles: no models given")
    if samples < 1 or steps < 0:
        raise ValueError(f"rollout_particles: need samples >= 1 and steps >= 0, got {samples}, {steps}")
    specs = [_spec(m) for m in models]
    hs = {int(s["history"]) for s in specs}
    dims = {int(s["dim"]) for s in specs}
    if len(hs) > 1 or len(dims) > 1:
        raise ValueError(f"rollout_particles: models disagree on history {sorted(hs)} or dim {sorted(dims)}")
    h, D = hs.pop(), dims.pop()
    if initial.ndim != 3 or initial.shape[0] != h + 1 or initial.shape[2] != D:
        raise ValueError(f"rollout_particles: initial must be (h + 1 = {h + 1}, N, D = {D}), got {tuple(initial.shape)}")
    N = initial.shape[1]
    if tuple(particle_type.shape) != (N,):
        raise ValueError(f"rollout_particles: particle_type must be (N={N},), got {tuple(particle_type.shape)}")
    batch = torch.zeros(N, dtype=torch.long) if batch is None else batch.long()
    if tuple(batch.shape) != (N,) or (N and bool((batch[1:] < batch[:-1]).any())):
        raise ValueError(f"rollout_particles: batch must be a sorted (N={N},) index, got shape {tuple(batch.shape)}")
    B = int(batch.max()) + 1 if N else 0
    if params is not None and (params.ndim != 2 or params.shape[0] != B):
        raise ValueError(f"rollout_particles: params must be (B={B}, P), got {tuple(params.shape)}")
    if kinematic is not None and tuple(kinematic.shape) != (steps, N, D):
        raise ValueError(f"rollout_particles: kinematic must be (steps={steps}, N={N}, D={D}), got {tuple(kinematic.shape)}")
    if dt is None:
        dts = {float(s["dt"]) for s in specs}
        if len(dts) > 1:
            raise ValueError(f"rollout_particles: models disagree on dt (seconds per step): {sorted(dts)}")
        dt = dts.pop()
    models[0].stepper.check_positions(initial.float(), particle_type, "initial")

    device = next(iter(models[0].parameters())).device
    initial = initial.to(device, torch.float32)
    types = particle_type.to(device).repeat(samples)
    rep_batch = (batch.to(device)[None] + B * torch.arange(samples, device=device)[:, None]).reshape(-1)
    rep_params = None if params is None else params.to(device, torch.float32).repeat(samples, 1)
    domain = models[0].stepper.domain
    dynamic = models[0].stepper.dynamic(particle_type.to(device))
    v0 = domain.displacement(initial[-1], initial[-2]).norm(dim=-1) * dynamic
    top = scatter(v0, batch.to(device), dim=0, dim_size=B, reduce="max")
    limit = blowup * torch.clamp(top, min=max(_speed(m) for m in models))  # (B,)
    windows = [initial.repeat(1, samples, 1) for _ in models]  # (h + 1, samples N, D) per model
    M = len(models) * samples
    alive = torch.ones(M, B, dtype=torch.bool, device=device)

    bar = tqdm(range(1, steps + 1), desc="particle rollout", unit="step", disable=not progress)
    try:
        for k in bar:
            kin = None if kinematic is None else kinematic[k - 1].to(device, torch.float32).repeat(samples, 1)
            members, alive = _advance(models, windows, types, rep_batch, rep_params, kin, alive, limit,
                                      dynamic, batch.to(device), samples, k, dt)
            yield ParticleStep(index=k, time=k * dt, members=members, alive=alive.clone())
    finally:
        bar.close()


@torch.no_grad()
def _advance(models, windows, types, rep_batch, params, kin, alive, limit, dynamic, batch, samples, k, dt):
    """One step of every member; updates ``windows`` in place. Kept out of the generator so that
    no-grad mode never leaks to the consumer across a ``yield``."""
    B = alive.shape[1]
    outs = []
    for i, model in enumerate(models):
        nxt = model.predict_next(windows[i], types, rep_batch, params, kin)  # (samples N, D)
        step = model.stepper.domain.displacement(nxt, windows[i][-1]).norm(dim=-1)
        members = nxt.reshape(samples, -1, nxt.shape[-1])
        speed = step.reshape(samples, -1) * dynamic[None]
        bad = ~torch.isfinite(members).all(-1) | (speed > limit[batch][None])  # (samples, N)
        dead = scatter(bad.float(), batch, dim=1, dim_size=B, reduce="max") > 0  # (samples, B)
        rows = slice(i * samples, (i + 1) * samples)
        new = alive[rows] & dead
        if bool(new.any()):
            pairs = torch.nonzero(new).tolist()
            shown = ", ".join(f"member {i * samples + s} (model {i}, sample {s}) of trajectory {b}" for s, b in pairs[:10])
            more = f" and {len(pairs) - 10} more" if len(pairs) > 10 else ""
            warnings.warn(f"particle rollout: blew up at step {k} (t = {k * dt:.6g} s), stopped: {shown}{more} "
                          f"(non-finite positions or particles faster than the limits {limit.tolist()} per step)",
                          BlowupWarning, stacklevel=3)
        alive[rows] &= ~dead
        stopped = ~alive[rows][:, batch]  # (samples, N)
        # stopped trajectories are fed their previous (finite) positions so the graph stays valid
        fed = torch.where(stopped[..., None], windows[i][-1].reshape(samples, -1, nxt.shape[-1]), members)
        windows[i] = torch.cat([windows[i][1:], fed.reshape(1, -1, nxt.shape[-1])])
        outs.append(members.masked_fill(stopped[..., None], float("nan")))
    return torch.cat(outs), alive


__all__ = ["ParticleStep", "rollout_particles"]

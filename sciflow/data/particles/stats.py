"""Velocity and acceleration statistics of particle data (the GNS normalisation), streamed.

In frame units, as GNS and LagrangeBench use them: with ``s`` stored frames per model step,
velocity ``v_t = x_t - x_{t-s}`` and acceleration ``a_t = v_{t+s} - v_t = x_{t+s} - 2 x_t +
x_{t-s}``, displacements taken as minimum images across periodic axes. Means and standard
deviations are per spatial dimension, over every dynamic particle (types not in
``kinematic_particle_types``) and every frame of the split, merged with Chan's update in
float64 so chunking does not change them. Parameter means and stds are over trajectories.

``load_or_compute_particle_stats`` caches them in ``stats.yaml`` beside the data like the grid
statistics: the cache is used while it matches the split (trajectories, their shapes, the
parameter names, the step), and is recomputed and rewritten atomically otherwise.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from sciflow.data.format import atomic_path
from sciflow.data.particles.trajectories import ParticleTrajectories
from sciflow.data.stats import _Moments

CACHE_KEY = "sciflow_particles"


@dataclass
class ParticleStats:
    """Per-dimension velocity / acceleration moments in frame units of ``step`` frames."""

    dim: int
    step: int
    vel_mean: list[float]
    vel_std: list[float]
    acc_mean: list[float]
    acc_std: list[float]
    params: list[str]
    params_mean: list[float]
    params_std: list[float]
    n_trajectories: int
    n_samples: int
    kinematic_types: list[int]
    fingerprint: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ParticleStats:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    def tensors(self) -> dict[str, torch.Tensor]:
        """Float32 tensors ``vel_mean, vel_std, acc_mean, acc_std: (D,)``, ``params_mean,
        params_std: (P,)``."""
        return {k: torch.tensor(getattr(self, k), dtype=torch.float32)
                for k in ("vel_mean", "vel_std", "acc_mean", "acc_std", "params_mean", "params_std")}

    def lagrangebench(self) -> dict[str, list[float]]:
        """The four metadata.json keys LagrangeBench normalises with."""
        return {k: list(getattr(self, k)) for k in ("vel_mean", "vel_std", "acc_mean", "acc_std")}


def fingerprint(traj: ParticleTrajectories) -> str:
    """A short hash of the split's trajectory names and shapes (what the cache must match)."""
    text = repr([(k, s) for k, s in zip(traj.file.keys, traj.file.shapes)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def compute_particle_stats(traj: ParticleTrajectories, step: int = 1, *, chunk: int = 64,
                           progress: bool = True) -> ParticleStats:
    """One streaming pass over ``traj`` (``chunk`` frames in memory at a time)."""
    if step < 1:
        raise ValueError(f"compute_particle_stats: step must be >= 1, got {step}")
    D = traj.dim
    vel, acc = _Moments(D), _Moments(D)
    box = traj.box
    for i in tqdm(range(len(traj)), desc="particle stats", disable=not progress, leave=False):
        T = traj.n_frames(i)
        moving = traj.dynamic(i)
        for s in range(0, max(T - step, 0), chunk):
            x = traj.read(i, s, min(T, s + chunk + 2 * step)).astype(np.float64)[:, moving]  # (t, n, D)
            v = box.displacement(x[step:], x[:-step])  # v[j] = x[s+j+step] - x[s+j]
            a = v[step:] - v[:-step]
            m = min(chunk, v.shape[0])
            vel.add(v[:m].reshape(-1, D).T)
            acc.add(a[: min(chunk, a.shape[0])].reshape(-1, D).T)
    p = np.asarray([traj.params(i) for i in range(len(traj))], dtype=np.float64).reshape(len(traj), -1)
    safe = lambda s: np.where(s > 0, s, 1.0)  # noqa: E731  (a constant never divides by zero)
    return ParticleStats(
        dim=D, step=step,
        vel_mean=vel.mean.tolist(), vel_std=safe(vel.std()).tolist(),
        acc_mean=acc.mean.tolist(), acc_std=safe(acc.std()).tolist(),
        params=traj.param_names,
        params_mean=p.mean(axis=0).tolist() if p.size else [],
        params_std=safe(p.std(axis=0)).tolist() if p.size else [],
        n_trajectories=len(traj), n_samples=int(vel.n[0]) if D else 0,
        kinematic_types=traj.kinematic_types, fingerprint=fingerprint(traj),
    )


def load_or_compute_particle_stats(path: str | os.PathLike, traj: ParticleTrajectories, step: int = 1,
                                   progress: bool = True) -> ParticleStats:
    """Read ``path`` (``stats.yaml``) if it matches ``traj`` and ``step``; otherwise compute the
    statistics and write them atomically."""
    path = Path(path)
    if path.is_file():
        try:
            cached = ParticleStats.from_dict(yaml.safe_load(path.read_text())[CACHE_KEY])
            if (cached.fingerprint == fingerprint(traj) and cached.step == step
                    and cached.params == traj.param_names and cached.kinematic_types == traj.kinematic_types):
                return cached
        except (KeyError, TypeError, yaml.YAMLError):
            pass  # stale or foreign file: recompute
    stats = compute_particle_stats(traj, step, progress=progress)
    doc = {**stats.lagrangebench(), CACHE_KEY: stats.to_dict()}
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    return stats

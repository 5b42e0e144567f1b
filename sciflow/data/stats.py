"""Per-channel normalisation statistics, computed over the training split in one streaming pass.

Means and variances of each trajectory are computed in float64 and merged with Chan's parallel
update, so the result does not depend on how the data is chunked and does not lose precision on
long sums. Only fluid cells (mask True) count. Statistics of the frame-to-frame change at the
model's time step (``*_delta``) scale residual targets.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from sciflow.data.format import atomic_path
from sciflow.data.trajectories import Trajectories


@dataclass
class Stats:
    """Normalisation statistics. Channel lists follow ``channels``; params follow ``params``."""

    channels: list[str]
    mean: list[float]
    std: list[float]
    mean_delta: list[float]
    std_delta: list[float]
    delta_step: int
    params: list[str]
    params_mean: list[float]
    params_std: list[float]
    n_trajectories: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Stats:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    def tensors(self) -> dict[str, torch.Tensor]:
        """Float32 tensors: ``mean, std, std_delta: (C,)``, ``params_mean, params_std: (P,)``."""
        return {k: torch.tensor(getattr(self, k), dtype=torch.float32)
                for k in ("mean", "std", "mean_delta", "std_delta", "params_mean", "params_std")}


class _Moments:
    """Running count / mean / M2 per channel, merged with Chan's formula."""

    def __init__(self, c: int):
        self.n = np.zeros(c)
        self.mean = np.zeros(c)
        self.m2 = np.zeros(c)

    def add(self, x: np.ndarray) -> None:
        """x: (C, N) float64 samples of each channel."""
        nb = x.shape[1]
        if nb == 0:
            return
        mb = x.mean(axis=1)
        m2b = ((x - mb[:, None]) ** 2).sum(axis=1)
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * nb / n
        self.m2 = self.m2 + m2b + delta**2 * self.n * nb / n
        self.n = n

    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / np.maximum(self.n, 1))


def compute_stats(traj: Trajectories, delta_step: int = 1, progress: bool = True) -> Stats:
    """One pass over ``traj``: channel moments over fluid cells, and of ``u(t+step) - u(t)``."""
    C = len(traj.channel_names)
    mom, dmom = _Moments(C), _Moments(C)
    params = []
    for i in tqdm(range(len(traj)), desc="normalisation stats", disable=not progress, leave=False):
        u = traj.read(i).astype(np.float64)  # (T, C, *S)
        m = traj.mask(i)
        mom.add(np.moveaxis(u[:, :, m], 1, 0).reshape(C, -1))
        if u.shape[0] > delta_step:
            d = u[delta_step:] - u[:-delta_step]
            dmom.add(np.moveaxis(d[:, :, m], 1, 0).reshape(C, -1))
        params.append(traj.params(i))
    p = np.asarray(params, dtype=np.float64).reshape(len(traj), -1)
    # A constant channel or parameter keeps std 1 so normalising never divides by zero.
    safe = lambda s: np.where(s > 1e-12, s, 1.0)  # noqa: E731
    return Stats(
        channels=list(traj.channel_names),
        mean=mom.mean.tolist(), std=safe(mom.std()).tolist(),
        mean_delta=dmom.mean.tolist(), std_delta=safe(dmom.std()).tolist(),
        delta_step=delta_step,
        params=list(traj.param_names),
        params_mean=p.mean(axis=0).tolist() if p.size else [],
        params_std=safe(p.std(axis=0)).tolist() if p.size else [],
        n_trajectories=len(traj),
    )


def load_or_compute_stats(path: str | os.PathLike, traj: Trajectories, delta_step: int = 1,
                          progress: bool = True) -> Stats:
    """Read ``stats.yaml`` if it matches the channels, parameters, trajectory count and step of
    ``traj``; otherwise compute it and write it atomically beside the data."""
    path = Path(path)
    if path.is_file():
        try:
            cached = Stats.from_dict(yaml.safe_load(path.read_text())["sciflow"])
            if (cached.channels == list(traj.channel_names) and cached.params == list(traj.param_names)
                    and cached.n_trajectories == len(traj) and cached.delta_step == delta_step):
                return cached
        except (KeyError, TypeError, yaml.YAMLError):
            pass  # stale or foreign file: recompute
    stats = compute_stats(traj, delta_step, progress)
    # Well-style per-field keys for other tools, plus the full record under 'sciflow'.
    doc = {
        "mean": dict(zip(stats.channels, stats.mean)),
        "std": dict(zip(stats.channels, stats.std)),
        "sciflow": stats.to_dict(),
    }
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    return stats

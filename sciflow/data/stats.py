"""Per-channel normalisation statistics, computed over the training split in one streaming pass.

Means and variances of each trajectory are computed in float64 and merged with Chan's parallel
update, so the result does not depend on how the data is chunked and does not lose precision on
long sums. Only fluid cells (mask True) count. Statistics of the frame-to-frame change at the
model's time step (``*_delta``) scale residual targets.

A NaN or Inf value in the data is refused with the file, trajectory, channel and frame, before any
statistic is written. ``stats.yaml`` records a fingerprint of what it was computed from (every
train file's name, size and modification time, the channels and the step), so editing, adding or
replacing a file recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from sciflow.data.errors import DataValueError
from sciflow.data.format import atomic_path
from sciflow.data.trajectories import Trajectories

# bump when the statistics change meaning, so older stats.yaml files are recomputed
STATS_VERSION = 2


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
    try:
        for i in tqdm(range(len(traj)), desc="normalisation stats", disable=not progress, leave=False):
            u = traj.read(i).astype(np.float64)  # (T, C, *S)
            m = traj.mask(i)
            _refuse_nonfinite(traj, i, u, m)
            mom.add(np.moveaxis(u[:, :, m], 1, 0).reshape(C, -1))
            if u.shape[0] > delta_step:
                d = u[delta_step:] - u[:-delta_step]
                dmom.add(np.moveaxis(d[:, :, m], 1, 0).reshape(C, -1))
            params.append(traj.params(i))
    finally:
        traj.close()
    p = np.asarray(params, dtype=np.float64).reshape(len(traj), -1)
    for k, name in enumerate(traj.param_names):
        bad = np.flatnonzero(~np.isfinite(p[:, k]))
        if bad.size:
            f, b = traj.index[bad[0]]
            raise DataValueError(f"{traj.files[f].path}: parameter {name!r} of trajectory {b} is "
                                 f"{p[bad[0], k]}; normalisation statistics need finite parameters")
    # A constant channel or parameter keeps std 1 so normalising never divides by zero.
    safe = lambda s: np.where(s > 1e-12, s, 1.0)  # noqa: E731
    for what, values in (("mean", mom.mean), ("std", mom.std()), ("std_delta", dmom.std())):
        if not np.isfinite(values).all():  # finite inputs whose squares overflow
            c = int(np.flatnonzero(~np.isfinite(values))[0])
            raise DataValueError(f"{traj.files[0].path} and the other train files: the {what} of channel "
                                 f"{traj.channel_names[c]!r} is {values[c]} (values too large?)")
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


def _refuse_nonfinite(traj: Trajectories, i: int, u: np.ndarray, mask: np.ndarray) -> None:
    """Raise naming the file, trajectory, channel and first frame when fluid cells hold NaN/Inf."""
    bad = ~np.isfinite(u[:, :, mask])  # (T, C, n_fluid)
    if not bad.any():
        return
    f, b = traj.index[i]
    c = int(np.flatnonzero(bad.any(axis=(0, 2)))[0])
    frame = int(np.flatnonzero(bad[:, c].any(axis=1))[0])
    raise DataValueError(
        f"{traj.files[f].path}: channel {traj.channel_names[c]!r} of trajectory {b} holds "
        f"{int(bad[:, c].sum())} NaN/Inf values (first in frame {frame}); normalisation statistics "
        f"would be NaN. Fix or remove the file (`sciflow data check` lists every bad value)"
    )


def source_key(path: str | os.PathLike, traj: Trajectories, delta_step: int) -> str:
    """Fingerprint of what statistics at ``path`` are computed from: each file's name (relative to
    the stats file's folder), size and modification time, the channels, parameters and step."""
    base = Path(path).resolve().parent
    files = []
    for wf in traj.files:
        st = wf.path.stat()
        full = wf.path.resolve()
        name = str(full.relative_to(base)) if full.is_relative_to(base) else full.name
        files.append([name, st.st_size, st.st_mtime_ns])
    record = {"version": STATS_VERSION, "files": files, "channels": list(traj.channel_names),
              "params": list(traj.param_names), "delta_step": int(delta_step)}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _cached(path: Path, key: str) -> Stats | None:
    """The statistics in ``path`` when its fingerprint is ``key`` and every value is finite."""
    if not path.is_file():
        return None
    try:
        doc = yaml.safe_load(path.read_text())
        if doc.get("source_key") != key:
            return None
        stats = Stats.from_dict(doc["sciflow"])
        numbers = [*stats.mean, *stats.std, *stats.mean_delta, *stats.std_delta, *stats.params_mean,
                   *stats.params_std]
        if not np.isfinite(np.asarray(numbers, dtype=np.float64)).all():
            return None
        return stats
    except (AttributeError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return None  # a damaged or foreign file is recomputed, never trusted


def load_or_compute_stats(path: str | os.PathLike, traj: Trajectories, delta_step: int = 1,
                          progress: bool = True) -> Stats:
    """Read ``stats.yaml`` if it was computed from exactly these files (same names, sizes and
    modification times), channels, parameters and step; otherwise compute it and write it
    atomically beside the data. NaN/Inf in the data raises :class:`DataValueError` naming the file
    and channel, and nothing is written."""
    path = Path(path)
    key = source_key(path, traj, delta_step)
    cached = _cached(path, key)
    if cached is not None:
        return cached
    stats = compute_stats(traj, delta_step, progress)
    # Well-style per-field keys for other tools, plus the full record under 'sciflow'.
    doc = {
        "mean": dict(zip(stats.channels, stats.mean)),
        "std": dict(zip(stats.channels, stats.std)),
        "sciflow": stats.to_dict(),
        "source_key": key,
    }
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    return stats

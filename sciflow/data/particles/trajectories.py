"""Particle trajectories of one split of a dataset folder, the training windows cut from them,
and the collate function that batches samples of different particle counts.

See :mod:`sciflow.data.particles` for the sample contract.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sciflow.data.particles.box import Box
from sciflow.data.particles.metadata import (
    SPLITS,
    ParticleFormatError,
    read_metadata,
    validate_metadata,
)
from sciflow.data.particles.reader import ParticleFile, warn_foreign_code


def split_path(root: str | os.PathLike, split: str) -> Path:
    """``<root>/<split>.h5``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return Path(root) / f"{split}.h5"


class ParticleTrajectories(Dataset):
    """The trajectories of ``<root>/<split>.h5``, with the dataset's ``metadata.json`` (or the
    ``metadata`` given, for a folder still being written).

    A ``force.py`` (or any ``*.py``) in ``root`` is reported with a :class:`ForeignCodeWarning` and
    never imported. Frames are checked when read: NaN/Inf or a particle outside ``bounds`` raises
    :class:`ParticleFormatError` naming the file, group, frame and particle.

    Item ``i``: ``{"position": (T, N, D) float32, "particle_type": (N,) int64, "params": (P,)
    float32, "traj": int}``.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", *,
                 metadata: Mapping[str, Any] | None = None):
        self.root = Path(root)
        self.split = split
        # `metadata` stands in for metadata.json while a writer is still assembling the folder
        self.metadata = (read_metadata(self.root) if metadata is None
                         else validate_metadata(metadata, f"{self.root} (metadata given)"))
        warn_foreign_code(self.root)
        self.box = Box.from_metadata(self.metadata)
        path = split_path(self.root, split)
        if not path.is_file():
            raise ParticleFormatError(f"{path}: no such file (split {split!r} of the dataset {self.root})")
        self.file = ParticleFile(path, self.metadata["parameter_names"], self.box)
        D = self.metadata["dim"]
        for i, (_, _, d) in enumerate(self.file.shapes):
            if d != D:
                raise ParticleFormatError(
                    f"{path}: group {self.file.keys[i]!r}/position: {d} coordinates per particle, metadata dim is {D}")

    # -- sizes -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.file)

    @property
    def dim(self) -> int:
        return int(self.metadata["dim"])

    @property
    def param_names(self) -> list[str]:
        return list(self.metadata["parameter_names"])

    @property
    def frame_dt(self) -> float:
        """Seconds between stored frames (``dt * write_every``)."""
        return float(self.metadata["frame_dt"])

    @property
    def kinematic_types(self) -> list[int]:
        return list(self.metadata["kinematic_particle_types"])

    def n_frames(self, i: int) -> int:
        return self.file.n_frames(i)

    def n_particles(self, i: int) -> int:
        return self.file.n_particles(i)

    # -- data ------------------------------------------------------------------------------------
    def read(self, i: int, start: int = 0, stop: int | None = None, step: int = 1) -> np.ndarray:
        """Frames ``start:stop:step`` of trajectory ``i``: ``(t, N, D)`` float32."""
        return self.file.read(i, start, stop, step)

    def particle_type(self, i: int) -> np.ndarray:
        """``(N,)`` int64."""
        return self.file.particle_type(i)

    def params(self, i: int) -> np.ndarray:
        """``(P,)`` float64, in the order of ``param_names``."""
        return self.file.params(i)

    def dynamic(self, i: int) -> np.ndarray:
        """``(N,)`` bool: the particle moves with the flow (its type is not kinematic)."""
        return ~np.isin(self.particle_type(i), self.kinematic_types)

    def case_attrs(self, i: int) -> dict[str, Any]:
        return self.file.case_attrs(i)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "position": torch.from_numpy(self.read(i)),
            "particle_type": torch.from_numpy(self.particle_type(i)),
            "params": torch.from_numpy(self.params(i).astype(np.float32)),
            "traj": i,
        }

    def __repr__(self) -> str:
        return f"ParticleTrajectories({os.fspath(self.root)!r}, split={self.split!r}, n={len(self)})"


class ParticleWindows(Dataset):
    """Windows of ``history + 1`` positions (``history`` input velocities) and ``horizon`` target
    positions after them.

    Frames inside a window are ``step`` stored frames apart (the model's time step); window starts
    are ``stride`` stored frames apart, from ``start``. Item: ``{"position": (history + 1, N, D),
    "target": (horizon, N, D), "particle_type": (N,) int64, "params": (P,), "traj": int,
    "t0": int}`` where ``position[-1]`` is the frame ``t0 + history * step``.
    """

    def __init__(self, trajectories: ParticleTrajectories, history: int = 5, horizon: int = 1, step: int = 1,
                 stride: int = 1, start: int = 0, max_windows_per_trajectory: int | None = None):
        for name, v in (("history", history), ("horizon", horizon), ("step", step), ("stride", stride)):
            if v < 1:
                raise ValueError(f"ParticleWindows: {name} must be >= 1, got {v}")
        self.traj = trajectories
        self.history, self.horizon, self.step, self.stride = history, horizon, step, stride
        self.span = (history + horizon) * step + 1
        self.index: list[tuple[int, int]] = []
        for i in range(len(trajectories)):
            starts = list(range(start, trajectories.n_frames(i) - self.span + 1, stride))
            if max_windows_per_trajectory is not None:
                starts = starts[:max_windows_per_trajectory]
            self.index += [(i, t) for t in starts]
        if not self.index:
            shortest = min((trajectories.n_frames(i) for i in range(len(trajectories))), default=0)
            raise ValueError(
                f"ParticleWindows: no window of {self.span} frames (history {history} + 1 positions and "
                f"horizon {horizon}, step {step}) fits in trajectories of {shortest} frames ({trajectories})")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, j: int) -> dict[str, Any]:
        i, t0 = self.index[j]
        frames = self.traj.read(i, t0, t0 + self.span, self.step)
        h = self.history + 1
        return {
            "position": torch.from_numpy(frames[:h]),
            "target": torch.from_numpy(frames[h:]),
            "particle_type": torch.from_numpy(self.traj.particle_type(i)),
            "params": torch.from_numpy(self.traj.params(i).astype(np.float32)),
            "traj": i,
            "t0": t0,
        }


PARTICLE_KEYS = ("position", "target")  # (t, N, D): concatenated along N


def collate_particles(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Batch samples of different particle counts by concatenating their particles (graph style).

    Returns ``position (t, sum N, D)``, ``target (k, sum N, D)`` (when present),
    ``particle_type (sum N,)``, ``batch (sum N,)`` (the sample each particle belongs to),
    ``n_particles (B,)``, ``params (B, P)``, ``traj (B,)`` and ``t0 (B,)`` (when present).
    """
    if not items:
        raise ValueError("collate_particles: empty batch")
    n = torch.tensor([int(it["particle_type"].shape[0]) for it in items])
    out: dict[str, torch.Tensor] = {
        "particle_type": torch.cat([it["particle_type"] for it in items]),
        "batch": torch.repeat_interleave(torch.arange(len(items)), n),
        "n_particles": n,
        "params": torch.stack([it["params"] for it in items]),
    }
    for key in PARTICLE_KEYS:
        if key in items[0]:
            out[key] = torch.cat([it[key] for it in items], dim=-2)
    for key in ("traj", "t0"):
        if key in items[0]:
            out[key] = torch.tensor([int(it[key]) for it in items])
    return out

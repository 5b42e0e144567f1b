"""The LightningDataModule for particle datasets: windows, loaders and a data spec.

It keeps the contracts of :class:`sciflow.data.datamodule.SciflowData` (``spec``, ``stats``,
``setup``, train / valid / test loaders, one-step and rollout evaluation sets) with a particle
sample in place of a grid sample (see :mod:`sciflow.data.particles`).
"""

from __future__ import annotations

import hashlib
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from sciflow.data.card import CardError, DatasetCard, load_card
from sciflow.data.particles.metadata import METADATA_FILE
from sciflow.data.particles.stats import ParticleStats, load_or_compute_particle_stats
from sciflow.data.particles.trajectories import (
    ParticleTrajectories,
    ParticleWindows,
    collate_particles,
)


class ParticleData(L.LightningDataModule):
    """Windows of a particle dataset's trajectories, split as the files are (train / valid / test).

    Args:
        card: dataset card name or path (``kind: particles``); optional when ``root`` is given
            (a LagrangeBench folder needs no card).
        root: dataset folder holding ``metadata.json`` and ``{train,valid,test}.h5``; default the
            card's.
        history: input velocities per window (GNS and LagrangeBench use 5, from 6 positions).
        time_step: stored frames per model step; default the card's (1 without a card).
        stride: stored frames between consecutive training windows.
        rollout_steps: model steps of the validation / test rollouts (from each trajectory's start).
        batch_size, num_workers: loader settings (workers open their own HDF5 handles).
        max_windows_per_trajectory: cap on training windows per trajectory (quick runs).
    """

    def __init__(
        self,
        card: str | None = None,
        root: str | None = None,
        history: int = 5,
        time_step: int | None = None,
        stride: int = 1,
        rollout_steps: int = 20,
        batch_size: int = 2,
        num_workers: int = 0,
        max_windows_per_trajectory: int | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        if card is None and root is None:
            raise ValueError("ParticleData: give a dataset card or a dataset folder (root)")
        self.card: DatasetCard | None = load_card(card) if card is not None else None
        if self.card is not None and self.card.kind != "particles":
            raise CardError(f"card {self.card.name!r} has kind {self.card.kind!r}; ParticleData reads "
                            f"'kind: particles' cards (use SciflowData for grids)")
        self.root = Path(root) if root is not None else self.card.data_dir()
        self.history = history
        self.time_step = time_step or (self.card.time_step if self.card else 1)
        self.stride = stride
        self.rollout_steps = rollout_steps
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.max_windows = max_windows_per_trajectory

    @property
    def name(self) -> str:
        return self.card.name if self.card else self.root.name

    def trajectories(self, split: str) -> ParticleTrajectories:
        if self.card is not None and self.card.problem and not (self.root / METADATA_FILE).is_file():
            raise FileNotFoundError(
                f"dataset {self.card.name!r}: no {METADATA_FILE} in {self.root}; generate it with "
                f"`sciflow data generate {self.card.name} --out {self.root}`")
        return ParticleTrajectories(self.root, split)

    @cached_property
    def stats(self) -> ParticleStats:
        return load_or_compute_particle_stats(self.root / "stats.yaml", self.trajectories("train"), self.time_step)

    @cached_property
    def spec(self) -> dict[str, Any]:
        """Data-derived sizes and statistics the surrogate is built from (plain types only)."""
        tr = self.trajectories("train")
        meta = tr.metadata
        card_hash = (self.card.hash if self.card else
                     hashlib.sha256((self.root / METADATA_FILE).read_bytes()).hexdigest())
        return {
            "kind": "particles",
            "card": self.name,
            "card_hash": card_hash,
            "dim": tr.dim,
            "particle_types": sorted(meta["particle_types"]),
            "kinematic_types": list(meta["kinematic_particle_types"]),
            "params": tr.param_names,
            "bounds": [list(b) for b in meta["bounds"]],
            "fluid_bounds": [list(b) for b in meta["fluid_bounds"]] if meta.get("fluid_bounds") else None,
            "periodic": list(meta["periodic_boundary_conditions"]),
            "radius": float(meta["default_connectivity_radius"]),
            "dx": float(meta["dx"]),
            "external_force": dict(meta["external_force"]),
            "num_particles_max": int(meta.get("num_particles_max", max(tr.n_particles(i) for i in range(len(tr))))),
            "history": self.history,
            "time_step": self.time_step,
            "frame_dt": tr.frame_dt,
            "dt": tr.frame_dt * self.time_step,
            "stats": self.stats.to_dict(),
        }

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.train_set = ParticleWindows(self.trajectories("train"), self.history, 1, self.time_step,
                                             self.stride, max_windows_per_trajectory=self.max_windows)
        if stage in (None, "fit", "validate"):
            self.val_sets = self._eval_sets("valid")
        if stage in (None, "test"):
            self.test_sets = self._eval_sets("test")

    def _eval_sets(self, split: str) -> list[ParticleWindows]:
        tr = self.trajectories(split)
        one_step = ParticleWindows(tr, self.history, 1, self.time_step, stride=self.time_step)
        rollout = ParticleWindows(tr, self.history, self.rollout_steps, self.time_step, stride=1,
                                  max_windows_per_trajectory=1)
        return [one_step, rollout]

    def _loader(self, ds: ParticleWindows, shuffle: bool) -> DataLoader:
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, collate_fn=collate_particles)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(ds, shuffle=False) for ds in self.val_sets]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(ds, shuffle=False) for ds in self.test_sets]

    def __repr__(self) -> str:
        return f"ParticleData(name={self.name!r}, root={os.fspath(self.root)!r})"

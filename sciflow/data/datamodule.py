"""The LightningDataModule: a dataset card -> train / valid / test loaders and a data spec."""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from sciflow.data.card import DatasetCard, load_card
from sciflow.data.errors import DataNotFoundError
from sciflow.data.stats import Stats, load_or_compute_stats
from sciflow.data.trajectories import Trajectories, Windows, check_same_dt, split_files


class SciflowData(L.LightningDataModule):
    """Windows of a dataset's trajectories, split by trajectory as the files are laid out.

    Args:
        card: dataset card name (``datasets/<card>.yaml``) or path to a card.
        root: dataset folder (holding ``data/{train,valid,test}``); default from the card.
        fields: stored fields the model sees and predicts, in order; default the card's.
        history: input frames per window.
        time_step: stored frames per model step (KS: 4 frames of 0.2 s = 0.8 s); default the card's.
        stride: stored frames between consecutive training windows.
        rollout_steps: model steps of the validation / test rollouts (from the first frame).
        batch_size, num_workers: loader settings (workers open their own HDF5 handles).
        max_windows_per_trajectory: cap on training windows per trajectory (quick runs).
    """

    def __init__(
        self,
        card: str = "cavity",
        root: str | None = None,
        fields: list[str] | None = None,
        history: int = 1,
        time_step: int | None = None,
        stride: int = 1,
        rollout_steps: int = 10,
        batch_size: int = 16,
        num_workers: int = 0,
        max_windows_per_trajectory: int | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.card: DatasetCard = load_card(card)
        self.root = self.card.data_dir(root)
        self.fields = fields or self.card.fields
        self.history = history
        self.time_step = time_step or self.card.time_step
        self.stride = stride
        self.rollout_steps = rollout_steps
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.max_windows = max_windows_per_trajectory

    # -- data ----------------------------------------------------------------------------------
    def trajectories(self, split: str) -> Trajectories:
        files = split_files(self.root, split)
        if not files:
            raise DataNotFoundError(
                f"dataset {self.card.name!r}: no files in {self.root / 'data' / split}; "
                f"generate them with `sciflow data generate {self.card.problem or self.card.name} --out {self.root}`"
                if self.card.problem else
                f"dataset {self.card.name!r}: no files in {self.root / 'data' / split}"
            )
        return Trajectories(files, self.fields)

    @cached_property
    def stats(self) -> Stats:
        return load_or_compute_stats(self.root / "stats.yaml", self.trajectories("train"), self.time_step)

    @cached_property
    def spec(self) -> dict[str, Any]:
        """Data-derived sizes and statistics the surrogate is built from (plain types only)."""
        tr = self.trajectories("train")
        return {
            "card": self.card.name,
            "card_hash": self.card.hash,
            "channels": list(tr.channel_names),
            "params": list(tr.param_names),
            "spatial_dims": list(tr.spatial_dims),
            "spatial_shape": list(tr.spatial_shape),
            "has_mask": bool(tr.has_mask),
            "periodic": bool(self.card.periodic),
            "history": self.history,
            "time_step": self.time_step,
            "dt": float(tr.dt() * self.time_step),
            "stats": self.stats.to_dict(),
        }

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.train_set = Windows(self.trajectories("train"), self.history, 1, self.time_step,
                                     self.stride, max_windows_per_trajectory=self.max_windows)
        if stage in (None, "fit", "validate"):
            self.val_sets = self._eval_sets("valid")
        if stage in (None, "test"):
            self.test_sets = self._eval_sets("test")

    def _eval_sets(self, split: str) -> list[Windows]:
        tr = self.trajectories(split)
        # the model's step is the train split's: an evaluation split at another dt is refused
        check_same_dt([self.trajectories("train").files[0], *tr.files])
        one_step = Windows(tr, self.history, 1, self.time_step, stride=self.time_step)
        rollout = Windows(tr, self.history, self.rollout_steps, self.time_step, stride=1,
                          max_windows_per_trajectory=1)
        return [one_step, rollout]

    def _loader(self, ds: Windows, shuffle: bool) -> DataLoader:
        return DataLoader(
            ds, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0, drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(ds, shuffle=False) for ds in self.val_sets]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(ds, shuffle=False) for ds in self.test_sets]

    def __repr__(self) -> str:
        return f"SciflowData(card={self.card.name!r}, root={os.fspath(self.root)!r})"

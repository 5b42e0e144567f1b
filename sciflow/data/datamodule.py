"""The LightningDataModule: a dataset card -> train / valid / test loaders and a data spec."""

from __future__ import annotations

import os
import warnings
from functools import cached_property
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from sciflow.data.card import DatasetCard, load_card
from sciflow.data.errors import DataNotFoundError
from sciflow.data.sampler import EpochSampler
from sciflow.data.stats import Stats, load_or_compute_stats
from sciflow.data.trajectories import Trajectories, Windows, check_same_dt, split_files

# What an evaluation batch is for; carried in each item as "task" so the model needs no loader index.
ONE_STEP, ROLLOUT = "one_step", "rollout"


class Tagged(Dataset):
    """Items of ``dataset`` with ``"task": task`` added (collated into a list of strings)."""

    def __init__(self, dataset: Dataset, task: str):
        self.dataset, self.task = dataset, task

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**self.dataset[i], "task": self.task}


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
        seed: seed of the training order (epoch ``e`` is shuffled by ``(seed, e)`` alone);
            default the run's ``seed_everything`` value (``PL_GLOBAL_SEED``), else 0.

    Evaluation items carry ``"task"``: ``"one_step"`` (every window, one step ahead) or
    ``"rollout"`` (the first window of each trajectory, ``rollout_steps`` ahead). The training
    order's position is part of the checkpoint (:meth:`state_dict`), so a run resumed in the
    middle of an epoch trains on the same batches as an uninterrupted one.
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
        seed: int | None = None,
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
        self.seed = seed
        self._resume: dict[str, int] | None = None
        self._train_sampler: EpochSampler | None = None

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

    def _eval_sets(self, split: str) -> list[Tagged]:
        tr = self.trajectories(split)
        # the model's step is the train split's: an evaluation split at another dt is refused
        check_same_dt([self.trajectories("train").files[0], *tr.files])
        one_step = Windows(tr, self.history, 1, self.time_step, stride=self.time_step)
        rollout = Windows(tr, self.history, self.rollout_steps, self.time_step, stride=1,
                          max_windows_per_trajectory=1)
        return [Tagged(one_step, ONE_STEP), Tagged(rollout, ROLLOUT)]

    @property
    def order_seed(self) -> int:
        """Seed of the training order (see ``seed``)."""
        return int(self.seed if self.seed is not None else os.environ.get("PL_GLOBAL_SEED", 0))

    def _loader(self, ds: Dataset, sampler: EpochSampler | None = None) -> DataLoader:
        # A private generator: drawing the loader's worker seed must not advance the global torch
        # generator, or runs that validate a different number of times would train differently.
        return DataLoader(
            ds, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0, drop_last=False,
            generator=torch.Generator().manual_seed(self.order_seed),
        )

    def train_dataloader(self) -> DataLoader:
        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        seed, resume = self.order_seed, None
        if self._resume:
            seed = int(self._resume.get("seed", seed))
            if int(self._resume.get("batch_size", self.batch_size)) != self.batch_size:
                warnings.warn(
                    f"resuming with batch_size {self.batch_size}, the checkpoint's run used "
                    f"{self._resume['batch_size']}: its interrupted epoch restarts from the beginning",
                    stacklevel=2,
                )
            else:
                resume = (int(self._resume["epoch"]), int(self._resume["batches"]) * self.batch_size)
            self._resume = None
        self._train_sampler = EpochSampler(self.train_set, seed=seed, shuffle=True, num_replicas=world,
                                           rank=rank, resume=resume)
        if resume is not None:
            # Lightning creates the resumed epoch's iterator before it sets the sampler's epoch, and
            # loader workers fetch indices at once: the sampler must already stand in that epoch
            self._train_sampler.set_epoch(resume[0])
        return self._loader(self.train_set, self._train_sampler)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(ds) for ds in self.val_sets]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(ds) for ds in self.test_sets]

    # -- resuming ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Where the training order stands, saved in each checkpoint: its seed, the epoch, and the
        batches of that epoch already trained (Lightning's count of processed batches)."""
        trainer = getattr(self, "trainer", None)
        if self._train_sampler is None or trainer is None:
            return {}
        epoch = int(self._train_sampler.epoch)
        done = int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
        if done >= trainer.num_training_batches:  # the epoch is over: a resumed run starts the next one
            epoch, done = epoch + 1, 0
        return {"seed": int(self._train_sampler.seed), "epoch": epoch, "batches": done,
                "batch_size": int(self.batch_size)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue the order of a checkpointed run: the next training loader skips the batches
        its interrupted epoch had already trained."""
        self._resume = dict(state_dict) if state_dict else None

    def __repr__(self) -> str:
        return f"SciflowData(card={self.card.name!r}, root={os.fspath(self.root)!r})"

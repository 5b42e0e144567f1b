"""Callbacks that tests plug into `sciflow fit` runs through the command line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import lightning as L
import torch


class RecordWeights(L.Callback):
    """At the end of training, write a hash of the weights per rank to ``<folder>/rank<r>.txt``."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        h = hashlib.sha256()
        for name, t in sorted(pl_module.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"rank{trainer.global_rank}.txt").write_text(f"{h.hexdigest()} {trainer.global_step}\n")


class PoisonLoss(L.Callback):
    """Make the weights NaN before optimiser step ``step`` so the next loss is NaN."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.global_step == self.step:
            with torch.no_grad():
                for p in pl_module.stepper.parameters():
                    p.fill_(float("nan"))


class FailOnRank(L.Callback):
    """Raise on one DDP rank once ``step`` optimiser steps are done (a rank failing mid-run)."""

    def __init__(self, rank: int, step: int):
        self.rank, self.step = rank, step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.global_rank == self.rank and trainer.global_step >= self.step:
            raise RuntimeError(f"injected failure on rank {self.rank} at step {trainer.global_step}")

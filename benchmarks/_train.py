"""Shared plumbing for benchmarks that train small surrogates: one resumable training run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from benchmarks._report import HERE
from sciflow.data.datamodule import SciflowData
from sciflow.data.format import atomic_path
from sciflow.surrogate import Surrogate

REPO = HERE.parent


def grid_spec(size: int = 64) -> dict[str, Any]:
    """The data spec of a small synthetic grid dataset of ``size x size`` (3 channels, a mask, the
    cavity's shapes), for benchmarks whose cost depends on shapes, not values."""
    import tempfile

    from tests.synthetic import make_dataset

    with tempfile.TemporaryDirectory() as tmp:
        card = make_dataset(Path(tmp) / "data", n=(2, 1, 1), shape=(size, size), frames=4)
        return SciflowData(str(card)).spec


class Progress(L.Callback):
    """Prints the loss every ``every`` steps (long jobs show progress)."""

    def __init__(self, label: str, every: int = 200):
        self.label, self.every, self.start = label, every, time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        step = trainer.global_step
        if step % self.every == 0 or step == trainer.max_steps:
            loss = float(outputs["loss"]) if isinstance(outputs, dict) else float(outputs)
            print(f"  {self.label}: step {step}/{trainer.max_steps}, loss {loss:.4g}, "
                  f"{time.perf_counter() - self.start:.0f} s wall, {time.process_time():.0f} s CPU", flush=True)


def train(ckpt: Path, model: dict[str, Any], data: dict[str, Any], *, steps: int, seed: int = 0) -> dict[str, Any]:
    """Train a Surrogate (``model``: its constructor arguments but data_spec; ``data``: SciflowData's)
    for ``steps`` optimiser steps on one CPU thread and save the checkpoint at ``ckpt`` with a
    ``.json`` beside it (settings, CPU seconds). An existing checkpoint is kept: the run is done."""
    info_path = ckpt.with_suffix(".json")
    if ckpt.exists() and info_path.exists():
        return json.loads(info_path.read_text())
    L.seed_everything(seed, verbose=False)
    dm = SciflowData(**data)
    dm.setup("fit")
    surrogate = Surrogate(**model, data_spec=dm.spec)
    trainer = L.Trainer(
        max_steps=steps, max_epochs=-1, gradient_clip_val=1.0, accelerator="cpu", devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[Progress(ckpt.stem)],
    )
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(surrogate, datamodule=dm)
    info = {
        "checkpoint": str(ckpt.relative_to(REPO)) if ckpt.is_relative_to(REPO) else str(ckpt),
        "model": model, "data": data, "steps": steps, "seed": seed,
        "parameters": sum(p.numel() for p in surrogate.stepper.parameters()),
        "train_windows": len(dm.train_set), "train_cpu_seconds": time.process_time() - cpu,
        "train_wall_seconds": time.perf_counter() - wall, "torch_threads": torch.get_num_threads(),
    }
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(ckpt) as tmp:
        trainer.save_checkpoint(tmp)
    with atomic_path(info_path) as tmp:
        tmp.write_text(json.dumps(info, indent=2))
    return info


__all__ = ["REPO", "Progress", "train"]

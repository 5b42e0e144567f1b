"""The weight EMA moves once per optimiser step (also under gradient accumulation), and DDP ranks
draw different generative noise."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from sciflow.data.datamodule import SciflowData
from sciflow.surrogate import Surrogate, rank_seed
from tests.test_training import TINY_FNO, sciflow, write_config


class RecordSteps(L.Callback):
    """Keeps the trained weights after every optimiser step (callbacks run before the module's
    own ``on_train_batch_end``, where the EMA is updated)."""

    def __init__(self):
        self.start: list[torch.Tensor] | None = None
        self.after_step: dict[int, list[torch.Tensor]] = {}
        self.batches = 0

    def on_train_start(self, trainer, pl_module):  # noqa: ANN001
        self.start = [p.detach().clone() for p in pl_module.stepper.parameters()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # noqa: ANN001
        self.batches += 1
        self.after_step[trainer.global_step] = [p.detach().clone() for p in pl_module.stepper.parameters()]


@pytest.mark.parametrize("accumulate", [1, 2])
def test_ema_updates_once_per_optimiser_step(synthetic_card, accumulate):
    dm = SciflowData(str(synthetic_card), batch_size=4)
    model = Surrogate(TINY_FNO, data_spec=dm.spec, ema_decay=0.5, lr=1e-2)
    rec = RecordSteps()
    trainer = L.Trainer(max_steps=4, accumulate_grad_batches=accumulate, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, callbacks=[rec])
    trainer.fit(model, dm)
    assert rec.batches == 4 * accumulate and sorted(rec.after_step) == list(range(accumulate == 1, 5))
    # the EMA by its definition: one lerp per optimiser step k = 1..4 towards the weights after it
    ema = copy.deepcopy(rec.start)
    for k in range(1, 5):
        decay = min(0.5, (1 + k) / (10 + k))
        ema = [e.lerp(p, 1 - decay) for e, p in zip(ema, rec.after_step[k])]
    for got, want in zip(model.ema.parameters(), ema):
        torch.testing.assert_close(got, want)


class RecordNoise(L.Callback):
    """Writes, per rank, the flow times and noise the stepper draws for its first batch."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # noqa: ANN001
        if trainer.global_step == 0:
            levels = pl_module.stepper.draw_levels(4, torch.device("cpu"))
            noise = torch.randn(4)
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / f"rank{trainer.global_rank}.json").write_text(
                json.dumps({"levels": levels.tolist(), "noise": noise.tolist()}))


def test_rank_seeds_are_distinct_and_rank0_keeps_the_run_seed():
    seeds = {rank_seed(0, r) for r in range(8)} | {rank_seed(1, r) for r in range(8)}
    assert len(seeds) == 16


@pytest.mark.slow
def test_ddp_ranks_draw_different_noise(synthetic_card, tmp_path):
    cfg_path = write_config(tmp_path / "c.yaml", synthetic_card, tmp_path / "run",
                            strategy="ddp", devices=2, max_steps=2, max_epochs=1, limit_val_batches=0)
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["model"]["stepper"] = {"class_path": "flow_matching", "init_args": {"n_steps": 2}}
    cfg_path.write_text(yaml.safe_dump(cfg))
    res = sciflow("fit", "--config", str(cfg_path), "--seed_everything", "0",
                  "--trainer.callbacks+=tests.test_ema_and_ranks.RecordNoise",
                  "--trainer.callbacks.folder", str(tmp_path / "noise"),
                  "--trainer.callbacks+=tests.callbacks.RecordWeights",
                  "--trainer.callbacks.folder", str(tmp_path / "w"))
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / "noise" / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["levels"] != r1["levels"] and r0["noise"] != r1["noise"]
    # the weights still agree across ranks (DDP averages the gradients)
    w0, w1 = ((tmp_path / "w" / f"rank{r}.txt").read_text() for r in (0, 1))
    assert w0 == w1

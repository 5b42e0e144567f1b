"""Training end to end through `sciflow fit`: checkpoints, NaN losses, two-process DDP, loggers.
(Killing and resuming runs: tests/test_resume.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from sciflow.data.datamodule import SciflowData
from sciflow.surrogate import NonFiniteLossError, Surrogate
from tests.callbacks import PoisonLoss

REPO = Path(__file__).resolve().parents[1]
TINY_FNO = {"class_path": "fno", "init_args": {"width": 8, "modes": 4, "n_layers": 1}}


def write_config(path: Path, card: Path, run: Path, **trainer) -> Path:
    cfg = {
        "model": {"operator": TINY_FNO, "lr": 1e-3, "ema_decay": 0.9},
        "data": {"card": str(card), "batch_size": 4, "rollout_steps": 3},
        "trainer": {
            "max_epochs": 2, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                       "init_args": {"save_dir": str(run), "name": "t"}},
            **trainer,
        },
        "checkpoint": {"dirpath": str(run / "checkpoints")},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def sciflow(*args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "sciflow.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_fit_writes_checkpoints_that_load_safely(synthetic_card, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", synthetic_card, tmp_path / "run")
    res = sciflow("fit", "--config", str(cfg))
    assert res.returncode == 0, res.stderr[-3000:]
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)  # must not need pickled code
    assert ckpt["sciflow"]["card"] == "synthetic"
    assert not any(k.endswith("_metadata") for k in ckpt["state_dict"])
    model = Surrogate.load(last)
    dm = SciflowData(str(synthetic_card), batch_size=4)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()[0]))
    out = model.predict_next(batch["input"], batch["params"], batch["mask"])
    assert out.shape == batch["target"][:, 0].shape
    assert torch.all(out[~batch["mask"].unsqueeze(1).expand_as(out)] == 0), "solid cells must stay zero"
    # reloading twice gives the same numbers (no state hidden outside the checkpoint)
    again = Surrogate.load(last).predict_next(batch["input"], batch["params"], batch["mask"])
    torch.testing.assert_close(out, again, rtol=0, atol=0)


def test_nan_loss_stops_with_the_step(synthetic_card, tmp_path):
    dm = SciflowData(str(synthetic_card), batch_size=4)
    model = Surrogate(TINY_FNO, data_spec=dm.spec)
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[PoisonLoss(step=3)])
    with pytest.raises(NonFiniteLossError, match="global step 3"):
        trainer.fit(model, dm)


@pytest.mark.slow
def test_two_process_ddp_on_cpu_agrees(synthetic_card, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", synthetic_card, tmp_path / "run",
                       strategy="ddp", devices=2, max_epochs=1)
    res = sciflow("fit", "--config", str(cfg), "--trainer.callbacks+=tests.callbacks.RecordWeights",
                  "--trainer.callbacks.folder", str(tmp_path / "w"))
    assert res.returncode == 0, res.stderr[-3000:]
    r0 = (tmp_path / "w" / "rank0.txt").read_text().split()
    r1 = (tmp_path / "w" / "rank1.txt").read_text().split()
    assert r0 == r1, f"ranks disagree: {r0} vs {r1}"
    # 6 training trajectories x 11 windows = 66 windows, split over 2 ranks, batch 4 -> 9 steps
    assert int(r0[1]) == 9


@pytest.mark.parametrize("logger", ["tensorboard", "wandb"])
def test_loggers_by_config(synthetic_card, tmp_path, monkeypatch, logger):
    """TensorBoard and wandb are a config change; wandb stays offline unless the user says otherwise."""
    from sciflow.cli import main

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path / "c.yaml", synthetic_card, tmp_path / "run", max_steps=2, max_epochs=1,
                       limit_val_batches=1)
    cls = {"tensorboard": "lightning.pytorch.loggers.TensorBoardLogger",
           "wandb": "lightning.pytorch.loggers.WandbLogger"}[logger]
    assert main(["fit", "--config", str(cfg), "--trainer.logger", cls, "--trainer.logger.save_dir", str(tmp_path / "logs")]) == 0
    if logger == "tensorboard":
        assert list((tmp_path / "logs").rglob("events.out.tfevents.*")), "no TensorBoard event file"
    else:
        assert os.environ["WANDB_MODE"] == "offline"
        assert list((tmp_path / "logs").rglob("offline-run-*")), "no offline wandb run"

"""The KS configs (configs/ks_*.yaml) train through `sciflow fit` on a tiny generated KS dataset.

Each config runs as published (same operator, stepper, schedule), with only the data location,
batch size, validation cadence and step count overridden, for two optimiser steps.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sciflow.data.datamodule import SciflowData
from sciflow.solvers.sweep import generate
from sciflow.surrogate import Surrogate

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "ks_deterministic": ("Deterministic", 1),
    "ks_flow_matching": ("FlowMatching", 4),
    "ks_refiner": ("Refiner", 4),
}


@pytest.fixture(scope="module")
def tiny_ks(tmp_path_factory) -> Path:
    """Card path of a 6-trajectory, 12-frame KS dataset made by the real solver and card."""
    root = tmp_path_factory.mktemp("ks")
    card = yaml.safe_load((REPO / "datasets" / "ks.yaml").read_text())
    card["frames"] = {"train": 12, "valid": 12, "test": 12}
    card["subsets"]["sines"]["cases"] = 6
    card["trajectories_per_file"] = 4
    card["path"] = "ksdata"
    path = root / "ks.yaml"
    path.write_text(yaml.safe_dump(card))
    from sciflow.data.card import load_card

    generate(load_card(path), progress=False)
    return path


def fit(config: str, card: Path, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    args = [
        sys.executable, "-m", "sciflow.cli", "fit", "--config", config if config.endswith(".yaml") else str(REPO / "configs" / f"{config}.yaml"),
        "--data.card", str(card), "--data.batch_size", "4", "--data.rollout_steps", "2",
        "--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
        "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false", *extra,
    ]
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def check_checkpoint(path: Path, card: Path, cls: str, calls: int) -> Surrogate:
    model = Surrogate.load(path)
    assert type(model.stepper).__name__ == cls
    assert model.inference_stepper.calls_per_step == calls
    assert model.ema is not None, "KS configs evaluate EMA weights"
    assert model.stepper.operator.periodic, "KS is periodic: the U-Net must pad circularly"
    n = sum(p.numel() for p in model.stepper.operator.parameters())
    assert 5e5 < n < 1e6, f"backbone has {n} parameters, the benchmark's is ~0.75 M"
    dm = SciflowData(str(card), batch_size=3, rollout_steps=2)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()[0]))
    out = model.predict_next(batch["input"], batch["params"], generator=torch.Generator().manual_seed(0))
    assert out.shape == batch["target"][:, 0].shape and torch.isfinite(out).all()
    return model


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_ks_config_trains_through_sciflow_fit(config, tiny_ks, tmp_path):
    res = fit(config, tiny_ks, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = tmp_path / "runs" / config / "checkpoints" / "last.ckpt"
    assert ckpt.is_file(), f"no last.ckpt under {ckpt.parent}: {sorted(p.name for p in tmp_path.rglob('*.ckpt'))}"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 2
    check_checkpoint(ckpt, tiny_ks, *CONFIGS[config])


@pytest.mark.slow
def test_refiner_config_warm_starts_from_a_deterministic_checkpoint(tiny_ks, tmp_path):
    res = fit("ks_deterministic", tiny_ks, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    det = tmp_path / "runs" / "ks_deterministic" / "checkpoints" / "last.ckpt"
    # a stepper spec cannot be overridden on the command line or by a second --config (jsonargparse
    # reads its class_path as an import path), so the warm start is a config of its own
    cfg = yaml.safe_load((REPO / "configs" / "ks_refiner.yaml").read_text())
    cfg["model"]["stepper"]["init_args"].update(K=1, level_weights=[3, 1], init_from=str(det))
    (tmp_path / "ks_refiner_warm.yaml").write_text(yaml.safe_dump(cfg))
    res = fit(str(tmp_path / "ks_refiner_warm.yaml"), tiny_ks, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    model = check_checkpoint(tmp_path / "runs" / "ks_refiner" / "checkpoints" / "last.ckpt", tiny_ks, "Refiner", 2)
    torch.testing.assert_close(model.stepper.level_probs, torch.tensor([0.75, 0.25]))


def test_ks_configs_share_one_backbone_and_schedule():
    """The benchmark compares steppers on the same operator and optimisation: the configs must agree."""
    cfgs = {name: yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text()) for name in CONFIGS}
    ref = cfgs["ks_deterministic"]
    for name, cfg in cfgs.items():
        for key in ("operator", "lr", "weight_decay", "warmup_steps", "min_lr_ratio", "ema_decay"):
            assert cfg["model"][key] == ref["model"][key], f"{name}: model.{key} differs from ks_deterministic"
        assert cfg["data"] == ref["data"], f"{name}: data section differs"
        assert cfg["trainer"]["max_steps"] == ref["trainer"]["max_steps"]
        assert cfg["model"]["stepper"]["init_args"]["residual"] is True
    assert ref["model"]["min_lr_ratio"] == 1.0, "constant rate after warm-up: budgets are checkpoints of one run"

"""The particle configs in ``configs/`` (cards of ``kind: particles``): each parses and trains for two
steps through ``sciflow fit`` on a tiny synthetic stand-in of its data (walls or a periodic box,
like the card); the checkpoint file it wrote then serves ``validate``, ``test`` and a resumed
``fit``.

Named here (so ``tests/test_configs.py`` leaves them alone): sph_tgv_gns.yaml,
sph_tgv_reduced_order.yaml, sph_dam_gns.yaml, sph_dam_reduced_order.yaml, sph_cavity_gns.yaml,
sph_cavity_reduced_order.yaml.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml

from sciflow.cli import main as sciflow_main
from sciflow.data.card import load_card
from tests.synthetic_particles import make_particle_dataset

REPO = Path(__file__).resolve().parents[1]


def _particle_configs() -> list[Path]:
    out = []
    for path in sorted((REPO / "configs").glob("*.yaml")):
        card = ((yaml.safe_load(path.read_text()) or {}).get("data") or {}).get("card")
        try:
            if card and load_card(card).kind == "particles":
                out.append(path)
        except (OSError, ValueError):
            continue
    return out


CONFIGS = _particle_configs()


def test_every_particle_config_is_named_in_this_file():
    text = Path(__file__).read_text()
    assert all(p.name in text for p in CONFIGS), [p.name for p in CONFIGS if p.name not in text]


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_trains_and_resumes_from_a_checkpoint_file(path, tmp_path, monkeypatch):
    """As tests/test_configs.py does for grids: fit two steps, then validate, test and a resumed
    fit from the checkpoint file it wrote."""
    cfg = yaml.safe_load(path.read_text())
    card = load_card(cfg["data"]["card"])
    walls = card.name != "sph_tgv"  # the only periodic particle card
    root = make_particle_dataset(tmp_path / "standin", walls=walls)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["sciflow"])
    ckpts = tmp_path / "ckpts"
    tiny = ["--config", str(path), "--data.root", str(root), "--data.history", str(min(3, cfg["data"]["history"])),
            "--data.num_workers", "0", "--data.rollout_steps", "2", "--trainer.limit_train_batches", "2",
            "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
            "--trainer.num_sanity_val_steps", "0", "--trainer.logger", "false", "--threads", "1",
            "--checkpoint.dirpath", str(ckpts)]

    def sciflow(command: str, *extra: str) -> None:
        assert sciflow_main([command, *tiny, *extra]) == 0, f"sciflow {command} --config {path.name} {extra}"

    sciflow("fit", "--trainer.max_steps", "2")
    last = ckpts / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["global_step"] == 2
    assert ckpt["hyper_parameters"]["operator"] == cfg["model"]["operator"]
    assert ckpt["hyper_parameters"]["data_spec"]["kind"] == "particles"
    assert (ckpts / "best.ckpt").is_file()  # val/rollout_mse was logged and followed
    sciflow("validate", "--ckpt_path", str(last))
    sciflow("test", "--ckpt_path", str(last))
    sciflow("fit", "--ckpt_path", str(last), "--trainer.max_steps", "3", "--trainer.limit_train_batches", "3")
    assert torch.load(last, weights_only=True)["global_step"] == 3

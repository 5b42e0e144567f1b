"""`sciflow fit | validate | test` as a user meets it: short errors naming what is wrong (tracebacks
only with --debug), resume requests that cannot be met fail instead of starting over, checkpoints
checked against the data, and the thread count."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from sciflow.checkpoints import CardMismatchWarning, VersionMismatchWarning
from sciflow.cli import main
from tests.synthetic import make_dataset

TINY = {"class_path": "fno", "init_args": {"width": 8, "modes": 4, "n_layers": 1}}


@pytest.fixture
def run(synthetic_card, tmp_path, monkeypatch):
    """A config for a 2-step run in tmp_path, and a function running `sciflow ARGS` there."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"operator": TINY, "ema_decay": 0.9},
        "data": {"card": str(synthetic_card), "batch_size": 8, "rollout_steps": 2},
        "trainer": {"max_steps": 2, "accelerator": "cpu", "devices": 1, "logger": False, "limit_val_batches": 1,
                    "val_check_interval": 2,
                    "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0},
        "checkpoint": {"dirpath": "ck"},
    }))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["sciflow"])

    def sciflow(*args: str) -> int:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="lightning")
            return main(list(args))

    sciflow.config = cfg
    return sciflow


def error_of(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err


def test_parse_errors_are_short_and_point_at_the_right_help(run, capsys, tmp_path):
    assert run("fit", "--config", "nope.yaml") == 2
    err = error_of(capsys)
    assert "sciflow fit: error:" in err and "nope.yaml" in err and "does not exist" in err
    assert "`sciflow fit --help`" in err and "fit fit" not in err
    assert len(err.splitlines()) <= 3, "no usage dump"
    assert run("test", "--config", str(run.config), "--trainer.max_stepz", "3") == 2
    err = error_of(capsys)
    assert "unrecognized arguments: --trainer.max_stepz 3" in err and "`sciflow test --help`" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**yaml.safe_load(run.config.read_text()), "model": {"operator": TINY, "lrr": 1}}))
    assert run("fit", "--config", str(bad)) == 2
    assert "lrr" in error_of(capsys)


def test_data_errors_name_the_file(run, capsys, synthetic_card):
    assert run("fit", "--config", str(run.config), "--data.card", "missing/card.yaml") == 1
    err = error_of(capsys)
    assert "no dataset card 'missing/card.yaml'" in err and "--debug" in err
    victim = synthetic_card.parent / "data" / "train" / "case_0001.hdf5"
    victim.write_bytes(victim.read_bytes()[:1000])
    (synthetic_card.parent / "stats.yaml").unlink(missing_ok=True)
    assert run("fit", "--config", str(run.config)) == 1
    err = error_of(capsys)
    assert "case_0001.hdf5" in err and "Call to compute_fn" not in err
    with pytest.raises(Exception, match="case_0001.hdf5"):  # --debug: the exception itself
        run("fit", "--config", str(run.config), "--debug")


def test_checkpoint_errors(run, capsys, tmp_path):
    assert run("test", "--config", str(run.config), "--ckpt_path", "nothere.ckpt") == 1
    assert "nothere.ckpt: no such checkpoint file" in error_of(capsys)
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    assert run("validate", "--config", str(run.config), "--ckpt_path", "foreign.ckpt") == 1
    assert "foreign.ckpt: not a sciflow checkpoint" in error_of(capsys)


def test_resume_without_a_checkpoint_fails_and_a_rerun_does_not_overwrite(run, capsys, tmp_path):
    assert run("fit", "--config", str(run.config), "--ckpt_path", "last") == 1
    err = error_of(capsys)
    assert "--ckpt_path last: no checkpoint to resume" in err and "ck/last.ckpt does not exist" in err
    assert not (tmp_path / "ck").exists(), "nothing may be trained or written"
    assert run("fit", "--config", str(run.config)) == 0
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["best.ckpt", "last.ckpt"]
    capsys.readouterr()
    before = (tmp_path / "ck" / "last.ckpt").read_bytes()
    assert run("fit", "--config", str(run.config)) == 1
    err = error_of(capsys)
    assert "already holds checkpoints of an earlier run (best.ckpt, last.ckpt)" in err and "--ckpt_path last" in err
    assert (tmp_path / "ck" / "last.ckpt").read_bytes() == before
    # resuming continues the run in place: the documented names keep naming its files
    assert run("fit", "--config", str(run.config), "--ckpt_path", "last", "--trainer.max_steps", "3") == 0
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)["global_step"] == 3
    assert run("test", "--config", str(run.config), "--ckpt_path", "best") == 0


def test_checkpoint_meets_other_data(run, capsys, tmp_path):
    assert run("fit", "--config", str(run.config)) == 0
    last = tmp_path / "ck" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    ckpt["sciflow"].update(card_hash="0" * 64, version="0.0.1")
    torch.save(ckpt, tmp_path / "old.ckpt")
    with pytest.warns(CardMismatchWarning, match="card changed since training"), \
            pytest.warns(VersionMismatchWarning, match="written by sciflow 0.0.1"):
        assert main(["test", "--config", str(run.config), "--ckpt_path", "old.ckpt"]) == 0
    small = make_dataset(tmp_path / "small", shape=(8, 8))
    capsys.readouterr()
    assert run("test", "--config", str(run.config), "--ckpt_path", str(last), "--data.card", str(small)) == 1
    assert "spatial_shape [16, 16] in the checkpoint differs from the data's [8, 8]" in error_of(capsys)


def test_checkpoint_hyperparameters_rebuild_the_model(run, capsys, tmp_path):
    """A checkpoint of another width tests under a config that says otherwise: its own
    hyperparameters (registry short names included) rebuild the model, with a warning."""
    cfg = yaml.safe_load(run.config.read_text())
    cfg["model"]["operator"] = {"class_path": "fno", "init_args": {"width": 12, "modes": 4, "n_layers": 1}}
    (tmp_path / "wide.yaml").write_text(yaml.safe_dump(cfg))
    assert run("fit", "--config", str(tmp_path / "wide.yaml")) == 0
    capsys.readouterr()
    with pytest.warns(UserWarning, match=r"checkpoint's hyperparameters are used: model.operator"):
        assert main(["validate", "--config", str(run.config), "--ckpt_path", "ck/last.ckpt"]) == 0


def test_threads_flag_and_config_key(run, capsys, caplog, tmp_path):
    with caplog.at_level(logging.INFO):
        assert run("fit", "--config", str(run.config), "--threads", "2") == 0
    assert "sciflow: 2 torch threads per process (as requested)" in caplog.text
    assert torch.get_num_threads() == 2
    assert torch.load(Path("ck/last.ckpt"), weights_only=True)["sciflow"]["threads"] == 2
    cfg = yaml.safe_load(run.config.read_text())
    cfg["threads"] = 0
    (tmp_path / "zero.yaml").write_text(yaml.safe_dump(cfg))
    assert run("validate", "--config", str(tmp_path / "zero.yaml")) == 1
    assert "threads must be >= 1, got 0" in error_of(capsys)

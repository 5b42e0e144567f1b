"""Deep ensembles: `sciflow ensemble` trains distinct members into one folder, resumes member by
member, and loading refuses missing, corrupt, mismatched or identical members by name."""

from __future__ import annotations

import json
import os

import lightning as L
import pytest
import torch
import yaml

from sciflow.cli import main
from sciflow.data.datamodule import SciflowData
from sciflow.ensemble import (
    EnsembleError,
    Manifest,
    Member,
    file_sha256,
    load_members,
    load_models,
    member_seeds,
    train_ensemble,
    weights_digest,
)
from sciflow.surrogate import Surrogate
from tests.test_evaluate import TINY_FNO, save_checkpoint
from tests.test_training import REPO, sciflow, write_config


class FailForSeed(L.Callback):
    """Exit abruptly (as a crash would) in the run seeded with ``seed``, after one step."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # noqa: ANN001
        if torch.initial_seed() == self.seed:
            os._exit(17)


def _fake_ensemble(folder, spec, n=2, specs=None):
    """An ensemble folder with ``n`` untrained members (distinct initial weights) and a manifest."""
    members = []
    for i, seed in enumerate(member_seeds(0, n)):
        torch.manual_seed(seed)
        model = Surrogate(TINY_FNO, data_spec=(specs or [spec] * n)[i])
        path = folder / f"member_{i}" / "m.ckpt"
        path.parent.mkdir(parents=True)
        save_checkpoint(model, path)
        members.append(Member(f"member_{i}", seed, "done", f"member_{i}/m.ckpt", file_sha256(path)))
    Manifest(size=n, seed=0, config_sha256="0", members=members).write(folder)
    return folder


@pytest.fixture
def spec(synthetic_card):
    return SciflowData(str(synthetic_card)).spec


def test_member_seeds_are_distinct_and_stable():
    seeds = member_seeds(0, 8)
    assert len(set(seeds)) == 8 and member_seeds(0, 3) == seeds[:3] and member_seeds(1, 3) != seeds[:3]
    assert all(0 <= s < 2**32 for s in seeds)


def test_a_good_folder_loads_in_one_call(spec, tmp_path):
    folder = _fake_ensemble(tmp_path / "ens", spec, n=3)
    models = load_members(folder)
    assert len(models) == 3 and len({weights_digest(m) for m in models}) == 3


def test_bad_ensembles_are_refused_by_name(spec, tmp_path):
    with pytest.raises(EnsembleError, match="at least 2 members, got 1"):
        train_ensemble(REPO / "configs" / "cavity_fno.yaml", 1, tmp_path / "one")
    with pytest.raises(SystemExit, match="at least 2 members"):
        main(["ensemble", "--config", str(REPO / "configs" / "cavity_fno.yaml"), "--members", "1",
              "--out", str(tmp_path / "one")])
    with pytest.raises(EnsembleError, match="no ensemble.json"):
        load_members(tmp_path)
    # a missing member
    folder = _fake_ensemble(tmp_path / "missing", spec)
    (folder / "member_1" / "m.ckpt").unlink()
    with pytest.raises(EnsembleError, match="member_1: checkpoint .* is missing"):
        load_members(folder)
    # a corrupt member: truncated after training
    folder = _fake_ensemble(tmp_path / "corrupt", spec)
    path = folder / "member_0" / "m.ckpt"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(EnsembleError, match="member_0: checkpoint .* corrupt or was changed"):
        load_members(folder)
    with pytest.raises(EnsembleError, match=f"{path}: cannot load checkpoint"):
        load_models([path, folder / "member_1" / "m.ckpt"])
    # an unfinished member
    folder = _fake_ensemble(tmp_path / "pending", spec)
    manifest = Manifest.read(folder)
    manifest.members[1].status = "pending"
    manifest.write(folder)
    with pytest.raises(EnsembleError, match="member_1 is not trained yet"):
        load_members(folder)
    # members on other channels or another dt
    for key, value in (("dt", 0.2), ("channels", ["velocity_x", "velocity_y", "p"])):
        folder = _fake_ensemble(tmp_path / key, spec, specs=[spec, {**spec, key: value}])
        with pytest.raises(EnsembleError, match=f"ens/member_1: {key} .* differs from .*member_0"
                           .replace("ens/", f"{key}/")):
            load_members(folder)
    # identical members: copies are refused, by name, also as plain checkpoints
    folder = _fake_ensemble(tmp_path / "copies", spec)
    (folder / "member_1" / "m.ckpt").write_bytes((folder / "member_0" / "m.ckpt").read_bytes())
    manifest = Manifest.read(folder)
    manifest.members[1].sha256 = file_sha256(folder / "member_1" / "m.ckpt")
    manifest.write(folder)
    with pytest.raises(EnsembleError, match="copies/member_0 and copies/member_1 have identical weights"):
        load_members(folder)
    ckpt = str(folder / "member_0" / "m.ckpt")
    with pytest.raises(EnsembleError, match="identical weights"):
        load_models([ckpt, ckpt])


def test_rollout_needs_checkpoints_or_an_ensemble(synthetic_card):
    with pytest.raises(SystemExit, match="give --ckpt .* and/or --ensemble DIR"):
        main(["rollout", "--data", str(synthetic_card)])


@pytest.mark.slow
def test_ensemble_command_trains_distinct_members_and_resumes(synthetic_card, tmp_path):
    """Two members; the second crashes the first time. The first is kept, the rerun trains only
    the second, the members differ, and the folder rolls out with --ensemble."""
    cfg = write_config(tmp_path / "c.yaml", synthetic_card, tmp_path / "unused", max_steps=3, max_epochs=1,
                       limit_val_batches=0)
    out = tmp_path / "ens"
    second = member_seeds(0, 2)[1]
    crash = sciflow("ensemble", "--config", str(cfg), "--members", "2", "--out", str(out), "--",
                    "--trainer.callbacks+=tests.test_ensemble.FailForSeed", "--trainer.callbacks.seed", str(second))
    assert crash.returncode != 0 and "member_1 (exit code 17)" in crash.stderr, crash.stderr[-3000:]
    assert "trained members kept: member_0" in crash.stderr
    manifest = json.loads((out / "ensemble.json").read_text())
    assert [m["status"] for m in manifest["members"]] == ["done", "pending"]
    first = out / manifest["members"][0]["checkpoint"]
    stamp = first.stat().st_mtime_ns
    # the rerun as parallel processes (here one is left): each member logs to its own file
    again = sciflow("ensemble", "--config", str(cfg), "--members", "2", "--out", str(out), "--parallel", "2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 trained, 1 to train" in again.stdout
    assert (out / "member_1" / "fit.log").stat().st_size > 0
    assert first.stat().st_mtime_ns == stamp  # the finished member was not retrained
    manifest = json.loads((out / "ensemble.json").read_text())
    assert [m["seed"] for m in manifest["members"]] == member_seeds(0, 2)
    assert all(m["status"] == "done" and m["cpu_seconds"] > 0 for m in manifest["members"])
    assert yaml.safe_load((out / "config.yaml").read_text()) == yaml.safe_load(cfg.read_text())
    a, b = load_members(out)
    assert weights_digest(a) != weights_digest(b)
    # distinct seeds: distinct initial weights and data order, so the trained operators differ
    diff = [(p - q).abs().max().item() for p, q in zip(a.ema.parameters(), b.ema.parameters())]
    assert max(diff) > 1e-3
    assert main(["rollout", "--ensemble", str(out), "--data", str(synthetic_card), "--steps", "2",
                 "--trajectories", "1", "--no-plots", "--out", str(tmp_path / "r.nc")]) == 0

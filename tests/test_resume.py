"""Fault injection in training: SIGKILLs at random points (mid-epoch, inside a checkpoint write,
from outside at a random moment) followed by `sciflow fit --ckpt_path last` end with the weights,
EMA and optimiser state of an uninterrupted run; a full disk and a read-only checkpoint folder fail
with a message and leave the last checkpoint loadable; a failing DDP rank stops every rank.

`SCIFLOW_FAULT_ROUNDS=N` adds N more random external kills to the resume test, and
`SCIFLOW_FAULT_SEED=S` draws other kill points (docs/reliability.md).
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from sciflow.checkpoints import stale_temporaries
from sciflow.cli import main as sciflow_main
from tests import faults
from tests.synthetic import make_dataset

TINY_FNO = {"class_path": "fno", "init_args": {"width": 8, "modes": 4, "n_layers": 1}}
EXTRA_ROUNDS = int(os.environ.get("SCIFLOW_FAULT_ROUNDS", "0"))
# 6 training trajectories x 11 windows = 66 windows; batch 4 -> 17 steps per epoch; one more epoch
# per extra kill, so that each finds the run still training
STEPS_PER_EPOCH, EPOCHS = 17, 3 + EXTRA_ROUNDS
SEED = int(os.environ.get("SCIFLOW_FAULT_SEED", "0"))


def write_config(path: Path, card: Path, *, stepper: dict | None = None, workers: int = 0, **trainer) -> Path:
    """A tiny run: FNO (+ a stepper), EMA, checkpoints every 4 steps, validation every 8 batches."""
    cfg = {
        "model": {"operator": TINY_FNO, "stepper": stepper, "lr": 1e-3, "ema_decay": 0.9},
        "data": {"card": str(card), "batch_size": 4, "rollout_steps": 3, "num_workers": workers},
        "trainer": {
            "max_epochs": EPOCHS, "accelerator": "cpu", "devices": 1, "logger": False,
            "enable_progress_bar": False, "enable_model_summary": False, "val_check_interval": 8,
            "limit_val_batches": 2, **trainer,
        },
        "checkpoint": {"dirpath": "run/checkpoints", "every_n_train_steps": 4},
        "threads": 1,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def assert_same_training_state(a: dict, b: dict) -> None:
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert any(k.startswith("ema.") for k in a["state_dict"]), "the run must keep an EMA"
    for key in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][key], b["state_dict"][key], msg=f"state_dict[{key}]")
    torch.testing.assert_close(a["optimizer"], b["optimizer"], msg="optimizer state")
    assert a["schedulers"] == b["schedulers"]


@pytest.mark.slow
def test_sigkilled_training_resumes_to_the_uninterrupted_weights(tmp_path):
    """Flow matching (random noise in every loss), two data workers, validation mid-epoch: the
    data order, the random streams, the EMA and the optimiser all have to come back exactly."""
    rng = random.Random(SEED)
    card = make_dataset(tmp_path / "data")
    cfg = write_config(tmp_path / "c.yaml", card, stepper={"class_path": "flow_matching",
                                                            "init_args": {"n_steps": 2}}, workers=2)
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "faulted"
    ref_dir.mkdir(), run_dir.mkdir()
    ref = faults.run("fit", "--config", str(cfg), cwd=ref_dir)
    assert ref.returncode == 0, ref.stderr[-3000:]
    last = run_dir / "run" / "checkpoints" / "last.ckpt"
    fit = ("fit", "--config", str(cfg))
    resume = (*fit, "--ckpt_path", "last")
    kills: list[str] = []

    # 1. SIGKILL just after the first epoch ended: the resume starts epoch 1 from its checkpoint
    res = faults.run(*fit, "--trainer.callbacks+=tests.faults.KillAtStep",
                     f"--trainer.callbacks.step={STEPS_PER_EPOCH + 1}", cwd=run_dir)
    assert res.returncode == -9, res.stderr[-3000:]
    kills.append(f"just after the epoch ending at step {STEPS_PER_EPOCH}")
    assert torch.load(last, weights_only=True)["global_step"] == STEPS_PER_EPOCH

    # 2. SIGKILL in the middle of epoch 1, at a random step after its first checkpoint (a later
    # epoch than the first: the resumed loader must start in that epoch's order)
    step = rng.randint(STEPS_PER_EPOCH + 5, 2 * STEPS_PER_EPOCH - 1)
    res = faults.run(*resume, "--trainer.callbacks+=tests.faults.KillAtStep", f"--trainer.callbacks.step={step}",
                     cwd=run_dir)
    assert res.returncode == -9, res.stderr[-3000:]
    kills.append(f"mid-epoch at step {step}")
    assert STEPS_PER_EPOCH < torch.load(last, weights_only=True)["global_step"] < step

    # 3. SIGKILL inside the writer of a checkpoint: the half-written temporary file stays a
    # temporary file, last.ckpt keeps the previous checkpoint
    at = rng.randint(1, 3)
    before = last.read_bytes()
    res = faults.run(*resume, "--trainer.callbacks+=tests.faults.KillInCheckpointWrite",
                     f"--trainer.callbacks.at={at}", cwd=run_dir)
    assert res.returncode == -9, res.stderr[-3000:]
    kills.append(f"inside checkpoint write {at} of the resumed run")
    assert stale_temporaries(last.parent), "the killed writer should leave its temporary file"
    if at == 1:
        assert last.read_bytes() == before
    torch.load(last, weights_only=True)  # whatever it holds, it is whole

    # 4+. SIGKILL from outside at a random moment after the run has written a checkpoint
    for _ in range(1 + EXTRA_ROUNDS):
        mtime = last.stat().st_mtime_ns
        proc = faults.start(*resume, cwd=run_dir)
        res = faults.kill_when(proc, lambda m=mtime: last.stat().st_mtime_ns != m, delay=rng.uniform(0, 1.5))
        if res.returncode == -9:
            kills.append(f"external, last checkpoint at step {torch.load(last, weights_only=True)['global_step']}")
        else:
            assert res.returncode == 0, res.stderr[-3000:]
            break

    # resume until done
    for _ in range(3):
        res = faults.run(*resume, cwd=run_dir)
        assert res.returncode == 0, res.stderr[-3000:]
        if torch.load(last, weights_only=True)["global_step"] == STEPS_PER_EPOCH * EPOCHS:
            break
    (tmp_path / "kills.txt").write_text("\n".join(kills) + "\n")
    assert len(kills) >= 4, kills
    assert not stale_temporaries(last.parent), "resuming removes temporary files of killed writers"
    assert_same_training_state(faults.load_state(ref_dir / "run" / "checkpoints" / "last.ckpt"),
                               faults.load_state(last))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A folder with a tiny deterministic run's config, data and checkpoints after 8 steps."""
    root = tmp_path_factory.mktemp("trained")
    card = make_dataset(root / "data")
    cfg = write_config(root / "c.yaml", card, max_steps=8)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert sciflow_main(["fit", "--config", str(cfg)]) == 0
    finally:
        os.chdir(cwd)
    return root


def _copy(trained: Path, dest: Path) -> Path:
    shutil.copytree(trained, dest)
    return dest


@pytest.mark.slow
def test_full_disk_fails_clearly_and_keeps_the_last_checkpoint(trained, tmp_path):
    run = _copy(trained, tmp_path / "run")
    last = run / "run" / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    # every file the process writes is capped below a checkpoint's size: the next save hits EFBIG
    res = faults.run("fit", "--config", str(run / "c.yaml"), "--ckpt_path", "last", "--trainer.max_steps", "16",
                     cwd=run, preexec=faults.limit_file_size(len(before) // 2))
    assert res.returncode == 1, res.stderr[-3000:]
    message = res.stderr.strip().splitlines()
    assert any("cannot write checkpoint" in line and "last.ckpt" in line and "File too large" in line
               for line in message), res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert last.read_bytes() == before, "the previous last.ckpt must be untouched"
    assert torch.load(last, weights_only=True)["global_step"] == 8
    assert not stale_temporaries(last.parent)


@pytest.mark.slow
def test_read_only_checkpoint_folder_fails_clearly(trained, tmp_path):
    run = _copy(trained, tmp_path / "run")
    folder = run / "run" / "checkpoints"
    last = folder / "last.ckpt"
    before = last.read_bytes()
    folder.chmod(0o555)
    try:
        res = faults.run("fit", "--config", str(run / "c.yaml"), "--ckpt_path", "last", "--trainer.max_steps", "16",
                         cwd=run, preexec=faults.without_root_file_powers)
    finally:
        folder.chmod(0o755)
    if "prctl" in res.stderr:
        pytest.skip("cannot drop root's file capabilities here")
    assert res.returncode == 1, res.stderr[-3000:]
    assert any("cannot write checkpoint" in line and "Permission denied" in line
               for line in res.stderr.splitlines()), res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert last.read_bytes() == before
    assert torch.load(last, weights_only=True)["global_step"] == 8


@pytest.mark.slow
@pytest.mark.parametrize("rank", [1])
def test_failing_ddp_rank_stops_every_rank(trained, tmp_path, rank):
    """Two gloo processes on the CPU; one raises mid-run: both stop with a message, no hang."""
    run = _copy(trained, tmp_path / "run")
    shutil.rmtree(run / "run")
    res = faults.run(
        "fit", "--config", str(run / "c.yaml"), "--trainer.strategy", "ddp", "--trainer.devices", "2",
        "--trainer.max_steps", "6", "--trainer.callbacks+=tests.callbacks.FailOnRank",
        f"--trainer.callbacks.rank={rank}", "--trainer.callbacks.step=2", cwd=run, timeout=240,
    )
    assert "[test] killed after" not in res.stderr, "the ranks hung"
    assert res.returncode == 1, res.stderr[-3000:]
    assert f"sciflow fit (rank {rank} of 2): error: RuntimeError: injected failure on rank {rank}" in res.stderr
    assert "Traceback" not in res.stderr

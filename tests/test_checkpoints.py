"""Checkpoint files: atomic writes, safe reads with clear errors, compatibility checks, the random
state they carry, and the Checkpoint callback's last.ckpt every epoch with stable names."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

import sciflow
from sciflow.checkpoints import (
    CHECKPOINT_FORMAT,
    CardMismatchWarning,
    Checkpoint,
    CheckpointError,
    CheckpointWriteError,
    VersionMismatchWarning,
    check_compatible,
    read_checkpoint,
    restore_rng_state,
    rng_state,
    save_atomic,
    stale_temporaries,
)
from sciflow.data.datamodule import SciflowData
from sciflow.surrogate import Surrogate

TINY_FNO = {"class_path": "fno", "init_args": {"width": 8, "modes": 4, "n_layers": 1}}


def quiet_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, **kwargs)


@pytest.fixture
def checkpoint(synthetic_card, tmp_path) -> Path:
    """A real checkpoint of a tiny model trained 2 steps."""
    dm = SciflowData(str(synthetic_card), batch_size=8, rollout_steps=2)
    model = Surrogate(TINY_FNO, data_spec=dm.spec, ema_decay=0.9)
    trainer = quiet_trainer(max_steps=2, limit_val_batches=0, enable_checkpointing=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, dm)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    return path


class Payload:
    """Unpickling this runs code that leaves a file behind: proof if it ever ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_read_checkpoint_errors_name_the_file_and_the_problem(checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match=r"nothere\.ckpt: no such checkpoint file \(.* holds model\.ckpt\)"):
        read_checkpoint(checkpoint.parent / "nothere.ckpt")
    data = checkpoint.read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.ckpt: not a readable checkpoint"):
        read_checkpoint(truncated)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"definitely not a checkpoint\n")
    with pytest.raises(CheckpointError, match=r"junk\.ckpt: not a readable checkpoint"):
        read_checkpoint(junk)
    plain = tmp_path / "plain.ckpt"
    torch.save({"weights": torch.zeros(3)}, plain)
    with pytest.raises(CheckpointError, match=r"plain\.ckpt: not a Lightning checkpoint .*weights"):
        read_checkpoint(plain)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "epoch": 0}, foreign)
    with pytest.raises(CheckpointError, match=r"foreign\.ckpt: not a sciflow checkpoint"):
        read_checkpoint(foreign)
    newer = torch.load(checkpoint, weights_only=True)
    newer["sciflow"]["format"] = CHECKPOINT_FORMAT + 1
    torch.save(newer, tmp_path / "newer.ckpt")
    with pytest.raises(CheckpointError, match=r"newer\.ckpt: checkpoint format 2 .* upgrade sciflow"):
        read_checkpoint(tmp_path / "newer.ckpt")


def test_a_pickled_payload_never_runs(checkpoint, tmp_path):
    marker = tmp_path / "payload-ran"
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["extra"] = Payload(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save(ckpt, evil)
    for load in (read_checkpoint, Surrogate.load):
        with pytest.raises(CheckpointError, match=r"evil\.ckpt: refused to load.*never runs pickled code"):
            load(evil)
    assert not marker.exists(), "the payload ran"
    # control: the same file loaded without the safeguard does run it, so the test can fail
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_check_compatible_refuses_other_structure_and_warns_on_versions(checkpoint):
    ckpt = read_checkpoint(checkpoint)
    spec = dict(ckpt["hyper_parameters"]["data_spec"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_compatible(ckpt, spec, checkpoint)  # its own data: silent
    with pytest.raises(CheckpointError, match=r"spatial_shape \[16, 16\] in the checkpoint differs from the data's \[8, 8\]"):
        check_compatible(ckpt, {**spec, "spatial_shape": [8, 8]}, checkpoint)
    with pytest.raises(CheckpointError, match=r"channels .* differs"):
        check_compatible(ckpt, {**spec, "channels": ["u"]}, checkpoint)
    with pytest.warns(CardMismatchWarning, match=r"card 'synthetic' .* now has hash 0123456789ab"):
        check_compatible(ckpt, {**spec, "card_hash": "0123456789abcdef"}, checkpoint)
    old = {**ckpt, "sciflow": {**ckpt["sciflow"], "version": "0.0.1"}}
    with pytest.warns(VersionMismatchWarning, match=rf"written by sciflow 0\.0\.1, this is sciflow {sciflow.__version__}"):
        check_compatible(old, spec, checkpoint)


def test_rng_state_round_trip(checkpoint):
    state = read_checkpoint(checkpoint)["rng"]  # as stored, read back with weights_only=True
    restore_rng_state(state)
    first = (torch.rand(4), np.random.rand(4), __import__("random").random())
    restore_rng_state(state)
    again = (torch.rand(4), np.random.rand(4), __import__("random").random())
    torch.testing.assert_close(first[0], again[0], rtol=0, atol=0)
    np.testing.assert_array_equal(first[1], again[1])
    assert first[2] == again[2]
    now = rng_state()
    assert torch.equal(now["torch"], torch.get_rng_state())


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "ck" / "last.ckpt"
    save_atomic({"a": torch.ones(2)}, target)
    assert torch.load(target, weights_only=True)["a"].sum() == 2
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    before = target.read_bytes()
    real_write = os.write

    def failing_write(fd, data):  # noqa: ANN001
        real_write(fd, bytes(data[:10]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(CheckpointWriteError, match=r"cannot write checkpoint .*last\.ckpt: .*No space left on device"):
        save_atomic({"a": torch.zeros(1000)}, target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert not stale_temporaries(target.parent)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class _ReadLastAtEpochStart(L.Callback):
    def __init__(self, path: Path):
        self.path, self.seen = path, []

    def on_train_epoch_start(self, trainer, pl_module) -> None:  # noqa: ANN001
        if trainer.current_epoch > 0:
            self.seen.append(torch.load(self.path, weights_only=True)["global_step"])


def test_last_checkpoint_every_epoch_with_no_top_k_and_stable_names(synthetic_card, tmp_path):
    folder = tmp_path / "ck"
    dm = SciflowData(str(synthetic_card), batch_size=16)
    steps = -(-66 // 16)  # 66 training windows
    for run in range(2):  # a rerun overwrites: no best-v1.ckpt / last-v1.ckpt
        reader = _ReadLastAtEpochStart(folder / "last.ckpt")
        callbacks = [Checkpoint(dirpath=folder, save_last=True, save_top_k=0),
                     Checkpoint(dirpath=folder, filename="best", monitor="val/nmse", mode="min"), reader]
        trainer = quiet_trainer(max_epochs=3, callbacks=callbacks, limit_val_batches=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(Surrogate(TINY_FNO, data_spec=dm.spec), dm)
        assert reader.seen == [steps, 2 * steps], f"run {run}: last.ckpt at epoch starts held steps {reader.seen}"
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 3 * steps


def test_ema_is_updated_inside_the_optimiser_step(synthetic_card):
    """Closed form: ema_k = ema_{k-1} + (1 - d_k) (w_k - ema_{k-1}), d_k = min(decay, (1+k)/(10+k)),
    from the weights after each step; and it is already current when callbacks see the step end."""
    dm = SciflowData(str(synthetic_card), batch_size=16)
    model = Surrogate(TINY_FNO, data_spec=dm.spec, ema_decay=0.5, lr=1e-2)
    first = [p.detach().clone() for p in model.stepper.parameters()]
    record: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args) -> None:  # noqa: ANN001
            record.append(([p.detach().clone() for p in pl_module.stepper.parameters()],
                           [p.detach().clone() for p in pl_module.ema.parameters()]))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quiet_trainer(max_steps=4, limit_val_batches=0, enable_checkpointing=False, callbacks=[Record()]).fit(model, dm)
    ema = first
    for k, (weights, seen) in enumerate(record, start=1):
        d = min(0.5, (1 + k) / (10 + k))
        ema = [e + (1 - d) * (w - e) for e, w in zip(ema, weights)]
        for a, b in zip(ema, seen):
            torch.testing.assert_close(a, b)


def test_validation_rolls_out_through_the_engine_and_keeps_the_random_state(synthetic_card):
    dm = SciflowData(str(synthetic_card), batch_size=8, rollout_steps=3)
    torch.manual_seed(3)
    model = Surrogate(TINY_FNO, data_spec=dm.spec)
    before = torch.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = quiet_trainer().validate(model, dm, verbose=False)
    assert torch.equal(torch.get_rng_state(), before), "validation advanced the global generator"
    got = {k: v for d in metrics for k, v in d.items()}
    # the same numbers from an explicit loop over the validation windows
    dm.setup("validate")
    one, roll = dm.val_dataloader()
    model.eval()
    nmse, n = 0.0, 0
    for b in one:
        pred = model.predict_next(b["input"], b["params"], b["mask"])
        nmse += model.field_nmse(pred, b["target"][:, 0], b["mask"]).mean(1).sum().item()
        n += len(pred)
    errs = []
    for b in roll:
        window, per_step = b["input"], []
        for k in range(3):
            nxt = model.predict_next(window, b["params"], b["mask"])
            per_step.append(model.field_nmse(nxt, b["target"][:, k], b["mask"]).mean(1))
            window = torch.cat([window[:, 1:], nxt.unsqueeze(1)], 1)
        errs.append(torch.stack(per_step, 1))
    errs = torch.cat(errs)  # (trajectories, K)
    assert got["val/nmse"] == pytest.approx(nmse / n, rel=1e-5)
    assert got["val/rollout_nmse"] == pytest.approx(errs.mean().item(), rel=1e-5)
    assert got["val/rollout_nmse_last"] == pytest.approx(errs[:, -1].mean().item(), rel=1e-5)
    assert {"val/nmse_copy", "val/loss", "val/nmse_velocity", "val/nmse_pressure"} <= set(got)

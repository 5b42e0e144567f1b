"""Fault injection for training tests: `sciflow` in a subprocess that can be SIGKILLed, killed in
the middle of a checkpoint write, limited to a small file size (a full disk), or denied the root
powers that would let it write into a read-only folder."""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch

from sciflow.checkpoints import AtomicCheckpointIO

REPO = Path(__file__).resolve().parents[1]


def sciflow_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def start(*args: str, cwd: Path, preexec: Callable[[], None] | None = None) -> subprocess.Popen:
    """``python -m sciflow.cli ARGS`` in its own process group (so its data workers die with it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "sciflow.cli", *args], cwd=cwd, env=sciflow_env(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, preexec_fn=preexec,
    )


def finish(proc: subprocess.Popen, timeout: float) -> subprocess.CompletedProcess:
    """Wait for ``proc`` (killing its whole group after ``timeout``), then reap any process of its group."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        err += f"\n[test] killed after {timeout} s"
    kill_group(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run(*args: str, cwd: Path, timeout: float = 300, preexec: Callable[[], None] | None = None
        ) -> subprocess.CompletedProcess:
    return finish(start(*args, cwd=cwd, preexec=preexec), timeout)


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], delay: float, timeout: float = 300
              ) -> subprocess.CompletedProcess:
    """SIGKILL ``proc``'s group ``delay`` seconds after ``ready()`` first holds (polled), unless it
    ends first."""
    end = time.monotonic() + timeout
    while proc.poll() is None and not ready() and time.monotonic() < end:
        time.sleep(0.05)
    if proc.poll() is None:
        time.sleep(delay)
        kill_group(proc)
    return finish(proc, timeout)


def limit_file_size(limit: int) -> Callable[[], None]:
    """A ``preexec_fn`` capping every file the process writes at ``limit`` bytes: writes beyond fail
    with EFBIG, as on a full disk (Python ignores SIGXFSZ, so the write raises instead of killing)."""
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


# Linux capabilities that let root write where file permissions say no
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER, _PR_CAPBSET_DROP = 1, 2, 3, 24


def without_root_file_powers() -> None:
    """``preexec_fn``: drop the file-permission capabilities from the bounding set, so that even a
    process run as root obeys a read-only folder (no-op for other users)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


class KillAtStep(L.Callback):
    """SIGKILL this process once ``step`` optimiser steps are done (before that step's checkpoint)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class _KillingIO(AtomicCheckpointIO):
    def __init__(self, at: int):
        super().__init__()
        self.at, self.saves = at, 0

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:  # noqa: ANN001
        self.saves += 1
        if self.saves == self.at:
            real_write = os.write

            def write_half_then_die(fd: int, data) -> int:  # noqa: ANN001
                real_write(fd, bytes(data[: max(1, len(data) // 2)]))
                os.kill(os.getpid(), signal.SIGKILL)
                return 0

            os.write = write_half_then_die  # the real atomic writer, killed inside its first write
        super().save_checkpoint(checkpoint, path, storage_options)


class KillInCheckpointWrite(L.Callback):
    """SIGKILL this process in the middle of its ``at``-th checkpoint write."""

    def __init__(self, at: int):
        self.at = at

    def setup(self, trainer, pl_module, stage: str) -> None:  # noqa: ANN001
        trainer.strategy.checkpoint_io = _KillingIO(self.at)


def load_state(path: Path) -> dict:
    """What must survive a resume: weights (with the EMA), optimiser and scheduler state, step."""
    ckpt = torch.load(path, weights_only=True)
    return {"global_step": ckpt["global_step"], "state_dict": ckpt["state_dict"],
            "optimizer": ckpt["optimizer_states"], "schedulers": ckpt["lr_schedulers"]}

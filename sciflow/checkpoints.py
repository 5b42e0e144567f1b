"""Checkpoint files: written atomically, read safely, checked against the data they meet.

* Writes go to a temporary file beside the target, are flushed to disk and renamed over it, so a
  process killed at any moment (or a full disk) leaves the previous checkpoint intact and
  loadable; a failed write raises :class:`CheckpointWriteError` naming the file.
* Reads use ``torch.load(weights_only=True)``: a checkpoint that carries pickled code is refused
  before anything in it runs. :func:`read_checkpoint` turns every way a file can be wrong (missing,
  truncated, not a checkpoint, not sciflow's, from a newer format) into a :class:`CheckpointError`.
* :class:`Checkpoint` is Lightning's ``ModelCheckpoint`` with sciflow's contract: ``last.ckpt``
  after every training epoch even when no top-k checkpoint is kept, stable file names (no
  ``-v1`` copies), atomic writes.
* :func:`rng_state` / :func:`restore_rng_state` carry the random generators through a checkpoint so
  a resumed run draws the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import random
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

import sciflow
from sciflow.data.format import atomic_path

# Version of what sciflow puts in a checkpoint (the "sciflow" record, RNG state, data order).
# A reader refuses files of a newer format instead of misreading them.
CHECKPOINT_FORMAT = 1
# data-spec entries a checkpoint and the data must agree on for the weights to mean anything
STRUCTURAL_KEYS = ("channels", "params", "spatial_dims", "spatial_shape", "history", "time_step", "has_mask",
                   # particle data (grid specs have none of these, and a key either side lacks is skipped)
                   "kind", "dim", "bounds", "periodic", "radius")
_CHUNK = 1 << 16


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and what is wrong."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (full disk, read-only folder...); the previous file is intact."""


class CardMismatchWarning(UserWarning):
    """A checkpoint was trained on a different version of the dataset card."""


class VersionMismatchWarning(UserWarning):
    """A checkpoint was written by another sciflow version."""


# -- writing -------------------------------------------------------------------------------------------

def write_atomic(data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync it and rename it
    into place; on any failure the temporary file is removed and ``path`` keeps its old content."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
            try:
                os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint gets the usual mode
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view[:_CHUNK]):]
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as err:
        reason = err.strerror or str(err)
        failure = CheckpointWriteError(
            f"cannot write checkpoint {path}: {reason}; the previous file, if any, is unchanged"
        )
        failure.errno = err.errno
        raise failure from err
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically (see :func:`write_atomic`)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(buffer.getbuffer(), path)


def stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Temporary files a killed writer left in ``folder`` (``.<name>.ckpt.*.tmp``)."""
    folder = Path(folder)
    return sorted(folder.glob(".*.ckpt.*.tmp")) if folder.is_dir() else []


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with atomic writes and ``weights_only=True`` reads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        save_atomic(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        if "://" in str(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        return read_checkpoint(path, map_location=map_location, require_sciflow=False)


# -- reading --------------------------------------------------------------------------------------------

def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", *,
                    require_sciflow: bool = True) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)`` and check that it is one of ours.

    Raises :class:`CheckpointError` naming ``path`` when the file is missing, truncated or corrupt,
    carries pickled code, is not a Lightning checkpoint, lacks the ``sciflow`` record (with
    ``require_sciflow``) or comes from a newer checkpoint format.
    """
    path = Path(path)
    if not path.is_file():
        where = path.parent if path.parent.is_dir() else None
        known = sorted(p.name for p in where.glob("*.ckpt")) if where else []
        hint = f" ({where} holds {', '.join(known)})" if known else ""
        raise CheckpointError(f"{path}: no such checkpoint file{hint}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if found is None:  # not torch's format at all, or pickle opcodes torch does not read
            raise CheckpointError(
                f"{path}: not a readable checkpoint (not a file torch.save wrote, or pickled data that "
                f"sciflow does not load)"
            ) from None
        raise CheckpointError(
            f"{path}: refused to load: the file holds a Python object ({found.group(1)}) beyond tensors and "
            f"plain data, and sciflow never runs pickled code from a checkpoint"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, KeyError, ValueError, OSError) as err:
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated, corrupt or another format): {type(err).__name__}: "
            f"{str(err).strip()[:200]}"
        ) from None
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt:
        keys = sorted(map(str, ckpt))[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict'; found {keys})")
    meta = ckpt.get("sciflow")
    if require_sciflow and (not isinstance(meta, Mapping) or "hyper_parameters" not in ckpt):
        raise CheckpointError(
            f"{path}: not a sciflow checkpoint (no 'sciflow' record or hyper_parameters); it was not written "
            f"by a sciflow Surrogate"
        )
    if isinstance(meta, Mapping) and int(meta.get("format", 1)) > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: checkpoint format {meta.get('format')} (written by sciflow {meta.get('version')}) is newer "
            f"than this sciflow {sciflow.__version__} reads (format {CHECKPOINT_FORMAT}); upgrade sciflow"
        )
    return dict(ckpt)


def check_compatible(ckpt: Mapping[str, Any], spec: Mapping[str, Any], path: str | os.PathLike,
                     card_hash: str | None = None) -> None:
    """Check a checkpoint against the data it is about to meet.

    ``spec`` is the data's ``SciflowData.spec``. Structural differences (channels, parameters,
    grid, history, time step, mask) raise :class:`CheckpointError` naming the key and both values;
    another card version (``card_hash``) or sciflow version only warns.
    """
    theirs = dict(ckpt.get("hyper_parameters", {}).get("data_spec") or {})
    for key in STRUCTURAL_KEYS:
        if key in theirs and key in spec and theirs[key] != spec[key]:
            raise CheckpointError(
                f"{path}: {key} {theirs[key]!r} in the checkpoint differs from the data's {spec[key]!r} "
                f"(card {spec.get('card')!r}); the checkpoint was trained on other data"
            )
    meta = ckpt.get("sciflow") or {}
    card_hash = card_hash or spec.get("card_hash")
    trained_on = meta.get("card_hash") or theirs.get("card_hash")
    if trained_on and card_hash and trained_on != card_hash:
        warnings.warn(
            f"{path}: trained on card {meta.get('card') or theirs.get('card')!r} with hash {trained_on[:12]}, "
            f"the data's card {spec.get('card')!r} now has hash {card_hash[:12]}: the card changed since training",
            CardMismatchWarning, stacklevel=2,
        )
    version = meta.get("version")
    if version and version != sciflow.__version__:
        warnings.warn(
            f"{path}: written by sciflow {version}, this is sciflow {sciflow.__version__}",
            VersionMismatchWarning, stacklevel=2,
        )
    stats = spec.get("stats") or {}
    their_stats = theirs.get("stats") or {}
    differing = [k for k in ("mean", "std") if k in stats and k in their_stats
                 and not np.allclose(stats[k], their_stats[k], rtol=1e-6, atol=0)]
    if differing:
        warnings.warn(
            f"{path}: the data's normalisation statistics ({', '.join(differing)}) differ from the checkpoint's; "
            f"the checkpoint's are used",
            CardMismatchWarning, stacklevel=2,
        )


# -- random state -------------------------------------------------------------------------------------------

def rng_state() -> dict[str, Any]:
    """The state of torch's (CPU and CUDA), numpy's and Python's global generators, in types that
    ``torch.load(weights_only=True)`` reads back."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Set the global generators from :func:`rng_state`'s record (missing parts are left alone)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- the Lightning callback -----------------------------------------------------------------------------------

class Checkpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that keeps ``last.ckpt`` current for resuming.

    Differences from Lightning's: with ``save_last`` the last checkpoint is written after every
    training epoch even when ``save_top_k == 0`` (Lightning writes it only next to a top-k save, so
    a run that keeps none had no ``last.ckpt`` until it ended); file names never get ``-v1``
    suffixes, so documented paths keep naming the current run's files; the trainer's checkpoint
    writes become atomic (:class:`AtomicCheckpointIO`) and temporary files a killed writer left
    behind are removed. ``every_n_train_steps`` writes ``last.ckpt`` every N optimiser steps as
    in Lightning.
    """

    def __init__(self, *args: Any, enable_version_counter: bool = False, **kwargs: Any):
        super().__init__(*args, enable_version_counter=enable_version_counter, **kwargs)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        if trainer.is_global_zero and self.dirpath is not None and "://" not in str(self.dirpath):
            for tmp in stale_temporaries(self.dirpath):
                with contextlib.suppress(OSError):  # a read-only folder fails at the first write instead
                    tmp.unlink(missing_ok=True)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


__all__ = [
    "CHECKPOINT_FORMAT", "AtomicCheckpointIO", "CardMismatchWarning", "Checkpoint", "CheckpointError",
    "CheckpointWriteError", "VersionMismatchWarning", "check_compatible", "read_checkpoint",
    "restore_rng_state", "rng_state", "save_atomic", "stale_temporaries", "write_atomic",
]

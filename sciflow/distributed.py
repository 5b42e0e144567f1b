"""Rollouts over several processes: detect a launch (torchrun, SLURM), split the work, meet.

A distributed ``sciflow rollout`` runs one process per rank. Each rank rolls out a contiguous
share of the trajectory batches into its own part file; rank 0 waits for every rank and merges
the parts into the one output file (:func:`sciflow.results.merge.merge_results`). Seeds depend
on a batch's first trajectory, not on the rank, so with the same ``--batch-size`` the merged file
holds the same members as a single-process run.

Launches it recognises:

- ``torchrun --nproc_per_node N ...`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
  ``MASTER_PORT``);
- SLURM ``srun`` (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``), with ``MASTER_ADDR`` and
  ``MASTER_PORT`` exported by the batch script (see the README).

The process group uses ``gloo`` on CPUs and ``nccl`` on CUDA devices unless told otherwise; a
rank on a GPU machine takes the device of its local rank.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

MODES = ("auto", "on", "off")


class DistributedError(RuntimeError):
    """A distributed launch that cannot work; the message says which variable or rank."""


@dataclass(frozen=True)
class Launch:
    """Where this process sits: ``rank`` of ``world`` processes, ``local_rank`` on its machine."""

    rank: int
    world: int
    local_rank: int
    source: str  # "torchrun", "slurm" or "single"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect(env: Mapping[str, str] | None = None) -> Launch:
    """The launch described by the environment (torchrun first, then SLURM; else one process)."""
    env = os.environ if env is None else env

    def num(key: str) -> int:
        try:
            return int(env[key])
        except ValueError:
            raise DistributedError(f"environment variable {key}={env[key]!r} is not an integer") from None

    if "RANK" in env and "WORLD_SIZE" in env:
        launch = Launch(num("RANK"), num("WORLD_SIZE"), num("LOCAL_RANK") if "LOCAL_RANK" in env else 0, "torchrun")
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        launch = Launch(num("SLURM_PROCID"), num("SLURM_NTASKS"),
                        num("SLURM_LOCALID") if "SLURM_LOCALID" in env else 0, "slurm")
    else:
        return Launch(0, 1, 0, "single")
    if launch.world < 1 or not 0 <= launch.rank < launch.world:
        raise DistributedError(f"{launch.source}: rank {launch.rank} is not in 0..{launch.world - 1}")
    return launch


def wanted(mode: str, launch: Launch) -> bool:
    """Whether to run distributed: ``auto`` when launched with more than one process."""
    if mode not in MODES:
        raise DistributedError(f"--distributed {mode!r}: choose one of {MODES}")
    if mode == "off":
        return False
    if mode == "on" and launch.world == 1 and launch.source == "single":
        raise DistributedError("--distributed on: no torchrun or SLURM launch found (RANK/WORLD_SIZE or "
                               "SLURM_PROCID/SLURM_NTASKS are not set)")
    return launch.world > 1 or mode == "on"


def init(launch: Launch, backend: str | None = None, timeout_s: float = 1800.0,
         env: Mapping[str, str] | None = None) -> str:
    """Join the process group of ``launch``; returns the backend used."""
    env = os.environ if env is None else env
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        if key not in env:
            raise DistributedError(f"{launch.source} launch of {launch.world} processes: {key} is not set "
                                   f"(torchrun sets it; under SLURM export it in the batch script)")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(launch.local_rank % max(1, torch.cuda.device_count()))
    dist.init_process_group(backend, rank=launch.rank, world_size=launch.world, init_method="env://",
                            timeout=timedelta(seconds=timeout_s))
    return backend


def device_for(launch: Launch, requested: str) -> str:
    """The device of a rank: ``cuda`` becomes ``cuda:<local rank>``; anything else as asked."""
    if requested == "cuda" and torch.cuda.is_available():
        return f"cuda:{launch.local_rank % torch.cuda.device_count()}"
    return requested


def share(n_items: int, batch: int, rank: int, world: int) -> range:
    """The items of ``rank``: a contiguous run of whole batches of ``batch`` items, the batches
    split as evenly as possible over ``world`` ranks (earlier ranks take one more).

    Returns:
        Item positions ``start..stop-1`` (empty where there are fewer batches than ranks).
    """
    if batch < 1 or world < 1 or not 0 <= rank < world:
        raise ValueError(f"share: batch {batch}, rank {rank}, world {world}")
    n_batches = -(-n_items // batch)
    base, extra = divmod(n_batches, world)
    first = rank * base + min(rank, extra)
    count = base + (1 if rank < extra else 0)
    return range(min(first * batch, n_items), min((first + count) * batch, n_items))


def part_path(out: str | os.PathLike, rank: int, world: int) -> str:
    """The part file of ``rank`` beside the output ``out``."""
    out = os.fspath(out)
    stem, ext = os.path.splitext(out)
    return f"{stem}.rank{rank:04d}-of-{world:04d}{ext or '.nc'}"


def gather_status(ok: bool, message: str) -> Sequence[tuple[bool, str]]:
    """Every rank's (ok, message), on every rank (a collective: all ranks must call it)."""
    out: list[tuple[bool, str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(out, (ok, message))
    return [o for o in out if o is not None]


def finish() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["DistributedError", "Launch", "MODES", "detect", "device_for", "finish", "gather_status", "init",
           "part_path", "share", "wanted"]

"""``sciflow rollout`` over several processes: each rank rolls out its share of the trajectory
batches into a part file, rank 0 merges the parts into the output (see :mod:`sciflow.distributed`).

Failures: every rank reports whether its share finished; if one did not, every rank raises a
:class:`~sciflow.distributed.DistributedError` naming the failed ranks and their errors and no
merged file is written; a failed rank's finished batches stay in its partial file, which a rerun
of the same command continues.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch.distributed as dist
import xarray as xr

from sciflow.distributed import DistributedError, Launch, gather_status, part_path, share
from sciflow.evaluate import run_rollout, split_size, write_plots
from sciflow.results import summarize
from sciflow.results.files import open_results
from sciflow.results.merge import merge_results


def run_rollout_distributed(
    launch: Launch,
    ckpts: Sequence[str | os.PathLike],
    data: str,
    *,
    out: str | os.PathLike = "rollout.nc",
    split: str = "test",
    root: str | os.PathLike | None = None,
    trajectories: Sequence[int] | None = None,
    batch_size: int | None = None,
    plots: bool = True,
    plot_steps: Sequence[int] | None = None,
    progress: bool = True,
    **kwargs: Any,
) -> tuple[xr.Dataset | None, dict[str, Any] | None]:
    """:func:`~sciflow.evaluate.run_rollout` on this rank's share; rank 0 merges and scores.

    The process group must be initialised (:func:`sciflow.distributed.init`). Batches of
    ``batch_size`` trajectories (default: the trajectories split evenly over the ranks) are dealt
    to ranks in contiguous runs. Returns ``(dataset, summary)`` on rank 0, ``(None, None)`` elsewhere.
    """
    idx = list(range(split_size(data, split, root))) if trajectories is None else [int(i) for i in trajectories]
    if not idx:
        raise DistributedError("distributed rollout: no trajectories selected")
    chunk = int(batch_size) if batch_size is not None else -(-len(idx) // launch.world)
    mine = [idx[i] for i in share(len(idx), chunk, launch.rank, launch.world)]
    part = part_path(out, launch.rank, launch.world)
    ok, message = True, ""
    if mine:
        try:
            ds, _ = run_rollout(ckpts, data, split=split, root=root, trajectories=mine, batch_size=chunk, out=part,
                                plots=False, progress=progress and launch.is_main, **kwargs)
            ds.close()
        except Exception as err:  # reported to every rank below, then raised everywhere
            ok, message = False, f"{type(err).__name__}: {err}"
    statuses = gather_status(ok, message)
    failed = [(r, m) for r, (good, m) in enumerate(statuses) if not good]
    if failed:
        listing = "; ".join(f"rank {r}: {m}" for r, m in failed)
        raise DistributedError(f"distributed rollout to {out}: {len(failed)} of {launch.world} ranks failed ({listing}); "
                               f"no merged file written, the finished part files are kept for a rerun")
    result: tuple[xr.Dataset | None, dict[str, Any] | None] = (None, None)
    if launch.is_main:
        parts = [part_path(out, r, launch.world) for r in range(launch.world)
                 if share(len(idx), chunk, r, launch.world)]
        merge_results(parts, out)
        for p in parts:
            Path(p).unlink()
        ds = open_results(out)
        if plots:
            write_plots(ds, out, plot_steps)
        result = (ds, summarize(ds))
    dist.barrier()
    return result


__all__ = ["run_rollout_distributed"]

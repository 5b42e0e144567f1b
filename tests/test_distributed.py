"""Distributed rollouts: the launch read from the environment, the share of each rank, merging
part files, and a real two-process gloo rollout (torchrun) whose merged file equals a
single-process run's, stochastic samples included."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from sciflow.distributed import DistributedError, Launch, detect, part_path, share, wanted
from sciflow.results import RolloutCollector, read_results, write_results
from sciflow.results.merge import MergeError, merge_results
from sciflow.rollout import Step
from sciflow.surrogate import Surrogate
from tests.synthetic import make_dataset
from tests.test_evaluate import NOISY, TINY_FNO, save_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("n", [1, 5, 8, 13])
@pytest.mark.parametrize("batch", [1, 2, 3, 8])
@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shares_are_disjoint_contiguous_whole_batches(n, batch, world):
    shares = [share(n, batch, r, world) for r in range(world)]
    assert [i for s in shares for i in s] == list(range(n))  # every item once, in order
    for s in shares:
        if len(s):
            assert s.start % batch == 0  # starts on a batch boundary: batches are never split
    sizes = [-(-len(s) // batch) for s in shares]  # batches per rank
    assert max(sizes) - min(sizes) <= 1


def test_launch_from_the_environment():
    assert detect({}) == Launch(0, 1, 0, "single")
    assert detect({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == Launch(1, 4, 1, "torchrun")
    assert detect({"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "0"}) == Launch(3, 4, 0, "slurm")
    with pytest.raises(DistributedError, match="RANK='x' is not an integer"):
        detect({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(DistributedError, match="rank 4 is not in 0..3"):
        detect({"RANK": "4", "WORLD_SIZE": "4"})
    single, two = Launch(0, 1, 0, "single"), Launch(0, 2, 0, "torchrun")
    assert not wanted("auto", single) and wanted("auto", two) and not wanted("off", two)
    with pytest.raises(DistributedError, match="no torchrun or SLURM launch"):
        wanted("on", single)
    assert part_path("runs/out.nc", 1, 2) == "runs/out.rank0001-of-0002.nc"


def _results(path: Path, trajectories: list[int], seed: int, attrs: dict | None = None) -> Path:
    g = torch.Generator().manual_seed(seed)
    B = len(trajectories)
    truth = torch.randn(B, 4, 2, 6, 5, generator=g)
    col = RolloutCollector(truth[:, 0], steps=3, dt=0.5, channels=["a", "b"], coords={"x": np.arange(6.0), "y": np.arange(5.0)},
                           n_members=3, truth=truth, trajectories=trajectories, keep_members=True,
                           attrs=attrs or {"card": "synthetic", "seed": 0})
    for k in range(1, 4):
        col.update(Step(k, 0.5 * k, truth[:, k] + 0.1 * torch.randn(3, *truth[:, k].shape, generator=g),
                        torch.ones(3, B, dtype=torch.bool)))
    write_results(col.dataset(), path)
    return path


def test_merge_joins_parts_in_order_and_refuses_other_runs(tmp_path):
    a = _results(tmp_path / "a.nc", [0, 1, 2], seed=0)
    b = _results(tmp_path / "b.nc", [3, 4], seed=1)
    merged = read_results(merge_results([a, b], tmp_path / "m.nc"))
    whole = xr.concat([read_results(a), read_results(b)], dim="trajectory", data_vars="minimal", coords="minimal",
                      compat="override")
    assert merged.sizes["trajectory"] == 5 and merged.trajectory.values.tolist() == [0, 1, 2, 3, 4]
    for name in merged.variables:
        np.testing.assert_array_equal(merged[name].values, whole[name].transpose(*merged[name].dims).values)
    assert merged.attrs == read_results(a).attrs
    other = _results(tmp_path / "c.nc", [3, 4], seed=1, attrs={"card": "synthetic", "seed": 7})
    with pytest.raises(MergeError, match=r"c.nc: attribute 'seed' is 7"):
        merge_results([a, other], tmp_path / "x.nc")
    with pytest.raises(MergeError, match="missing.nc: no such results file"):
        merge_results([a, tmp_path / "missing.nc"], tmp_path / "x.nc")
    assert not (tmp_path / "x.nc").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_write_what_one_process_writes(tmp_path):
    """``torchrun --nproc_per_node 2 -m sciflow.cli rollout`` (gloo, CPU): 5 trajectories in
    batches of 2 over two ranks, a deterministic and a stochastic model (3 samples), merged on
    rank 0: the same file as one process with the same batch size; the part files are gone."""
    card = make_dataset(tmp_path / "synthetic", n=(2, 1, 5), frames=6)
    from sciflow.data.datamodule import SciflowData

    spec = SciflowData(str(card)).spec
    torch.manual_seed(0)
    det = save_checkpoint(Surrogate(TINY_FNO, data_spec=spec), tmp_path / "det.ckpt")
    noisy = save_checkpoint(Surrogate(TINY_FNO, stepper=NOISY, data_spec=spec), tmp_path / "noisy.ckpt")
    common = ["rollout", "--ckpt", det, "--ckpt", noisy, "--samples", "3", "--data.card", str(card),
              "--batch-size", "2", "--steps", "4", "--members", "--no-plots", "--threads", "1"]
    launch_vars = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "MASTER_ADDR", "MASTER_PORT")
    env = {**{k: v for k, v in os.environ.items() if k not in launch_vars}, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "sciflow.cli", *common, "--out", str(tmp_path / "one.nc")],
                            cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                            "--master_port", str(_free_port()), "-m", "sciflow.cli", *common,
                            "--out", str(tmp_path / "two.nc")],
                           cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    one, two = read_results(tmp_path / "one.nc"), read_results(tmp_path / "two.nc")
    assert two.sizes["trajectory"] == 5 and two.sizes["member"] == 4
    assert np.abs(two.members.isel(member=1, time=-1).values - two.members.isel(member=2, time=-1).values).max() > 1e-4
    xr.testing.assert_identical(one, two)
    assert not list(tmp_path.glob("two.rank*"))
    # the summary is printed once, by rank 0
    assert multi.stdout.count('"crps_mean"') == 1
    # a failing rank: every rank exits naming the failed ones, and no merged file appears
    bad = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(_free_port()), "-m", "sciflow.cli", *common[:-6], "--steps", "99",
                          "--no-plots", "--threads", "1", "--out", str(tmp_path / "bad.nc")],
                         cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode != 0
    assert "2 of 2 ranks failed (rank 0: ValueError: 99 steps" in bad.stderr
    assert not (tmp_path / "bad.nc").exists()

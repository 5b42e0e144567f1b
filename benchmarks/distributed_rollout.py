"""Distributed rollouts on the CPU: one process against two gloo ranks (torchrun), same work.

A 3-member FNO ensemble (cavity FNO size: width 40, 16 modes, 4 layers; weights as initialised:
the cost of a step does not depend on them) on a synthetic 64x64 dataset of 3 channels, 16 test
trajectories of 21 frames, batches of 4, 20 steps. Three ways, alternating in trials so load
changes hit all of them:

- ``1 process, 1 thread``: ``sciflow rollout --threads 1``;
- ``1 process, 2 threads``: ``sciflow rollout --threads 2`` (what one process does with both cores);
- ``2 ranks x 1 thread``: ``torchrun --nproc_per_node 2 -m sciflow.cli rollout --threads 1``.

Wall seconds of the whole command (start-up, rollout, merge, summary); plots off. The merged file
of the two ranks is compared with the single process's (identical arrays expected).

    python -m benchmarks.distributed_rollout          # results/distributed_rollout.json + README table
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import xarray as xr

from benchmarks._report import HERE, markdown_table, save_json, update_readme
from sciflow.data.datamodule import SciflowData
from sciflow.results import read_results
from sciflow.surrogate import Surrogate
from sciflow.threads import load_average
from tests.synthetic import make_dataset

REPO = HERE.parent
OPERATOR = {"class_path": "fno", "init_args": {"width": 40, "modes": 16, "n_layers": 4}}
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trajectories", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env["OMP_NUM_THREADS"] = "1"
    loads = [load_average()]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        card = make_dataset(tmp / "data", n=(1, 1, args.trajectories), shape=(64, 64), frames=args.steps + 1)
        spec = SciflowData(str(card)).spec
        ckpts = []
        for m in range(args.members):
            torch.manual_seed(m)
            model = Surrogate(OPERATOR, data_spec=spec)
            path = tmp / f"m{m}.ckpt"
            ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
            model.on_save_checkpoint(ckpt)
            torch.save(ckpt, path)
            ckpts += ["--ckpt", str(path)]
        common = ["rollout", *ckpts, "--data.card", str(card), "--batch-size", str(args.batch_size),
                  "--steps", str(args.steps), "--no-plots"]
        ways = {
            "1 process, 1 thread": lambda out: [sys.executable, "-m", "sciflow.cli", *common, "--threads", "1",
                                                "--out", out],
            "1 process, 2 threads": lambda out: [sys.executable, "-m", "sciflow.cli", *common, "--threads", "2",
                                                 "--out", out],
            "2 ranks x 1 thread": lambda out: [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                               "--master_port", str(_port()), "-m", "sciflow.cli", *common,
                                               "--threads", "1", "--out", out],
        }
        times: dict[str, list[float]] = {w: [] for w in ways}
        for trial in range(args.trials):
            for w, cmd in ways.items():
                out = str(tmp / f"{w.replace(' ', '_').replace(',', '')}_{trial}.nc")
                times[w].append(_run(cmd(out), env))
                print(f"trial {trial}: {w}: {times[w][-1]:.1f} s", flush=True)
            loads.append(load_average())
        one = read_results(tmp / "1_process_1_thread_0.nc")
        two = read_results(tmp / "2_ranks_x_1_thread_0.nc")
        identical = one.identical(two)
        largest = max(float(abs(one[v] - two[v]).max()) for v in one.data_vars if one[v].dtype.kind == "f")
        xr.Dataset.close(one)
    med = {w: statistics.median(t) for w, t in times.items()}
    base = med["1 process, 1 thread"]
    payload = {"settings": vars(args), "operator": OPERATOR, "wall_seconds": times, "median": med,
               "speedup_vs_one_thread": {w: base / m for w, m in med.items()},
               "merged_identical": identical, "largest_difference": largest,
               "load_average": [min(loads), max(loads)]}
    save_json("distributed_rollout", payload)
    rows = [[w, f"{med[w]:.1f}", f"{base / med[w]:.2f}x"] for w in ways]
    text = "\n".join([
        "### Distributed rollouts on the CPU (`benchmarks/distributed_rollout.py`)",
        "",
        f"A {args.members}-member FNO ensemble (width 40, 16 modes, 4 layers) on 64x64 x 3 channels, "
        f"{args.trajectories} trajectories in batches of {args.batch_size}, {args.steps} steps; wall seconds of the "
        f"whole command (start-up, rollout, merge), median of {args.trials} alternating trials, 2 cores, 1-minute "
        f"load average {min(loads):.1f}-{max(loads):.1f}.",
        "",
        markdown_table(["way", "wall s", "speedup vs 1 process, 1 thread"], rows),
        "",
        f"Merged file of the two ranks identical to the single process's: {'yes' if identical else 'no'} "
        f"(largest difference {largest:.1e}). On one 2-core machine two ranks compete with the process "
        "start-up and the merge for the same cores; the point of ranks is more machines and GPUs, which "
        "this machine does not have.",
    ])
    update_readme("distributed_rollout", text)


if __name__ == "__main__":
    main()

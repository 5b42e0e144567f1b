"""Memory of streamed rollouts: peak resident memory against the number of steps and trajectories.

Each measurement runs ``sciflow.evaluate.run_rollout`` in a fresh process on cavity-sized states
(u, v, p on 64 x 64) and reports the growth of the process's peak resident memory
over its resident memory just before the rollout (torch, the model and the data layer loaded;
the kernel's high-water mark ``VmHWM`` reset there through ``/proc/self/clear_refs``). The
data are smooth synthetic fields with long trajectories (1001 frames), written once under
``runs/bench_rollout_memory/``; the model is an untrained FNO (its weights do not change what is
held in memory). What a collector that kept the whole rollout would hold is shown alongside:
truth, mean and std, ``3 x (steps + 1) x trajectories x 3 x 64 x 64`` float32.

    python -m benchmarks.rollout_memory            # -> results/rollout_memory.json, README section
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import yaml

from benchmarks._report import HERE, markdown_table, save_json, update_readme

REPO = HERE.parent
RUNS = REPO / "runs" / "bench_rollout_memory"
N, FRAMES, TRAJECTORIES = 64, 1001, 20
# (trajectories, batch size, steps)
CASES = [(10, 10, 100), (10, 10, 1000), (20, 10, 100), (20, 20, 100)]
OPERATOR = {"class_path": "fno", "init_args": {"width": 12, "modes": 8, "n_layers": 2}}

CHILD = """
import json, sys, time
import torch
torch.set_num_threads(1)
from sciflow.evaluate import run_rollout
from sciflow.ensemble import load_models
ckpt, card, out, n, batch, steps = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:7])
load_models([ckpt])
def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))
# reset the high-water mark: ru_maxrss would still hold the parent's from before exec
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS")
t0 = time.process_time()
ds, _ = run_rollout([ckpt], card, out=out, trajectories=list(range(n)), batch_size=batch, steps=steps,
                    plots=False, progress=False)
ds.close()
print(json.dumps({"rss_before": before, "peak": status("VmHWM"), "cpu_seconds": time.process_time() - t0}))
"""


def make_data() -> tuple[str, str]:
    """Synthetic cavity-sized data (written once) and an untrained FNO checkpoint."""
    import torch

    from sciflow.data.datamodule import SciflowData
    from sciflow.data.format import write_well
    from sciflow.surrogate import Surrogate

    card = RUNS / "card.yaml"
    ckpt = RUNS / "fno.ckpt"
    if card.exists() and ckpt.exists():
        return str(card), str(ckpt)
    x = (np.arange(N) + 0.5) / N
    X, Y = np.meshgrid(x, x, indexing="ij")
    t = np.arange(FRAMES) * 1e-3
    rng = np.random.default_rng(0)
    for split, count in (("train", 2), ("valid", 1), ("test", TRAJECTORIES)):
        for j in range(count):
            k, c = rng.integers(1, 4), rng.uniform(0.5, 2.0)
            phase = 2 * np.pi * (k * X[None] - c * t[:, None, None])
            u = np.sin(phase) * np.cos(2 * np.pi * Y[None])
            v = 0.5 * np.cos(phase) * np.sin(2 * np.pi * Y[None])
            p = np.cos(phase + Y[None])
            write_well(RUNS / "data" / split / f"case_{j:03d}.hdf5", dataset_name="waves64", time=t,
                       coords={"x": x, "y": x}, t0_fields={"pressure": p[None].astype(np.float32)},
                       t1_fields={"velocity": np.stack([u, v], -1)[None].astype(np.float32)},
                       params={"c": c}, attrs={"dt": 1e-3})
    card.write_text(yaml.safe_dump({"name": "waves64", "path": str(RUNS), "fields": ["velocity", "pressure"],
                                    "params": ["c"], "dt": 1e-3, "frames": FRAMES, "periodic": True}))
    torch.manual_seed(0)
    model = Surrogate(OPERATOR, data_spec=SciflowData(str(card)).spec)
    torch.save({"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}, ckpt)
    return str(card), str(ckpt)


def measure(card: str, ckpt: str, n: int, batch: int, steps: int) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = RUNS / f"r_{n}_{batch}_{steps}.nc"
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", CHILD, ckpt, card, str(out), str(n), str(batch), str(steps)],
                         env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(res.stderr[-3000:])
    m = json.loads(res.stdout.strip().splitlines()[-1])
    size = out.stat().st_size
    out.unlink()
    return {"trajectories": n, "batch_size": batch, "steps": steps, "growth_mib": (m["peak"] - m["rss_before"]) / 2**20,
            "peak_mib": m["peak"] / 2**20, "cpu_seconds": m["cpu_seconds"], "wall_seconds": time.perf_counter() - t0,
            "file_mib": size / 2**20, "held_in_memory_mib": 3 * (steps + 1) * n * 3 * N * N * 4 / 2**20}


def main() -> None:
    card, ckpt = make_data()
    rows = [measure(card, ckpt, *case) for case in CASES]
    save_json("rollout_memory", {"operator": OPERATOR, "grid": [N, N], "channels": 3, "cases": rows})
    by = {(r["trajectories"], r["batch_size"], r["steps"]): r for r in rows}
    long_short = by[(10, 10, 1000)]["growth_mib"] - by[(10, 10, 100)]["growth_mib"]
    text = [
        "### Rollout memory: flat in steps, bounded by the batch (`benchmarks/rollout_memory.py`)",
        "",
        "`python -m benchmarks.rollout_memory` -> `results/rollout_memory.json`. `run_rollout` of an untrained "
        f"FNO ({OPERATOR['init_args']}) on cavity-sized states (u, v, p on 64 x 64, synthetic, 1001 frames), "
        "one process per row, one thread; growth of the peak resident memory over the resident memory "
        "just before the rollout (model and libraries loaded). 'held in memory' is what a collector "
        "keeping the whole rollout (truth, mean, std) would need.",
        "",
        markdown_table(["trajectories", "batch size", "steps", "peak growth (MiB)", "held in memory (MiB)",
                        "file (MiB)", "CPU s"],
                       [[r["trajectories"], r["batch_size"], r["steps"], r["growth_mib"], r["held_in_memory_mib"],
                         r["file_mib"], r["cpu_seconds"]] for r in rows]),
        "",
        f"From 100 to 1000 steps the peak grows by {long_short:.1f} MiB while the results grow by "
        f"{by[(10, 10, 1000)]['held_in_memory_mib'] - by[(10, 10, 100)]['held_in_memory_mib']:.0f} MiB. "
        "Twice the trajectories in the same batches leave the peak where it was; a batch twice as large "
        "raises it. At this rate 100 cavity trajectories x 1000 steps in batches of 10 need the memory of "
        "the first rows, not the "
        f"{3 * 1001 * 100 * 3 * N * N * 4 / 2**30:.1f} GiB of their fields.",
    ]
    update_readme("rollout_memory", "\n".join(text))


if __name__ == "__main__":
    main()

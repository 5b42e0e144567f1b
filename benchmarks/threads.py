"""Training speed against the torch thread count, on this machine as it is loaded right now.

Three settings of the same `sciflow fit` path (Surrogate + Lightning Trainer, a small FNO on a
synthetic 32x32 dataset): one thread, torch's default (one per physical core) and sciflow's
default (:func:`sciflow.threads.default_threads`, which leaves out the cores other work keeps
busy). Trials alternate between the settings so that changes in machine load hit all three; the
table reports median samples/s and ratios against one thread, with the load average seen.

    python -m benchmarks.threads          # writes results/threads.json and the README table
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from benchmarks._report import markdown_table, save_json, update_readme
from benchmarks.train_throughput import lightning_rate
from sciflow.data.datamodule import SciflowData
from sciflow.threads import default_threads, load_average, torch_default_threads, usable_cores
from tests.synthetic import make_dataset

OPERATOR = {"class_path": "fno", "init_args": {"width": 16, "modes": 8, "n_layers": 2}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        card = make_dataset(Path(tmp) / "data", n=(6, 1, 1), shape=(32, 32), frames=12)
        dm = SciflowData(str(card), batch_size=8)
        dm.setup("fit")
        loads = [load_average()]
        ours = default_threads(1)
        settings = {"1 thread": 1, f"torch default ({torch_default_threads()})": torch_default_threads(),
                    f"sciflow default ({ours})": ours}
        rates: dict[str, list[float]] = {k: [] for k in settings}
        names = list(settings)
        for trial in range(args.trials):
            order = names[trial % len(names):] + names[: trial % len(names)]
            for name in order:
                torch.set_num_threads(settings[name])
                rates[name].append(lightning_rate(dm, args.steps, args.warmup, trial, OPERATOR))
            loads.append(load_average())
            print(f"trial {trial}: " + ", ".join(f"{k} {v[-1]:.1f} samples/s" for k, v in rates.items()))
    med = {k: statistics.median(v) for k, v in rates.items()}
    base = med["1 thread"]
    result = {
        "operator": OPERATOR, "grid": [32, 32], "batch_size": 8, "steps_timed": args.steps,
        "trials": args.trials, "cores": usable_cores(), "torch_default_threads": torch_default_threads(),
        "sciflow_default_threads": ours, "load_average_1min": loads,
        "samples_per_s": rates, "median_over_one_thread": {k: v / base for k, v in med.items()},
    }
    save_json("threads", result)
    table = markdown_table(["threads", "samples/s (median)", "relative to 1 thread"],
                           [[k, v, v / base] for k, v in med.items()])
    update_readme("threads", (
        f"### Training speed against torch threads ({usable_cores()} cores, 1-min load average "
        f"{min(loads):.1f}-{max(loads):.1f} while measuring; FNO width 16 on 32x32, batch 8, "
        f"{args.trials} alternating trials)\n\n"
        f"`python -m benchmarks.threads` -> `results/threads.json`\n\n{table}\n\n"
        f"The numbers depend on what else runs on the machine: rerun on the machine you train on. "
        f"sciflow's default is the rule in `sciflow/threads.py` (README, \"Threads\")."
    ))


if __name__ == "__main__":
    main()

"""Training throughput of sciflow (Surrogate + Lightning Trainer) against a plain PyTorch loop, and
data-loader throughput against the model's consumption rate, measured in one run.

Both training paths use the same FNO, data, batch size, optimiser and thread count; the plain loop
does the minimum (normalise, stepper loss, backward, AdamW step). Trials alternate between the two
paths so that machine noise hits both; the ratio of medians is reported.

    python -m benchmarks.train_throughput            # cavity data, writes results + README table
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from itertools import cycle

import lightning as L
import torch
from torch.utils.data import DataLoader

from benchmarks._report import markdown_table, save_json, update_readme
from benchmarks.peers import plain_way
from sciflow.data.card import load_card
from sciflow.data.datamodule import SciflowData
from sciflow.solvers.sweep import generate
from sciflow.surrogate import Surrogate

OPERATOR = {"class_path": "fno", "init_args": {"width": 24, "modes": 12, "n_layers": 4}}


class _StepTimer(L.Callback):
    """Wall time from the start of step ``warmup`` to the end of the last step."""

    def __init__(self, warmup: int):
        self.warmup, self.t0, self.t1 = warmup, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.global_step == self.warmup and self.t0 is None:
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.t1 = time.perf_counter()


def lightning_rate(dm: SciflowData, steps: int, warmup: int, seed: int, operator: dict = OPERATOR) -> float:
    """Samples per second of `sciflow fit`'s path: Surrogate in a Lightning Trainer (validation off)."""
    torch.manual_seed(seed)
    model = Surrogate(operator, lr=1e-3, data_spec=dm.spec)
    timer = _StepTimer(warmup)
    trainer = L.Trainer(
        max_steps=warmup + steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[timer],
    )
    trainer.fit(model, train_dataloaders=dm.train_dataloader())
    return steps * dm.batch_size / (timer.t1 - timer.t0)


def plain_rate(dm: SciflowData, steps: int, warmup: int, seed: int) -> float:
    """Samples per second of a hand-written loop around the same stepper (the peers benchmark's)."""
    clock, _, _ = plain_way(dm, OPERATOR, steps, warmup, seed)
    return steps * dm.batch_size / clock.wall


def loader_rate(dm: SciflowData, batches: int, workers: int) -> float:
    """Samples per second the DataLoader delivers alone (no model)."""
    loader = DataLoader(dm.train_set, batch_size=dm.batch_size, shuffle=True, num_workers=workers,
                        persistent_workers=False)
    it = iter(cycle(loader))
    next(it)  # worker start-up is a one-off
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * dm.batch_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", default="data/bench-cavity")
    ap.add_argument("--cases", type=int, default=12)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for both paths (1: stable timings on a shared machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    card = load_card("cavity")
    generate(card, "all", args.cases, root=args.root, workers=2)
    dm = SciflowData("cavity", root=args.root, batch_size=args.batch)
    dm.setup("fit")

    sciflow_rates, plain_rates = [], []
    for trial in range(args.trials):
        # alternate the order so drifts in machine load do not favour one side
        first, second = (plain_rate, lightning_rate) if trial % 2 == 0 else (lightning_rate, plain_rate)
        a = first(dm, args.steps, args.warmup, trial)
        b = second(dm, args.steps, args.warmup, trial)
        p, s = (a, b) if first is plain_rate else (b, a)
        plain_rates.append(p)
        sciflow_rates.append(s)
        print(f"trial {trial}: plain {p:.1f} samples/s, sciflow {s:.1f} samples/s, ratio {s / p:.3f}")
    plain_med, sciflow_med = statistics.median(plain_rates), statistics.median(sciflow_rates)
    loaders = {w: loader_rate(dm, 60, w) for w in (0, 2)}

    result = {
        "operator": OPERATOR, "batch_size": args.batch, "steps_timed": args.steps, "trials": args.trials,
        "torch_threads": args.threads, "load_average": list(os.getloadavg()),
        "train_windows": len(dm.train_set), "grid": dm.spec["spatial_shape"],
        "plain_samples_per_s": plain_rates, "sciflow_samples_per_s": sciflow_rates,
        "ratio_of_medians": sciflow_med / plain_med,
        "loader_samples_per_s": {str(k): v for k, v in loaders.items()},
        "loader_over_consumption": {str(k): v / sciflow_med for k, v in loaders.items()},
    }
    save_json("train_throughput", result)
    slowest = min(loaders.values()) / sciflow_med
    verdict = ("data loading is not the bottleneck" if slowest >= 2.0 else
               "the loader keeps up, with little headroom" if slowest >= 1.0 else
               "the loader is slower than training: data loading IS the bottleneck here")
    table = markdown_table(
        ["path", "samples/s (median)", "relative to plain loop"],
        [["plain PyTorch loop", plain_med, 1.0], ["sciflow fit (Surrogate + Trainer)", sciflow_med, sciflow_med / plain_med]]
        + [[f"DataLoader alone, {w} workers", r, r / plain_med] for w, r in loaders.items()],
    )
    update_readme("train_throughput", (
        f"### Training throughput (cavity 64x64, FNO width {OPERATOR['init_args']['width']}, "
        f"batch {args.batch}, CPU, {args.threads} torch thread(s), {args.trials} alternating trials)\n\n"
        f"`python -m benchmarks.train_throughput` -> `results/train_throughput.json`\n\n{table}\n\n"
        f"sciflow / plain = **{sciflow_med / plain_med:.3f}** (target >= 0.9). The loader alone delivers "
        f"{loaders[0] / sciflow_med:.1f}x (0 workers) and {loaders[2] / sciflow_med:.1f}x (2 workers) what "
        f"training consumes: {verdict}."
    ))
    print(f"ratio sciflow/plain = {sciflow_med / plain_med:.3f}")


if __name__ == "__main__":
    main()

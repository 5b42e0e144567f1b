"""Batched vs looped deep ensembles: one model step of a 5-member FNO ensemble.

Two ways to step all members once:

- looped: ``predict_next`` of each model in turn;
- batched: one ``torch.vmap`` over the stacked weights (:class:`sciflow.ensemble_batch.BatchedMembers`).

Two sizes: the issue's case, the cavity FNO (``configs/cavity_fno.yaml``: width 40, 16 modes,
4 layers) on 64x64 with 3 channels and a mask, batch of 8; and a small one (width 16, 8 modes,
2 layers, 32x32, batch of 1), where a model call is short and Python overhead counts. The data
is synthetic of those shapes (the cost of a step does not depend on the values).

Trials alternate between the two ways so that load changes on a shared machine hit both; the
table gives the median wall and CPU seconds per step and the looped / batched ratios. The
members of both ways are compared too (largest difference).

    python -m benchmarks.ensemble_batch            # writes results/ensemble_batch.json and the README table
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

import torch

from benchmarks._report import HERE, markdown_table, save_json, update_readme
from benchmarks._timing import timed
from benchmarks._train import grid_spec
from sciflow.ensemble_batch import BatchedMembers
from sciflow.surrogate import Surrogate
from sciflow.threads import load_average

CASES = {
    "cavity FNO, batch 8": ({"class_path": "fno", "init_args": {"width": 40, "modes": 16, "n_layers": 4}}, 64, 8),
    "small FNO, batch 1": ({"class_path": "fno", "init_args": {"width": 16, "modes": 8, "n_layers": 2}}, 32, 1),
}


def ensemble(operator: dict, size: int, batch: int, members: int = 5, device: torch.device | str = "cpu"):
    """``members`` surrogates of ``operator`` (seeds 0..members-1, eval mode) on a ``size x size``
    synthetic grid and seeded inputs: ``(models, history (members, batch, 1, C, *S), params
    (batch, P), mask (batch, *S))`` on ``device``."""
    spec = grid_spec(size)
    models = []
    for seed in range(members):
        torch.manual_seed(seed)
        models.append(Surrogate(operator, data_spec=spec).eval().to(device))
    C, S = len(spec["channels"]), spec["spatial_shape"]
    g = torch.Generator().manual_seed(0)
    history = torch.randn(members, batch, 1, C, *S, generator=g).to(device)
    params = (torch.rand(batch, len(spec["params"]), generator=g) + 0.5).to(device)
    mask = torch.ones(batch, *S, dtype=torch.bool, device=device)
    return models, history, params, mask


def measure(operator: dict, size: int, batch: int, members: int, trials: int, device: str = "cpu") -> dict:
    """Median looped and batched wall/CPU seconds of one step, and the largest difference
    (``device``: where the models run; a GPU is synchronised around each timed step)."""
    models, history, params, mask = ensemble(operator, size, batch, members, device)
    C, S = history.shape[3], tuple(history.shape[4:])
    batched = BatchedMembers(models)

    def looped() -> torch.Tensor:
        return torch.stack([m.predict_next(history[i], params, mask) for i, m in enumerate(models)])

    def together() -> torch.Tensor:
        return batched(history, params, mask)

    diff = float((looped() - together()).abs().max())  # also the warm-up
    times: dict[str, list[tuple[float, float]]] = {"looped": [], "batched": []}
    for _ in range(trials):
        times["looped"].append(timed(looped, device))
        times["batched"].append(timed(together, device))
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    return {"looped_s": med["looped"][0], "batched_s": med["batched"][0], "looped_cpu_s": med["looped"][1],
            "batched_cpu_s": med["batched"][1], "speedup": med["looped"][0] / med["batched"][0],
            "cpu_speedup": med["looped"][1] / med["batched"][1], "max_abs_difference": diff,
            "grid": list(S), "channels": C, "batch": batch, "operator": operator, "trials": times}


def _gpu_sentence() -> str:
    """The GPU figure of ``results/gpu.json`` (``benchmarks/gpu.py``), if measured."""
    path = HERE / "results" / "gpu.json"
    gpu = json.loads(path.read_text()) if path.is_file() else {}
    r = gpu.get("ensembles", {}).get("cavity FNO, batch 8")
    if r is None:
        return "On a GPU: not measured yet (`python -m benchmarks.gpu`)."
    return (f"On one {gpu['machine'].get('cuda', 'GPU')} it gained {r['speedup']:.2f}x against a 4x target: the "
            "looped step is bound by kernel launches, and vmap turns the 1x1 convolutions into grouped ones "
            "that cuDNN runs slowly (the \"GPU\" section below).")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--trials", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the ratio is not hit by other load)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    loads, results, rows = [load_average()], {}, []
    for name, (operator, size, batch) in CASES.items():
        r = results[name] = measure(operator, size, batch, args.members, args.trials)
        loads.append(load_average())
        rows.append([name, r["looped_s"], r["batched_s"], f"{r['speedup']:.2f}x", r["looped_cpu_s"],
                     r["batched_cpu_s"], f"{r['cpu_speedup']:.2f}x", f"{r['max_abs_difference']:.1e}"])
        print(rows[-1], flush=True)
    note = f"1-minute load average during the run {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores."
    save_json("ensemble_batch", {"members": args.members, "threads": args.threads, "load": note, "results": results})
    main_case = results["cavity FNO, batch 8"]["speedup"]
    table = markdown_table(["case", "looped s/step", "batched s/step", "speedup", "looped CPU s",
                            "batched CPU s", "CPU-time ratio", "largest difference"], rows)
    update_readme("ensemble_batch", f"""## Batched ensembles

One model step of a {args.members}-member FNO ensemble: each model in turn (looped) against one
`torch.vmap` over the stacked weights (batched, `sciflow.ensemble_batch`), median of
{args.trials} alternating trials, {args.threads} torch thread(s) (`python -m benchmarks.ensemble_batch`).
"cavity FNO": width 40, 16 modes, 4 layers, 64x64, 3 channels with a mask; "small FNO": width
16, 8 modes, 2 layers, 32x32.

{table}

Target >= 2x on the CPU for the cavity FNO at batch 8: **{"met" if main_case >= 2 else "missed"}**
({main_case:.2f}x). {note} Wall times on a shared machine are noisy: re-measure on an idle one.

Why the cavity case misses: on one CPU core a looped call at batch 8 already keeps the core busy
(FFTs, 1x1 convolutions and element-wise work on 8 x 40 x 64 x 64 activations and more with the
padding), so there is no idle time for batching to fill. The batched call works on activations
five times larger, well beyond the cache, and under vmap the element-wise ops and
concatenations run on moved batch axes: `torch.profiler` of one step (self CPU time, batched
vs looped) showed add 0.60 vs 0.14 s, copy 0.50 vs 0.18 s, cat 0.47 vs 0.08 s, gelu 0.33 vs
0.11 s. Batching pays where per-call overhead dominates (the small case). {_gpu_sentence()} So `rollout`
batches by default on accelerators only (uncompiled models) and loops on the CPU;
`batch_models=True` turns it on for small CPU models.
""")


if __name__ == "__main__":
    main()

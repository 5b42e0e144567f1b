"""CFDBench-style baseline table: FNO, U-Net and FactFormer next-step surrogates on the cavity,
tube, cylinder and dam datasets, against copying the input.

Protocol (as CFDBench, Luo, Chen, Zhang 2023, where our CPU allows):

- Data: each card's default sweep (``python -m benchmarks.generation --only sweeps`` or
  ``sciflow data generate <card> --workers 2``), all subsets pooled, split 80/10/10 by case by
  the card. Fields u, v only (CFDBench's; the stored pressure is left out, so that the NMSE is
  CFDBench's and not dominated by a channel in pascals), the geometry mask and the parameter
  vector as conditioning. One model step is one stored frame.
- Models: the operator, stepper, optimiser and EMA settings of ``configs/cavity_<operator>.yaml``
  (about 1 M parameters each), the same for every problem; warm-up 5 % of the steps, as there.
- Budget: the same *compute* per model, ``--budget`` CPU seconds of training on one thread
  (default 300 s), not the same number of steps: on this CPU a FactFormer step costs about six
  FNO steps, and equal steps within the time we have would leave every model untrained. The
  steps per operator are calibrated once (median CPU time of a training step, batch 16, after a
  warm-up step; ``results/cfdbench_steps.json``) and then fixed for every problem, so the
  configs ``configs/<problem>_<operator>.yaml`` carry the same ``max_steps`` and reproduce a
  row with ``sciflow fit``. CPU seconds rather than wall seconds, because the machine is shared:
  other load stretches the wall time of a run but not the work it does. Validation is off
  during the table's training (it does not change the weights); the test uses the final EMA
  weights.
- Metrics on the test split (the Surrogate's test metrics with ``rollout_steps=20``): one-step
  NMSE = MSE / mean(truth^2) over fluid cells and both channels, for the model and for copying
  the input; autoregressive rollout from frame 0 for 20 steps, NMSE averaged over the steps and
  at step 20.

Resumable: a (problem, operator) whose ``results/cfdbench_<problem>_<operator>.json`` exists is
skipped; runs go one at a time.

    python -m benchmarks.cfdbench_table                     # all missing rows, then the README table
    python -m benchmarks.cfdbench_table --problems tube     # one problem
    python -m benchmarks.cfdbench_table --report            # only rebuild the table from the JSON
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from benchmarks._report import HERE, markdown_table, save_json, update_readme
from benchmarks._train import Progress
from sciflow.data.datamodule import SciflowData
from sciflow.surrogate import Surrogate

REPO = HERE.parent
PROBLEMS = ("cavity", "tube", "cylinder", "dam")
OPERATORS = {"fno": "FNO", "unet": "U-Net", "factformer": "FactFormer"}
SECTION = "cfdbench_table"
BATCH_SIZE = 16
ROLLOUT_STEPS = 20
FIELDS = ["velocity"]
WARMUP_FRACTION = 0.05
THREADS = 1  # one thread: on a loaded 2-core machine two OpenMP threads mostly wait on each other


def cavity_model(operator: str) -> dict[str, Any]:
    """The ``model`` section of ``configs/cavity_<operator>.yaml`` (operator, stepper, optimiser)."""
    path = REPO / "configs" / f"cavity_{operator}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the table reuses the cavity configs' model settings")
    return yaml.safe_load(path.read_text())["model"]


def table_config(problem: str, operator: str, max_steps: int) -> dict[str, Any]:
    """The ``sciflow fit`` config of one row: the cavity model settings, the table's data and budget."""
    model = copy.deepcopy(cavity_model(operator))
    model["warmup_steps"] = max(1, round(WARMUP_FRACTION * max_steps))
    name = f"{problem}_{operator}"
    return {
        "seed_everything": 0,
        "model": model,
        "data": {"card": problem, "fields": list(FIELDS), "history": 1, "batch_size": BATCH_SIZE,
                 "rollout_steps": ROLLOUT_STEPS, "num_workers": 0},
        "trainer": {"max_steps": int(max_steps), "max_epochs": -1, "gradient_clip_val": 1.0,
                    "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                               "init_args": {"save_dir": "runs", "name": name}}},
        "checkpoint": {"dirpath": f"runs/{name}/checkpoints"},
    }


def check_config(problem: str, operator: str, max_steps: int) -> str | None:
    """A message if ``configs/<problem>_<operator>.yaml`` differs from the table's settings (cavity:
    its configs belong to the operators benchmark and are not checked)."""
    if problem == "cavity":
        return None
    path = REPO / "configs" / f"{problem}_{operator}.yaml"
    if not path.is_file():
        return f"{path.name} missing"
    have = yaml.safe_load(path.read_text())
    want = table_config(problem, operator, max_steps)
    diffs = [k for k in ("seed_everything", "model", "data") if have.get(k) != want[k]]
    trainer = have.get("trainer", {})
    diffs += [f"trainer.{k}" for k in ("max_steps", "gradient_clip_val") if trainer.get(k) != want["trainer"][k]]
    return f"{path.name} differs from the table in {diffs}" if diffs else None


# -- budget ---------------------------------------------------------------------------------------

def _train_step_seconds(model: Surrogate, dm: SciflowData, repeats: int = 3) -> float:
    """Median CPU seconds of one optimiser step (loss, backward, AdamW) after one warm-up step."""
    model = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(model.stepper.parameters(), lr=1e-4)
    loader = iter(dm.train_dataloader())
    times = []
    for k in range(repeats + 1):
        batch = next(loader)
        start = time.process_time()
        prev, target, cond, mask = model._batch(batch)
        loss = model.stepper.loss(prev, target[:, 0], cond, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if k:
            times.append(time.process_time() - start)
    return statistics.median(times)


def steps_for_budget(budget: float, problem: str) -> dict[str, Any]:
    """Calibrate the steps per operator on ``problem`` (kept in ``results/cfdbench_steps.json``)."""
    path = HERE / "results" / "cfdbench_steps.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("budget_cpu_seconds") == budget:
            return saved
    out: dict[str, Any] = {"budget_cpu_seconds": budget, "calibrated_on": problem, "batch_size": BATCH_SIZE,
                           "threads": THREADS, "seconds_per_step": {}, "max_steps": {}}
    for op in OPERATORS:
        L.seed_everything(0, verbose=False)
        dm = _datamodule(problem, op, 1)
        model = Surrogate(**cavity_model(op), data_spec=dm.spec)
        sec = _train_step_seconds(model, dm)
        out["seconds_per_step"][op] = sec
        out["max_steps"][op] = max(1, int(budget / sec))
        print(f"calibrate {op}: {sec:.3f} CPU s / step -> {out['max_steps'][op]} steps", flush=True)
    save_json("cfdbench_steps", out)
    return out


# -- one row --------------------------------------------------------------------------------------

def _datamodule(problem: str, operator: str, max_steps: int) -> SciflowData:
    dm = SciflowData(**table_config(problem, operator, max_steps)["data"])
    dm.setup("fit")
    return dm


def run_row(problem: str, operator: str, max_steps: int) -> dict[str, Any]:
    """Train one operator on one problem with the table's settings and test it."""
    cfg = table_config(problem, operator, max_steps)
    L.seed_everything(cfg["seed_everything"], verbose=False)
    dm = SciflowData(**cfg["data"])
    dm.setup("fit")
    model = Surrogate(**cfg["model"], data_spec=dm.spec)
    n_params = sum(p.numel() for p in model.stepper.parameters())
    trainer = L.Trainer(
        max_steps=max_steps, max_epochs=-1, gradient_clip_val=cfg["trainer"]["gradient_clip_val"],
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        callbacks=[Progress(every=25, label=f"{problem}/{operator}")],
    )
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(model, datamodule=dm)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    # keep the trained weights: a row can be re-tested or rolled out (`sciflow rollout --ckpt`)
    ckpt = REPO / "runs" / "bench_cfdbench" / f"{problem}_{operator}.ckpt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(ckpt)
    test_start = time.perf_counter()
    metrics: dict[str, float] = {}
    for d in trainer.test(model, datamodule=dm, verbose=False):
        metrics.update({k: float(v) for k, v in d.items()})
    return {
        "problem": problem, "operator": operator, "config": cfg, "parameters": n_params,
        "max_steps": max_steps, "samples_seen": max_steps * BATCH_SIZE,
        "train_windows": len(dm.train_set), "test_trajectories": len(dm.trajectories("test")),
        "train_wall_seconds": wall, "train_cpu_seconds": cpu, "test_wall_seconds": time.perf_counter() - test_start,
        "nmse": metrics.get("test/nmse"), "nmse_copy": metrics.get("test/nmse_copy"),
        "rollout_nmse": metrics.get("test/rollout_nmse"), "rollout_nmse_last": metrics.get("test/rollout_nmse_last"),
        "metrics": metrics, "card_hash": dm.card.hash, "checkpoint": str(ckpt.relative_to(REPO)),
    }


def copy_baseline(problem: str) -> dict[str, Any]:
    """Copying the input, on the same test windows the Surrogate uses: one step (every window) and
    the 20-step rollout from frame 0 (the last input frame repeated)."""
    from sciflow.metrics.spatial import nmse

    dm = SciflowData(**table_config(problem, "fno", 1)["data"])
    dm.setup("test")
    one_step, rollout, n = [], [], 0
    for batch in dm.test_dataloader()[0]:
        mask = batch["mask"] if dm.spec["has_mask"] else None
        one_step.append(nmse(batch["input"][:, -1], batch["target"][:, 0], mask))
    for batch in dm.test_dataloader()[1]:
        mask = batch["mask"] if dm.spec["has_mask"] else None
        last = batch["input"][:, -1]
        rollout.append(torch.stack([nmse(last, batch["target"][:, k], mask)
                                    for k in range(batch["target"].shape[1])], 1))  # (B, K)
        n += last.shape[0]
    errs = torch.cat(rollout)
    return {"problem": problem, "operator": "copy", "nmse": float(torch.cat(one_step).mean()),
            "rollout_nmse": float(errs.mean()), "rollout_nmse_last": float(errs[:, -1].mean()),
            "rollout_nmse_per_step": errs.mean(0).tolist(), "test_trajectories": n, "cases": case_counts(problem),
            "card_hash": dm.card.hash}


# -- table ----------------------------------------------------------------------------------------

def _result_path(problem: str, operator: str) -> Path:
    return HERE / "results" / f"cfdbench_{problem}_{operator}.json"


def available_problems() -> list[str]:
    """Problems whose card exists and whose data has been generated (train and test files)."""
    from sciflow.data.card import load_card

    out = []
    for p in PROBLEMS:
        if not (REPO / "datasets" / f"{p}.yaml").is_file():
            continue
        data = load_card(p).data_dir() / "data"
        if any((data / "train").glob("*.hdf5")) and any((data / "test").glob("*.hdf5")):
            out.append(p)
    return out


def case_counts(problem: str) -> dict[str, Any]:
    """Cases of the card's default sweep found on disk, per split, and the sweep's size."""
    from sciflow.data.card import load_card
    from sciflow.solvers.sweep import plan

    jobs = plan(load_card(problem))
    have = [j for j in jobs if j.path.exists()]
    return {"default_sweep": len(jobs), **{s: sum(j.path.parent.name == s for j in have) for s in ("train", "valid", "test")}}


def data_coverage(problems: list[str]) -> str:
    """One line per problem: the cases the rows were trained and tested on (recorded with the copy
    baseline, which runs first), against the card's default sweep."""
    parts = []
    for p in dict.fromkeys(problems):
        path = _result_path(p, "copy")
        counts = json.loads(path.read_text()).get("cases") if path.exists() else None
        counts = counts or case_counts(p)
        n = counts["train"] + counts["valid"] + counts["test"]
        note = "" if n == counts["default_sweep"] else f" of the default {counts['default_sweep']} (the rest not generated)"
        parts.append(f"{p} {n} cases{note} ({counts['train']}/{counts['valid']}/{counts['test']} train/valid/test)")
    return "Data: " + "; ".join(parts) + "."


def report(steps: dict[str, Any] | None) -> None:
    rows, wins = [], []
    for problem in PROBLEMS:
        results = {op: json.loads(_result_path(problem, op).read_text())
                   for op in OPERATORS if _result_path(problem, op).exists()}
        if not results:
            continue
        copy_path = _result_path(problem, "copy")
        if copy_path.exists():
            c = json.loads(copy_path.read_text())
            rows.append([problem, "copy input", "-", "-", "-", c["nmse"], c["rollout_nmse"], c["rollout_nmse_last"]])
        else:
            rows.append([problem, "copy input", "-", "-", "-", next(iter(results.values()))["nmse_copy"], "-", "-"])
        for op, r in results.items():
            rows.append([problem, OPERATORS[op], f"{r['parameters'] / 1e6:.2f} M", r["max_steps"],
                         f"{r['train_cpu_seconds'] / 60:.1f} / {r['train_wall_seconds'] / 60:.1f}",
                         r["nmse"], r["rollout_nmse"], r["rollout_nmse_last"]])
        if "fno" in results:
            r = results["fno"]
            wins.append(f"{problem}: FNO {r['nmse']:.3g} vs copy {r['nmse_copy']:.3g} "
                        f"({'beats' if r['nmse'] < r['nmse_copy'] else 'does NOT beat'} copy)")
    coverage = data_coverage([r[0] for r in rows])
    budget = ""
    if steps:
        per = ", ".join(f"{OPERATORS[o]} {s:.2f} s/step -> {steps['max_steps'][o]} steps"
                        for o, s in steps["seconds_per_step"].items())
        budget = (f"Budget: {steps['budget_cpu_seconds']:.0f} CPU seconds of training per model on "
                  f"{steps['threads']} thread, batch {steps['batch_size']} (calibrated on {steps['calibrated_on']}: "
                  f"{per}); the same steps for every problem.")
    text = (
        "### CFDBench-style baselines (one-step and 20-step rollout NMSE, test split)\n\n"
        "`python -m benchmarks.cfdbench_table` -> `results/cfdbench_<problem>_<operator>.json`; configs "
        "`configs/<problem>_<operator>.yaml` (cavity: `configs/cavity_<operator>.yaml`'s model settings with the "
        "table's data and budget). Each card's default sweep, subsets pooled, split 80/10/10 by case; u, v "
        "only; NMSE = MSE / mean(truth^2) over fluid cells, averaged over windows. Rollouts start at frame 0 "
        "(cavity: one frame after the lid starts; cylinder: after 30 convective times of warm-up; tube, dam: at "
        "t = 0+).\n\n"
        f"{budget}\n\n{coverage}\n\n"
        + markdown_table(["problem", "model", "params", "steps", "train min (CPU / wall)", "one-step NMSE",
                          "rollout NMSE (mean of 20)", "rollout NMSE (step 20)"], rows)
        + ("\n\nFNO against copying the input, one step: " + "; ".join(wins) + "." if wins else "")
        + (f"\n\nFactFormer gets {steps['max_steps']['factformer']} steps in the budget (one of its steps costs "
           f"{steps['seconds_per_step']['factformer'] / steps['seconds_per_step']['fno']:.1f} FNO steps on this CPU): "
           "too few to get far from the copy baseline, so its rows say what the budget buys on a CPU, not what "
           "the architecture can do." if steps else "")
        + "\n\nEach model sees a few thousand samples (a few epochs): these are budget-limited baselines, "
          "not converged models; CFDBench trains to convergence on a GPU."
    )
    update_readme(SECTION, text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", nargs="+", choices=PROBLEMS, default=None)
    ap.add_argument("--operators", nargs="+", choices=list(OPERATORS), default=list(OPERATORS))
    ap.add_argument("--budget", type=float, default=300.0, help="CPU seconds of training per model")
    ap.add_argument("--report", action="store_true", help="only rebuild the README table")
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    path = HERE / "results" / "cfdbench_steps.json"
    if args.report:
        report(json.loads(path.read_text()) if path.exists() else None)
        return
    problems = args.problems or available_problems()
    if not problems:
        raise SystemExit("no generated data found: run `python -m benchmarks.generation --only sweeps` first")
    steps = steps_for_budget(args.budget, problems[0])
    for problem in problems:
        if not _result_path(problem, "copy").exists():
            save_json(f"cfdbench_{problem}_copy", copy_baseline(problem))
        for op in args.operators:
            issue = check_config(problem, op, steps["max_steps"][op])
            if issue:
                print(f"warning: {issue}", flush=True)
            if _result_path(problem, op).exists():
                print(f"{problem}/{op}: done, skipped", flush=True)
                continue
            print(f"{problem}/{op}: {steps['max_steps'][op]} steps", flush=True)
            result = run_row(problem, op, steps["max_steps"][op])
            save_json(f"cfdbench_{problem}_{op}", result)
            print(f"{problem}/{op}: nmse {result['nmse']:.3g} (copy {result['nmse_copy']:.3g}), rollout "
                  f"{result['rollout_nmse']:.3g}, last {result['rollout_nmse_last']:.3g}", flush=True)
            report(steps)
    report(steps)


if __name__ == "__main__":
    main()

"""Calibration of four ensembles on cavity and Kuramoto-Sivashinsky rollouts, with their cost.

Configurations, per problem:

- (a) ``deep5``: a deep ensemble of 5 deterministic models (``sciflow ensemble``, distinct seeds);
- (b) ``fm8``: 8 flow-matching samples of one model (member 0 of (d));
- (c) ``crps8``: the CRPS-trained ensemble stepper with 8 members;
- (d) ``deepfm4x2``: a deep ensemble of 4 flow-matching models x 2 samples each (8 members);
- and the point forecast of one deterministic model (member 0 of (a)), whose MAE is the CRPS of a
  point forecast: an ensemble is only worth its cost if its fair CRPS is below that.

Every model of a problem has the same operator (a small U-Net), optimiser, EMA and number of
optimiser steps, from the published configs (``configs/<problem>_{deterministic|fno,
flow_matching, crps}.yaml``) with the sizes below; validation is off during training and the
final (EMA) weights are used. Training runs one process at a time on one thread; its cost is
the CPU seconds (user + system) of the training processes.

Evaluation: ``sciflow.evaluate.run_rollout`` on the test split from frame 0 for the whole
horizon (cavity: 49 steps of 0.1 ms, KS: 159 steps of 0.8 s), streamed to netCDF; the per-step
scores are read back from the file: fair CRPS, spread, skill, coverage of the central 50 % and
90 % intervals (rank-based), and the deterministic model's MAE. Scores pool the cells and
channels of a step in physical units (cavity: u, v in m/s; KS: u). Cost of sampling: operator
calls per member step, and CPU seconds per member step, timed on one batch in alternating
rounds (median) in the same process, relative to the deterministic model.

Goals (for the configuration with the lowest overall CRPS): spread-skill ratio within 0.8-1.2 at
every lead time; coverage within 5 points of nominal at 50 % and 90 % at every lead time; fair
CRPS below the deterministic model's MAE at every lead time.

Resumable: ensembles continue member by member, a single model resumes from its last.ckpt, and
evaluations whose JSON exists are not redone.

    python -m benchmarks.calibration                 # data, training, evaluation, table
    python -m benchmarks.calibration --train-only
    python -m benchmarks.calibration --report        # rebuild the table from the JSON results
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from benchmarks._report import HERE, markdown_table, save_json, update_readme
from sciflow.ensemble import Manifest

REPO = HERE.parent
RUNS = REPO / "runs" / "bench_calibration"
RESULTS = HERE / "results" / "calibration"
SECTION = "calibration"
SAMPLES = 8
THRESHOLDS = (0.8,)

# Per problem: the data, the configs the models come from, and the shared model and budget.
PROBLEMS: dict[str, dict[str, Any]] = {
    "cavity": {
        "data": {"card": "cavity", "fields": ["velocity"], "history": 1, "batch_size": 8,
                 "rollout_steps": 1, "num_workers": 0},
        "configs": {"deterministic": "cavity_fno", "flow_matching": "cavity_flow_matching",
                    "crps": "cavity_crps"},
        "operator": {"class_path": "unet", "init_args": {"base_channels": 8, "channel_multipliers": [1, 2, 2],
                                                          "n_blocks": 1, "embed_dim": 32}},
        "optim": {"lr": 1.0e-3, "weight_decay": 1.0e-5, "warmup_steps": 50, "min_lr_ratio": 0.05,
                  "ema_decay": 0.99},
        "max_steps": 1000,
        "lead_steps": [1, 5, 10, 20, 35, 49],
        "generate": ["cavity", "--workers", "1"],
    },
    "ks": {
        "data": {"card": "ks", "history": 1, "batch_size": 32, "rollout_steps": 1, "num_workers": 0},
        "configs": {"deterministic": "ks_deterministic", "flow_matching": "ks_flow_matching",
                    "crps": "ks_crps"},
        "operator": {"class_path": "unet", "init_args": {"base_channels": 8, "channel_multipliers": [1, 2, 4],
                                                          "n_blocks": 1, "embed_dim": 32}},
        "optim": {"lr": 1.0e-3, "weight_decay": 1.0e-5, "warmup_steps": 100, "min_lr_ratio": 0.05,
                  "ema_decay": 0.995},
        "max_steps": 2000,
        "lead_steps": [1, 10, 25, 50, 100, 159],
        "generate": ["ks", "--cases", "320", "--workers", "1"],
    },
}
# stepper settings of the benchmark (the configs' stepper class, these arguments)
STEPPERS = {
    "deterministic": {"class_path": "deterministic"},
    "flow_matching": {"class_path": "flow_matching", "init_args": {"n_steps": 4, "solver": "euler"}},
    "crps": {"class_path": "crps", "init_args": {"noise": "latent", "noise_dim": 16, "train_samples": 2}},
}
# name -> (stepper kind, models, samples per model, label)
CONFIGURATIONS = {
    "deep5": ("deterministic", 5, 1, "(a) deep ensemble, 5 deterministic"),
    "fm8": ("flow_matching", 1, SAMPLES, "(b) flow matching, 8 samples of 1 model"),
    "crps8": ("crps", 1, SAMPLES, "(c) CRPS-trained, 8 members"),
    "deepfm4x2": ("flow_matching", 4, 2, "(d) deep ensemble, 4 flow-matching x 2 samples"),
}
# a configuration name with this suffix: the same members, spread-corrected per lead time with
# factors fitted on the validation split (``sciflow.spread_correction``); the window in steps
CORRECTED = "_sc"
CORRECTION_WINDOW = 5


def rel(p: Path) -> str:
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)


def sciflow(*args: str) -> tuple[int, float]:
    """Run ``sciflow <args>`` on one thread; returns (exit code, CPU seconds of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    rc = subprocess.run([sys.executable, "-m", "sciflow.cli", *args], cwd=REPO, env=env).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return rc, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


# -- training ---------------------------------------------------------------------------------------------

def fit_config(problem: str, kind: str) -> Path:
    """Write the ``sciflow fit`` config of one model kind: the published config with the
    benchmark's operator, stepper settings, data, optimiser and budget."""
    p = PROBLEMS[problem]
    src = REPO / "configs" / f"{p['configs'][kind]}.yaml"
    cfg = yaml.safe_load(src.read_text())
    model = {"operator": copy.deepcopy(p["operator"]), "stepper": copy.deepcopy(STEPPERS[kind]), **p["optim"]}
    if cfg["model"]["stepper"]["class_path"] != STEPPERS[kind]["class_path"]:
        raise ValueError(f"{src.name}: stepper {cfg['model']['stepper']['class_path']}, expected {kind}")
    name = f"{problem}_{kind}"
    out = {
        "seed_everything": 0,
        "model": model,
        "data": copy.deepcopy(p["data"]),
        "trainer": {"max_steps": p["max_steps"], "max_epochs": -1, "gradient_clip_val": 1.0,
                    "limit_val_batches": 0, "num_sanity_val_steps": 0, "accelerator": "cpu", "devices": 1,
                    "enable_progress_bar": False, "log_every_n_steps": 50,
                    "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                               "init_args": {"save_dir": rel(RUNS / name), "name": "logs"}}},
        "checkpoint": {"dirpath": rel(RUNS / name / "checkpoints"), "every_n_train_steps": 200},
    }
    path = RUNS / "configs" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# written by benchmarks/calibration.py from configs/{src.name} with the benchmark's sizes\n"
    text = header + yaml.safe_dump(out, sort_keys=False)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def train_problem(problem: str) -> dict[str, Any]:
    """Train every model of a problem (resuming); returns where they are and what they cost."""
    out: dict[str, Any] = {}
    for kind, n in (("deterministic", 5), ("flow_matching", 4)):
        folder = RUNS / f"{problem}_{kind}_ensemble"
        if not _ensemble_done(folder, n):
            print(f"[train] {problem} {kind}: deep ensemble of {n}", flush=True)
            rc, _ = sciflow("ensemble", "--config", str(fit_config(problem, kind)), "--members", str(n),
                            "--out", str(folder))
            if rc:
                raise SystemExit(f"{problem} {kind} ensemble failed (exit {rc}); rerun to continue")
        manifest = Manifest.read(folder)
        out[kind] = {"folder": rel(folder), "members": [
            {"name": m.name, "seed": m.seed, "checkpoint": rel(folder / m.checkpoint), "cpu_seconds": m.cpu_seconds}
            for m in manifest.members]}
    folder = RUNS / f"{problem}_crps"
    cost_file = folder / "cost.json"
    if not cost_file.exists():
        cfg = fit_config(problem, "crps")
        cost = json.loads((folder / "partial_cost.json").read_text())["cpu_seconds"] \
            if (folder / "partial_cost.json").exists() else 0.0
        last = folder / "checkpoints" / "last.ckpt"
        print(f"[train] {problem} crps", flush=True)
        rc, cpu = sciflow("fit", "--config", str(cfg), *(["--ckpt_path", "last"] if last.exists() else []))
        folder.mkdir(parents=True, exist_ok=True)
        if rc:
            (folder / "partial_cost.json").write_text(json.dumps({"cpu_seconds": cost + cpu}))
            raise SystemExit(f"{problem} crps training failed (exit {rc}); rerun to continue")
        cost_file.write_text(json.dumps({"cpu_seconds": cost + cpu}))
    out["crps"] = {"members": [{"name": "crps", "checkpoint": rel(folder / "checkpoints" / "last.ckpt"),
                                "cpu_seconds": json.loads(cost_file.read_text())["cpu_seconds"]}]}
    return out


def _ensemble_done(folder: Path, n: int) -> bool:
    try:
        m = Manifest.read(folder)
    except ValueError:
        return False
    return m.size == n and all(x.status == "done" for x in m.members)


def ensure_data(problem: str) -> None:
    from sciflow.data.card import load_card

    card = load_card(PROBLEMS[problem]["data"]["card"])
    if not any((card.data_dir(None) / "data" / "test").glob("*.hdf5")):
        print(f"[data] generating {problem}", flush=True)
        rc, _ = sciflow("data", "generate", *PROBLEMS[problem]["generate"])
        if rc:
            raise SystemExit(f"data generation for {problem} failed")


# -- evaluation -------------------------------------------------------------------------------------------

def _members(problem: str, trained: dict[str, Any], name: str) -> dict[str, Any]:
    """``run_rollout`` arguments and training cost of a configuration (or ``det1``)."""
    det, fm, crps = (trained[k]["members"] for k in ("deterministic", "flow_matching", "crps"))
    if name == "det1":
        return {"ckpts": [REPO / det[0]["checkpoint"]], "samples": 1, "cpu": det[0]["cpu_seconds"]}
    kind, models, samples, _ = CONFIGURATIONS[name]
    pool = {"deterministic": det, "flow_matching": fm, "crps": crps}[kind][:models]
    if len(pool) < models:
        raise SystemExit(f"{problem}/{name}: {models} trained {kind} models needed, found {len(pool)}")
    return {"ckpts": [REPO / m["checkpoint"] for m in pool], "samples": samples,
            "cpu": sum(m["cpu_seconds"] for m in pool)}


def _plain(v: Any) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def _per_lead(ds: Any, steps: list[int]) -> dict[str, list[float | None]]:
    """Scores at the lead steps and over all steps 1..T (the last entry)."""
    out: dict[str, list[float | None]] = {k: [] for k in ("crps", "mae", "spread_skill", "coverage_50",
                                                          "coverage_90", "nmse")}
    T = ds.sizes["time"] - 1
    for sel in [*[slice(k, k + 1) for k in steps if k <= T], slice(1, T + 1)]:
        part = ds.isel(time=sel)
        out["mae"].append(_plain(part.mae.mean()))
        out["nmse"].append(_plain(part.nmse.mean()))
        if "crps" in ds:
            out["crps"].append(_plain(part.crps.mean()))
            s2, k2 = float((part.spread**2).mean()), float((part.skill**2).mean())
            out["spread_skill"].append(_plain(np.sqrt(s2 / k2)) if k2 > 0 else None)
            cov = part.coverage.mean(("trajectory", "time"))
            out["coverage_50"].append(_plain(cov.sel(coverage_level=0.5)))
            out["coverage_90"].append(_plain(cov.sel(coverage_level=0.9)))
    return out


def _sampling_cost(problem: str, trained: dict[str, Any], rounds: int = 3, steps: int = 3) -> dict[str, float]:
    """Median CPU seconds per member step of each configuration, timed on the test split's
    initial states in alternating rounds (same process, one thread)."""
    from sciflow.data.datamodule import SciflowData
    from sciflow.ensemble import load_models
    from sciflow.rollout import member_table, rollout

    dm = SciflowData(PROBLEMS[problem]["data"]["card"], fields=PROBLEMS[problem]["data"].get("fields"))
    traj = dm.trajectories("test")
    ids = range(len(traj))
    x = torch.from_numpy(np.stack([traj.read(i, 0, 1) for i in ids]))
    p = torch.from_numpy(np.stack([traj.params(i) for i in ids]).astype(np.float32))
    mask = torch.from_numpy(np.stack([traj.mask(i) for i in ids])) if traj.has_mask else None
    names = ["det1", *CONFIGURATIONS]
    setups = {n: _members(problem, trained, n) for n in names}
    models = {n: load_models(s["ckpts"]) for n, s in setups.items()}
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(rounds):
        for n in names:
            M = len(member_table(models[n], setups[n]["samples"]))
            t0 = time.process_time()
            for _step in rollout(models[n], x, p, steps, samples=setups[n]["samples"], mask=mask):
                pass
            times[n].append((time.process_time() - t0) / (steps * M * x.shape[0]))
    return {n: statistics.median(v) for n, v in times.items()}


def _label(name: str) -> str:
    if name == "det1":
        return "one deterministic model"
    if name != _base(name):
        return CONFIGURATIONS[_base(name)][3] + " + spread correction"
    return CONFIGURATIONS[name][3]


def _evaluate(problem: str, trained: dict[str, Any], name: str) -> dict[str, Any]:
    """One configuration's test rollout, scored per lead time. A corrected configuration first
    rolls the base configuration out on the validation split and fits the spread correction there."""
    from sciflow.evaluate import run_rollout
    from sciflow.spread_correction import fit_spread_correction

    p = PROBLEMS[problem]
    base = _base(name)
    setup = _members(problem, trained, base)
    rollouts = RUNS / "rollouts"
    correction, fit = None, {}
    t0 = time.process_time()
    if base != name:
        print(f"[evaluate] {problem} {base} on the validation split (fitting the spread correction)", flush=True)
        ds, _ = run_rollout(setup["ckpts"], p["data"]["card"], split="valid", samples=setup["samples"],
                            seed=1, out=rollouts / f"{problem}_{base}_valid.nc", progress=False, plots=False)
        correction = fit_spread_correction(ds, window=CORRECTION_WINDOW)
        ds.close()
        correction.save(rollouts / f"{problem}_{base}_spread.json")
        fit = {"spread_correction": {"window": CORRECTION_WINDOW, "fitted_on": "valid",
                                     "factors": [float(f) for f in correction.factors]}}
    print(f"[evaluate] {problem} {name}", flush=True)
    ds, summary = run_rollout(setup["ckpts"], p["data"]["card"], split="test", samples=setup["samples"],
                              seed=0, out=rollouts / f"{problem}_{name}.nc", progress=False,
                              spread_correction=correction)
    res = {
        "label": _label(name),
        "checkpoints": [rel(c) for c in setup["ckpts"]], "samples": setup["samples"],
        "members": int(ds.sizes["member"]), "trajectories": int(ds.sizes["trajectory"]),
        "steps": int(ds.sizes["time"] - 1), "dt": float(ds.attrs["dt"]),
        "calls_per_member_step": max(m for m in _calls(setup["ckpts"])),
        "training_cpu_seconds": setup["cpu"], "rollout_cpu_seconds": time.process_time() - t0,
        "scores": _per_lead(ds, p["lead_steps"]), "summary": summary, **fit,
    }
    ds.close()
    return res


def evaluate_problem(problem: str, trained: dict[str, Any]) -> dict[str, Any]:
    """Roll every configuration out on the test split; per-lead scores and costs to JSON. Parts
    already scored (``<problem>_<name>.json``) are not redone."""
    path = RESULTS / f"{problem}.json"
    p = PROBLEMS[problem]
    out: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    out.update({"problem": problem, "lead_steps": p["lead_steps"]})
    out.setdefault("configurations", {})
    names = ["det1", *CONFIGURATIONS, *(n + CORRECTED for n in CONFIGURATIONS)]
    for name in names:
        part = RESULTS / f"{problem}_{name}.json"
        if part.exists():
            out["configurations"][name] = json.loads(part.read_text())
            continue
        res = _evaluate(problem, trained, name)
        RESULTS.mkdir(parents=True, exist_ok=True)
        part.write_text(json.dumps(res, indent=2))
        out["configurations"][name] = res
    if "cpu_seconds_per_member_step" not in out:
        out["cpu_seconds_per_member_step"] = _sampling_cost(problem, trained)
    save_json(f"calibration/{problem}", out)
    return out


def _calls(ckpts: list[Path]) -> list[int]:
    from sciflow.surrogate import Surrogate

    return [Surrogate.load(c).inference_stepper.calls_per_step for c in ckpts]


# -- report -----------------------------------------------------------------------------------------------

def _goals(res: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    """The issue's goals for one configuration: (met, numbers) each, over the lead times."""
    sc = res["scores"]
    leads = range(len(sc["crps"]) - 1)  # the lead-time entries (the last is all steps)
    ss = [sc["spread_skill"][i] for i in leads]
    c50 = [sc["coverage_50"][i] for i in leads]
    c90 = [sc["coverage_90"][i] for i in leads]
    gap = [sc["mae_det"][i] - sc["crps"][i] for i in leads]
    return {
        "spread-skill in 0.8-1.2 at every lead time": (
            all(v is not None and 0.8 <= v <= 1.2 for v in ss), f"{min(ss):.2f}-{max(ss):.2f}"),
        "coverage within 5 points of 50 % and 90 % at every lead time": (
            all(abs(a - 0.5) <= 0.05 for a in c50) and all(abs(b - 0.9) <= 0.05 for b in c90),
            f"50 %: {min(c50):.0%}-{max(c50):.0%}, 90 %: {min(c90):.0%}-{max(c90):.0%}"),
        "fair CRPS below the deterministic MAE at every lead time": (
            all(g > 0 for g in gap), f"CRPS / MAE {min(c / m for c, m in zip(sc['crps'], sc['mae_det'])):.2f}-"
                                     f"{max(c / m for c, m in zip(sc['crps'], sc['mae_det'])):.2f}"),
    }


def report() -> None:
    """The README section from ``results/calibration/<problem>.json``."""
    lines = [
        "## Calibration of ensembles: cavity and KS (`benchmarks/calibration.py`)",
        "",
        "`python -m benchmarks.calibration` -> `results/calibration/*.json`. Four ensembles per problem, "
        "each against one deterministic model's point forecast: (a) a deep ensemble of 5 deterministic "
        "models (`sciflow ensemble`), (b) 8 flow-matching samples of one model, (c) the CRPS-trained "
        "stepper with 8 members, (d) a deep ensemble of 4 flow-matching models x 2 samples. "
        "Every model of a problem has the same small U-Net, optimiser, EMA and number of optimiser steps; "
        "training ran one process at a time on one thread (CPU seconds of the training processes). "
        "Scores on the test split from frame 0 over the whole horizon, per lead time and over all steps "
        "(`all`); fair CRPS and MAE pool cells and channels in physical units; spread-skill is "
        "sqrt(mean spread^2 / mean skill^2) with the (M + 1) / M correction; coverage is rank-based "
        "(right in expectation for a calibrated ensemble of any size). Rows \"+ spread correction\": the "
        "same members rescaled about their mean per lead time by factors fitted on the validation split "
        f"(`sciflow calibrate`, window {CORRECTION_WINDOW} steps; `sciflow.spread_correction`), then scored on "
        "the test split; the fit costs one validation rollout. CPU seconds per member step: "
        "median of 3 alternating rounds of 3 rollout steps on the test initial states, one thread, on a "
        "shared machine (the ratios are the claim; absolute times need an idle machine).",
    ]
    for problem in PROBLEMS:
        path = RESULTS / f"{problem}.json"
        if not path.exists():
            lines += ["", f"{problem}: not run yet."]
            continue
        res = json.loads(path.read_text())
        confs = res["configurations"]
        det = confs["det1"]
        cost = res["cpu_seconds_per_member_step"]
        training = json.loads((RESULTS / f"{problem}_training.json").read_text())
        any_conf = next(iter(CONFIGURATIONS))
        dt = confs[any_conf]["dt"]
        leads = [k for k in res["lead_steps"] if k <= confs[any_conf]["steps"]]
        lines += ["", f"### {problem}", "",
                  f"Data: {_data_line(problem)}; {confs[any_conf]['trajectories']} test trajectories, "
                  f"{confs[any_conf]['steps']} steps of {dt:.3g} s. Models: "
                  f"{json.dumps(PROBLEMS[problem]['operator']['init_args'])} U-Net, "
                  f"{PROBLEMS[problem]['max_steps']} optimiser steps of batch {PROBLEMS[problem]['data']['batch_size']}"
                  f" ({training['settings']['optim']}). One deterministic model: one-step NMSE "
                  f"{det['summary']['nmse_step1']:.3g} vs copying the input {det['summary']['nmse_copy_step1']:.3g}.",
                  ""]
        header = ["configuration", "lead", "fair CRPS", "det. MAE", "spread/skill", "cov. 50 %", "cov. 90 %",
                  "calls / member step", "CPU s / member step (vs det.)", "training CPU s"]
        rows = []
        best, best_crps = None, float("inf")
        shown = [n for n in [*CONFIGURATIONS, *(n + CORRECTED for n in CONFIGURATIONS)] if n in confs]
        for name in shown:
            c = confs[name]
            base = _base(name)
            sc = c["scores"]
            sc["mae_det"] = det["scores"]["mae"]
            labels = [f"{k * dt:.3g} s" for k in leads] + ["all"]
            for i, lab in enumerate(labels):
                last = i == len(labels) - 1
                rows.append([
                    c["label"] if i == 0 else "", lab, sc["crps"][i], sc["mae_det"][i], sc["spread_skill"][i],
                    f"{sc['coverage_50'][i]:.0%}", f"{sc['coverage_90'][i]:.0%}",
                    c["calls_per_member_step"] if last else "",
                    f"{cost[base]:.3g} ({cost[base] / cost['det1']:.1f}x)" if last else "",
                    f"{c['training_cpu_seconds']:.0f}" if last else "",
                ])
            if sc["crps"][-1] < best_crps:
                best, best_crps = name, sc["crps"][-1]
        lines.append(markdown_table(header, rows))
        goals = _goals(confs[best])
        lines += ["", f"Best overall CRPS: **{confs[best]['label']}** (CRPS {best_crps:.3g} vs the deterministic "
                      f"MAE {det['scores']['mae'][-1]:.3g}), at {confs[best]['training_cpu_seconds']:.0f} CPU s of "
                      f"training and {cost[_base(best)] / cost['det1']:.1f}x a deterministic member step per member "
                      f"({confs[best]['members']} members). Goals for it:", ""]
        lines.append(markdown_table(["goal", "numbers", "status"],
                                    [[g, nums, "met" if ok else "missed"] for g, (ok, nums) in goals.items()]))
        others = []
        for name in shown:
            met = sum(ok for ok, _ in _goals(confs[name]).values())
            others.append(f"{confs[name]['label']}: {met} of 3 goals met")
        lines += ["", "All configurations: " + "; ".join(others) + "."]
        lines += ["", _dispersion_line(confs[best], leads, dt)]
    lines += ["", READING]
    update_readme(SECTION, "\n".join(lines))


# Why the goals are missed, from what the tables show (mechanisms, not new measurements).
READING = (
    "Reading the tables. Every ensemble here beats the point forecast in CRPS where its members are "
    "individually good (the deep deterministic ensembles), but none is calibrated at every lead time, "
    "and the direction of the miss differs by problem. On the cavity the deep ensemble is "
    "under-dispersed early and nearly calibrated late: five models trained on the same 42 trajectories "
    "share most of their one-step error, so their spread misses the part of the error they have in "
    "common, and the spread catches up as their rollouts diverge. On KS it is over-dispersed at every "
    "lead: the one-step errors of the members are small and largely independent, so the mean is much "
    "better than any member and the truth sits near the centre of the members instead of being "
    "exchangeable with them (with independent member errors and no shared error the ratio tends to "
    "sqrt(M + 1), 2.4 for M = 5); past the Lyapunov horizon the members spread over the attractor "
    "faster than the error of their mean grows. The generative configurations are trained for as many "
    "optimiser steps as one deterministic model, which is too few for them: on the cavity their samples "
    "are individually worse than the deterministic model (CRPS above its MAE) and too close to each "
    "other. The spread correction (rows \"+ spread correction\") fixes the spread-skill ratio where the "
    "miss is a matter of scale: for the KS deep ensemble it holds within 0.8-1.2 at every lead time, for "
    "the cavity's at all but one lead, with factors fitted on 8 validation trajectories. It does not fix "
    "coverage, which depends on the shape of the error distribution: on the cavity the errors are "
    "heavy-tailed over the cells (most cells small, a few large), so a spread right on average covers too "
    "much at 50 %; and past KS's Lyapunov horizon the members and the truth are far-apart states of the "
    "attractor rather than a spread around the mean, so shrinking the members towards their mean makes "
    "the fair CRPS worse there although the ratio becomes 1. Not tried here: longer training of the "
    "generative and CRPS models (they had the deterministic models' step budget), and calibrating "
    "quantiles (coverage) instead of the spread."
)


def _base(name: str) -> str:
    return name[: -len(CORRECTED)] if name.endswith(CORRECTED) else name


def _dispersion_line(conf: dict[str, Any], leads: list[int], dt: float) -> str:
    """One sentence: where the best configuration is under- or over-dispersed."""
    ratios = conf["scores"]["spread_skill"][:-1]
    parts = []
    for k, r in zip(leads, ratios):
        kind = "under-dispersed" if r < 0.8 else "over-dispersed" if r > 1.2 else "within 0.8-1.2"
        parts.append(f"{k * dt:.3g} s: {r:.2f} ({kind})")
    return "Spread/skill of the best configuration by lead time: " + "; ".join(parts) + "."


def _data_line(problem: str) -> str:
    return {"cavity": "the cavity card's default sweep (`sciflow data generate cavity --workers 1`, 56 cases, "
                      "42/8/6 train/valid/test by case), u and v",
            "ks": "a KS subset of 320 trajectories (`sciflow data generate ks --cases 320`: 282 train x 140 frames, "
                  "19 valid and 19 test x 640 frames; the card's full 2304 are too many for this CPU)"}[problem]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    ap.add_argument("--train-only", action="store_true")
    ap.add_argument("--report", action="store_true", help="only rebuild the README table from the JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.report:
        report()
        return
    for problem in args.problems:
        ensure_data(problem)
    trained = {}
    for problem in args.problems:
        trained[problem] = train_problem(problem)
        RESULTS.mkdir(parents=True, exist_ok=True)
        save_json(f"calibration/{problem}_training", {"problem": problem, "models": trained[problem],
                                                      "settings": PROBLEMS[problem], "steppers": STEPPERS})
    if args.train_only:
        return
    for problem in args.problems:
        evaluate_problem(problem, trained[problem])
    report()


if __name__ == "__main__":
    main()

"""Graph operators on particle data: GNS against the reduced-order (GIOROM-style) operator at three
sampling ratios, on the Taylor-Green and dam-break particle cards; inference cost at 1e4 and 1e5
particles; a 400-step dam-break rollout checked for physics.

Protocol:

- Data: each card's default sweep (``sciflow data generate <card> --workers 2``) and split
  (sph_tgv: 6 / 3 / 3 trajectories of 76 frames, 2500 particles; sph_dam: 3 / 1 / 2 of 41 frames,
  3200 fluid particles and a wall layer). History 5 velocities (6 positions), one model step = one
  stored frame, random-walk noise of 1.5 % of dx (LagrangeBench's 3e-4 at dx = 0.02).
- Models: ``configs/<card>_gns.yaml`` and ``configs/<card>_reduced_order.yaml`` (the ratio of the
  latter varied: 5, 10, 25 %). GNS at the published size (width 128, 10 message-passing steps)
  costs about 5x the configs' width 64, 5 steps on this CPU, which is what the budget affords.
- Budget: the same CPU seconds of training per model (``--budget``, one thread, batch 1), turned
  into steps once per (card, model) from the median CPU time of a training step; warm-up 5 %,
  cosine decay. Validation is off during the table's training.
- Metrics (LagrangeBench's definitions, :mod:`sciflow.metrics.particles`), final EMA weights:
  rollouts of 20 steps from the start of every test trajectory (its first 6 frames are the
  input); position MSE over the 20 steps (MSE20), Sinkhorn divergence and kinetic-energy MSE at
  steps 1 and 11 (stride 10), averaged over trajectories; all particles count, walls included
  (their positions are given), as in LagrangeBench. The baseline keeps every particle's last
  velocity (constant velocity, no acceleration).
- LagrangeBench's published GNS numbers on its 2D TGV and DAM sets are printed beside ours: a
  different dataset of the same problem (their solver, resolution, units, sequence lengths and
  a GPU training of about 1e6 steps).
- Scale (:mod:`benchmarks.particle_scale`): CPU seconds per step and memory at 1e4 and 1e5
  particles of refined clouds of each card with trained models (the dam's tank and column, or
  the periodic Taylor-Green box), GNS on all particles against the reduced-order operator at its
  trained sparse density plus the interpolation to all particles (``--trials``, default 3).
- Dam 400: one dam-break trajectory of 406 frames (the card's have 41) simulated with the card's
  settings; each model rolled out 400 steps from its first 6 frames: fluid particles outside the
  tank (the walls' inner faces) at any step, kinetic energy ``sum 1/2 |v|^2`` against the initial
  potential energy ``sum g (y - y_floor)`` (per unit mass), and the error curve.

Resumable: a model whose result JSON exists is not trained again.

    python -m benchmarks.graph_operators                       # everything missing, then the README table
    python -m benchmarks.graph_operators --only train --problems "Taylor-Green"
    python -m benchmarks.graph_operators --only scale dam400   # the other parts
    python -m benchmarks.graph_operators --report              # rebuild the README table from the JSON
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402
import yaml  # noqa: E402

from benchmarks._report import HERE, markdown_table, save_json, update_readme  # noqa: E402
from benchmarks._train import Progress  # noqa: E402

REPO = HERE.parent
SECTION = "graph_operators"
THREADS = 1
STEPS = 20
RATIOS = (0.05, 0.1, 0.25)
SCALE_N = (10_000, 100_000)
# problem label -> card name
CARDS = {"Taylor-Green": "sph_tgv", "dam break": "sph_dam"}
# LagrangeBench (Toshev et al. 2023), GNS on its 2D sets: MSE20 / Sinkhorn / kinetic-energy MSE
LAGRANGEBENCH_GNS = {"Taylor-Green": (5.9e-6, 3.2e-7, 4.9e-7), "dam break": (3.1e-5, 1.4e-5, 1.1e-4)}
LONG_DAM = {"aspect": 2.0, "nu": 1.0e-3}  # one of the sweep's parameter sets (1.75, 5e-4 left the tank at 0.4 s)
LONG_FRAMES = 406  # 400 steps after the 6 input frames


# -- configs and models ------------------------------------------------------------------------------

def config(card: str, operator: str) -> dict[str, Any]:
    path = REPO / "configs" / f"{card}_{operator}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the benchmark trains the published configs")
    return yaml.safe_load(path.read_text())


def variants(card: str) -> dict[str, dict[str, Any]]:
    """label -> model section: GNS, and the reduced-order operator at each of :data:`RATIOS`."""
    out = {"gns": config(card, "gns")["model"]}
    ro = config(card, "reduced_order")["model"]
    for r in RATIOS:
        m = copy.deepcopy(ro)
        m["operator"].setdefault("init_args", {})["ratio"] = r
        out[f"ro{round(100 * r)}"] = m
    return out


def datamodule(card: str, root: str | None = None):
    from sciflow.data.particles.datamodule import ParticleData

    d = dict(config(card, "gns")["data"])
    d.update(num_workers=0, rollout_steps=STEPS)
    if root is not None:
        d.update(card=None, root=root)
    dm = ParticleData(**d)
    dm.setup("fit")
    return dm


def step_seconds(model, dm, repeats: int = 5) -> float:
    """Median CPU seconds of one optimiser step after a warm-up step."""
    model = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(model.stepper.parameters(), lr=1e-4)
    loader = iter(dm.train_dataloader())
    times = []
    for k in range(repeats + 1):
        b = next(loader)
        t = time.process_time()
        loss = model.stepper.loss(b["position"], b["target"][0], b["particle_type"], b["batch"], b["params"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if k:
            times.append(time.process_time() - t)
    return statistics.median(times)


def _result(card: str, label: str) -> Path:
    return HERE / "results" / "graph_operators" / f"{card}_{label}.json"


def checkpoint(card: str, label: str) -> Path:
    return REPO / "runs" / "bench_graph_operators" / f"{card}_{label}.ckpt"


def train_and_test(card: str, label: str, model_cfg: dict[str, Any], budget: float) -> dict[str, Any]:
    """Train one model for ``budget`` CPU seconds (as steps) and score 20-step test rollouts."""
    from sciflow.evaluate_particles import run_particle_rollout
    from sciflow.particle_surrogate import ParticleSurrogate

    L.seed_everything(0, verbose=False)
    dm = datamodule(card)
    sec = step_seconds(ParticleSurrogate(**model_cfg, data_spec=dm.spec), dm)
    max_steps = max(1, int(budget / sec))
    model_cfg = {**model_cfg, "warmup_steps": max(1, max_steps // 20)}
    L.seed_everything(0, verbose=False)
    model = ParticleSurrogate(**model_cfg, data_spec=dm.spec)
    print(f"{card}/{label}: {sec:.3f} CPU s per step -> {max_steps} steps", flush=True)
    trainer = L.Trainer(max_steps=max_steps, max_epochs=-1, gradient_clip_val=1.0, accelerator="cpu", devices=1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                        callbacks=[Progress(every=100, label=f"{card}/{label}")])
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(model, datamodule=dm)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    ckpt = checkpoint(card, label)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(ckpt)
    t = time.perf_counter()
    _, summary = run_particle_rollout([ckpt], card, steps=STEPS, out=ckpt.with_suffix(".nc"), progress=False)
    return {"card": card, "label": label, "model": model_cfg,
            "parameters": sum(p.numel() for p in model.stepper.parameters()),
            "seconds_per_step": sec, "max_steps": max_steps, "train_cpu_seconds": cpu, "train_wall_seconds": wall,
            "test_wall_seconds": time.perf_counter() - t, "summary": summary, "card_hash": dm.spec["card_hash"],
            "checkpoint": str(ckpt.relative_to(REPO)), "train_windows": len(dm.train_set),
            "test_trajectories": len(dm.trajectories("test"))}


def constant_velocity(card: str) -> dict[str, Any]:
    """Every particle keeps its last velocity (zero acceleration) for 20 steps; walls as stored."""
    from sciflow.metrics.particles import rollout_scores
    from sciflow.nn.neighbors import Domain

    dm = datamodule(card)
    tr = dm.trajectories("test")
    h = dm.history
    dom = Domain.from_bounds(dm.spec["bounds"], dm.spec["periodic"])
    inner = torch.tensor(dm.spec.get("fluid_bounds") or dm.spec["bounds"], dtype=torch.float64)
    scores = []
    for i in range(len(tr)):
        x = torch.from_numpy(tr.read(i, 0, h + STEPS + 1)).double()
        dyn = torch.from_numpy(tr.dynamic(i))[:, None]
        v = dom.displacement(x[h], x[h - 1])
        pred = torch.stack([dom.wrap(x[h] + k * v) for k in range(1, STEPS + 1)])
        held = torch.maximum(torch.minimum(pred, inner[:, 1]), inner[:, 0])  # walls hold, as for the models
        per = torch.tensor(dm.spec["periodic"])
        pred = torch.where(dyn, torch.where(per, pred, held), x[h + 1:])
        s = rollout_scores(pred, x[h + 1:], frame_dt=dm.spec["dt"], dx=dm.spec["dx"], domain=dom)
        scores.append({k: s[k] for k in ("mse5", "mse10", "mse20", "sinkhorn", "e_kin_mse")})
    return {"card": card, "label": "cv", "summary": {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}}


# -- dam 400 ------------------------------------------------------------------------------------------

def long_dam_root(card: str) -> Path:
    return REPO / "runs" / "bench_graph_operators" / f"{card}_long"


def long_dam(card: str) -> Path:
    """One dam-break trajectory of :data:`LONG_FRAMES` frames (the card's have 41), simulated with
    the card's solver settings and written as a dataset folder (the same trajectory as its train
    and test split, so that it reads like any dataset). Its first 41 frames repeat a case of the
    sweep; the 365 after them are beyond anything the models were trained on."""
    from sciflow.data.card import load_card
    from sciflow.data.particles import write_particle_dataset
    from sciflow.solvers import get_problem

    root = long_dam_root(card)
    if (root / "metadata.json").is_file():
        return root
    c = load_card(card)
    t = time.process_time()
    case = get_problem(c.problem).simulate(LONG_DAM, frames=LONG_FRAMES, frame_dt=float(c.dt), seed=0, **c.solver)
    case.attrs.update(case_id="long", cpu_seconds_total=time.process_time() - t)
    write_particle_dataset(root, {"train": [case], "valid": [case], "test": [case]},
                           {**case.metadata, "parameter_names": list(c.params)}, dataset_name=f"{card}_long")
    return root


def _energies(x: np.ndarray, fluid: np.ndarray, dt: float, g: float, floor: float) -> tuple[np.ndarray, float]:
    """Kinetic energy per step ``sum 1/2 |v|^2`` of the fluid ``(T - 1,)`` and the initial potential
    energy ``sum g (y - floor)``, per unit mass."""
    xf = x[:, fluid]
    v = (xf[1:] - xf[:-1]) / dt
    return 0.5 * (v**2).sum((1, 2)), g * float((xf[0, :, 1] - floor).sum())


def dam400(card: str, labels: list[str]) -> dict[str, Any]:
    """400-step rollouts of the long dam-break trajectory: containment, energy bound, error curve."""
    from sciflow.checkpoints import CardMismatchWarning
    from sciflow.evaluate_particles import run_particle_rollout

    root = long_dam(card)
    dm = datamodule(card, root=str(root))
    tr = dm.trajectories("test")
    steps = (tr.n_frames(0) - 1 - dm.history) // dm.time_step
    g = float(np.linalg.norm(dm.spec["external_force"].get("vector", [0.0, 0.0])))
    inner = np.asarray(dm.spec.get("fluid_bounds") or dm.spec["bounds"])
    out: dict[str, Any] = {"card": card, "steps": steps, "g": g, "params": LONG_DAM, "models": {}}
    done = HERE / "results" / "graph_operators_dam400.json"
    if done.is_file():  # resumable: models rolled out before are kept
        before = json.loads(done.read_text())
        if before.get("steps") == steps and before.get("params") == LONG_DAM:
            out["models"] = before["models"]
    truth_done = "truth (SPH)" in out["models"]
    for label in labels:
        if label in out["models"]:
            print(f"dam400 {label}: done, skipped", flush=True)
            continue
        path = checkpoint(card, label).with_name(f"{card}_{label}_dam400.nc")
        with warnings.catch_warnings():
            # the long trajectory's folder is not the card's: its hash differs by construction
            warnings.simplefilter("ignore", CardMismatchWarning)
            _, summary = run_particle_rollout([checkpoint(card, label)], root=str(root), split="test",
                                              trajectories=[0], steps=steps, out=path, progress=False)
        ds = xr.load_dataset(path, engine="h5netcdf")
        n = int(ds.n_particles[0])
        fluid = ds.particle_type.values[0, :n] == 0
        dx = float(dm.spec["dx"])
        floor = float(ds["truth"].values[0, 0, :n][fluid][:, 1].min()) - dx / 2
        rows = {"truth (SPH)": ds["truth"].values[0, :, :n]} if not truth_done else {}
        rows[label] = ds["mean"].values[0, :, :n]
        truth_done = True
        for name, x in rows.items():
            outside = ((x[:, fluid] < inner[:, 0] - 1e-6) | (x[:, fluid] > inner[:, 1] + 1e-6)).any(-1).sum(1)
            e_kin, e_pot0 = _energies(x, fluid, float(dm.spec["dt"]), g, floor)
            entry = {"max_outside": int(outside.max()), "max_e_kin": float(e_kin.max()), "e_pot0": e_pot0,
                     "energy_bounded": bool(e_kin.max() <= e_pot0), "finite": bool(np.isfinite(x).all())}
            if name == label:
                curve = ds.mse.values[0]
                entry.update(summary=summary, results=str(path.relative_to(REPO)),
                             mse_curve={int(k): float(curve[k]) for k in (1, 5, 10, 20, 50, 100, 200, 300, 400)
                                        if k <= steps})
            out["models"][name] = entry
            print(f"dam400 {name}: outside {entry['max_outside']}, max E_kin {entry['max_e_kin']:.4g} vs "
                  f"E_pot(0) {e_pot0:.4g}", flush=True)
    return out


# -- scale ----------------------------------------------------------------------------------------------

def scale(card: str, labels: list[str], trials: int = 3) -> dict[str, Any]:
    from benchmarks.particle_scale import CLOUDS, measure_scale

    dm = datamodule(card)
    tr = dm.trajectories("test")
    frame, types = tr.read(0, 0, 1)[0], tr.particle_type(0)
    clouds = {n: CLOUDS[card](frame, types, tr.metadata, n) for n in SCALE_N}
    models = {}
    for label in labels:
        m = json.loads(_result(card, label).read_text())["model"]["operator"]
        models[label] = {"ckpt": str(checkpoint(card, label)), "kind": m["class_path"], "radius": dm.spec["radius"],
                         "ratio": (m.get("init_args") or {}).get("ratio", 1.0)}
    speed = float(np.linalg.norm(np.abs(dm.spec["stats"]["vel_mean"]) + np.asarray(dm.spec["stats"]["vel_std"])))
    params = [float(p) for p in tr.params(0)] if dm.spec["params"] else None
    rows = measure_scale(models, clouds, float(dm.spec["dx"]), tr.n_particles(0), params, speed, trials)
    return {"card": card, "n_train": tr.n_particles(0), "rows": rows}


# -- table ----------------------------------------------------------------------------------------------

def _label(label: str, init: dict[str, Any]) -> tuple[str, str]:
    if label == "gns":
        return "GNS", f"width {init.get('width', 128)}, {init.get('message_passing_steps', 10)} MP steps"
    return (f"reduced order, {round(100 * init['ratio'])} % {init.get('sampling', 'fps')}",
            f"width {init.get('width', 64)}, grid {init.get('latent_grid', 32)}")


def report() -> None:
    """Rebuild the README section from the JSON results."""
    rows = []
    for problem, card in CARDS.items():
        base = _result(card, "cv")
        if base.exists():
            s = json.loads(base.read_text())["summary"]
            rows.append([problem, "constant velocity", "-", "-", "-", "-", s["mse20"], s["sinkhorn"], s["e_kin_mse"]])
        for label in ["gns", *[f"ro{round(100 * r)}" for r in RATIOS]]:
            path = _result(card, label)
            if not path.exists():
                continue
            r = json.loads(path.read_text())
            name, size = _label(label, r["model"]["operator"].get("init_args") or {})
            s = r["summary"]
            rows.append([problem, name, size, f"{r['parameters'] / 1e3:.0f} k", r["max_steps"],
                         f"{r['train_cpu_seconds']:.0f}", s["mse20"], s["sinkhorn"], s["e_kin_mse"]])
        lb = LAGRANGEBENCH_GNS[problem]
        rows.append([problem, "GNS, LagrangeBench (a different dataset of the problem)", "width 128, 10 MP steps",
                     "-", "-", "GPU", *lb])
    header = ["problem", "model", "size", "params", "train steps", "train CPU s", "MSE20", "Sinkhorn", "E_kin MSE"]
    protocol = (__doc__ or "").split("Protocol:")[1].split("Resumable:")[0].strip()
    text = ("### Graph operators: GNS vs the reduced-order operator (`benchmarks/graph_operators.py`)\n\n"
            "`python -m benchmarks.graph_operators` -> `results/graph_operators/*.json`, "
            "`results/graph_operators_scale_<card>.json`, `results/graph_operators_dam400.json`. "
            "(`benchmarks/particles.py` is the particle data benchmark.)\n\n"
            + protocol + "\n\nWhat the budget left out (the 5 % ratio, converged training, the published model "
            "size): [`docs/graph-operators.md`](../docs/graph-operators.md), \"Benchmark coverage\".\n\n"
            + markdown_table(header, rows) + _scale_text() + _dam_text())
    update_readme(SECTION, text)


def _scale_text() -> str:
    # problem -> (card, rows) of the scale results, each file read once
    results = {problem: (card, json.loads(path.read_text())["rows"]) for problem, card in CARDS.items()
               if (path := HERE / "results" / f"graph_operators_scale_{card}.json").exists()}
    rows = []
    for problem, (_, res) in results.items():
        gns = {r["n_target"]: r["cpu_s"] for r in res if r["kind"] == "gns"}
        for r in res:
            ratio = f"{gns[r['n_target']] / r['cpu_s']:.1f}x" if r["n_target"] in gns else "-"
            rows.append([problem, r["n"], r["model"], r["cpu_s"], ratio, r["wall_s"], r["step_memory_mb"],
                         r["peak_rss_mb"]])
    if not rows:
        return ""
    trials = ", ".join(f"{p} {min(len(r['trials']) for r in res)}" for p, (_, res) in results.items())
    return (f"\n\nInference cost per step on refined clouds of the card (trials per row: {trials}; alternating, "
            "in fresh processes, median; CPU s on one thread; speed-up: GNS's CPU s over the model's at the same N; wall s on "
            "the shared machine; memory the step adds to the process, and its peak RSS):\n\n"
            + markdown_table(["problem", "particles", "model", "CPU s / step", "speed-up vs GNS", "wall s / step",
                              "step memory MB", "peak RSS MB"], rows)
            + "\n\nTarget: the reduced-order operator >= 10x faster than GNS at 1e5 particles with a 20-step "
            "error within 2x of GNS's (the MSE20 of the table above, scored at the card's resolution: no truth is "
            "simulated at 1e5 particles):\n\n"
            + markdown_table(["problem", "model", "particles", "speed-up vs GNS", "MSE20 / GNS's MSE20", "status"],
                             _scale_verdicts(results)))


def _scale_verdicts(results: dict[str, tuple[str, list[dict[str, Any]]]]) -> list[list[Any]]:
    rows = []
    for problem, (card, res) in results.items():
        if not _result(card, "gns").exists():
            continue
        top = max(r["n_target"] for r in res)
        gns = next((r for r in res if r["kind"] == "gns" and r["n_target"] == top), None)
        gns_mse = json.loads(_result(card, "gns").read_text())["summary"]["mse20"]
        for r in res:
            if r["kind"] == "gns" or r["n_target"] != top or gns is None or not _result(card, r["model"]).exists():
                continue
            speed = gns["cpu_s"] / r["cpu_s"]
            err = json.loads(_result(card, r["model"]).read_text())["summary"]["mse20"] / gns_mse
            rows.append([problem, r["model"], r["n"], f"{speed:.1f}x", f"{err:.2f}",
                         "met" if speed >= 10 and err <= 2 else "missed"])
    return rows


def _dam_text() -> str:
    path = HERE / "results" / "graph_operators_dam400.json"
    if not path.exists():
        return ""
    res = json.loads(path.read_text())
    rows = []
    for name, m in res["models"].items():
        curve = ", ".join(f"{k}: {v:.2g}" for k, v in m.get("mse_curve", {}).items()) or "-"
        rows.append([name, m["max_outside"], m["max_e_kin"], m["e_pot0"], "yes" if m["energy_bounded"] else "NO",
                     curve])
    return (f"\n\nDam break, {res['steps']}-step rollouts of one {LONG_FRAMES}-frame trajectory "
            f"(aspect {res['params']['aspect']}, nu {res['params']['nu']}):\n\n"
            + markdown_table(["model", "fluid particles outside the tank (max over steps)", "max E_kin (J/kg)",
                              "E_pot(0) (J/kg)", "E_kin <= E_pot(0)", "position MSE at step"], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=["train", "scale", "dam400", "long"], default=None)
    ap.add_argument("--problems", nargs="+", choices=list(CARDS), default=list(CARDS))
    ap.add_argument("--labels", nargs="+", default=None, help="only these models (gns, ro5, ro10, ro25)")
    ap.add_argument("--budget", type=float, default=600.0, help="CPU seconds of training per model")
    ap.add_argument("--trials", type=int, default=3, help="alternating trials of the scale measurement")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    if args.report:
        report()
        return
    parts = args.only or ["train", "scale", "dam400"]
    if "long" in parts:
        print(long_dam(CARDS["dam break"]), flush=True)
    if "train" in parts:
        for problem in args.problems:
            card = CARDS[problem]
            if not _result(card, "cv").exists():
                save_json(f"graph_operators/{card}_cv", constant_velocity(card))
            for label, model_cfg in variants(card).items():
                if args.labels and label not in args.labels:
                    continue
                if _result(card, label).exists():
                    print(f"{card}/{label}: done, skipped", flush=True)
                    continue
                save_json(f"graph_operators/{card}_{label}", train_and_test(card, label, model_cfg, args.budget))
                report()
    for card in [CARDS[p] for p in args.problems]:  # scale on every card with trained models
        labels = [lbl for lbl in variants(card) if _result(card, lbl).exists()
                  and (not args.labels or lbl in args.labels)]
        if "scale" in parts and labels:
            save_json(f"graph_operators_scale_{card}", scale(card, labels, args.trials))
    dam = CARDS["dam break"]
    labels = [lbl for lbl in variants(dam) if _result(dam, lbl).exists()]
    if "dam400" in parts and labels:
        save_json("graph_operators_dam400", dam400(dam, labels))
    report()


if __name__ == "__main__":
    main()

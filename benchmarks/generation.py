"""Cost and quality of generated training data, per problem.

Four parts, each saved to ``results/generation.json`` as soon as it is done (a rerun skips what is
there; ``--force PART`` redoes one part):

- ``per_case``: CPU seconds to simulate one case in this process (one thread, so on an idle core
  the wall time; CPU time does not stretch when other jobs share the machine), median of
  ``--repeats`` runs:
  cavity at Re 100 / 400 / 1000, tube and cylinder at their card's baseline, dam at its card's
  baseline when ``datasets/dam.yaml`` exists, and KS per trajectory at 140 and 640 frames (alone
  and in a batch of 16, as the sweep runs it). The output and internal grids are recorded.
- ``sweeps``: wall time of each card's default sweep (``sciflow data generate <card> --workers 2``,
  every subset's ``cases``), into the card's data folder, which the baseline table then trains on,
  with the CPU seconds its worker processes used and the machine's load average: on a shared
  machine the wall time depends on the other load, the CPU seconds do not (an idle 2-core machine
  runs the sweep in about CPU seconds / 2). A sweep that found files already there records how
  many (its times cover the rest only); the summed solver seconds of all its cases are recorded
  either way.
- ``quality``: over every generated file of a card: whether it passes ``check_file``, the
  max and 99th percentile of the central-difference divergence of the stored velocity on
  interior fluid cells in units of U / L (each case's ``div_scale``), the same of the solver's own
  staggered divergence, and for channels the largest relative error of the volume flux through
  cross-sections (tube: all of them; cylinder: those clear of the body) against ``u_in`` times
  the channel height.
- ``validation``: the figures the solver tests assert, recomputed with the same solver code:
  Ghia et al. (1982) centre-line deviation at Re 100 and 400 (64 x 64), developed tube profile
  u_max / u_mean and entry length against the Durst et al. (2005) correlation (64 x 64), and the
  DFG 2D-2 (Schaefer & Turek 1996) Strouhal number at the cylinder card's 20 cells per diameter
  and at the test's 10.

    python -m benchmarks.generation                   # everything missing
    python -m benchmarks.generation --only per_case   # one part
    python -m benchmarks.generation --force sweeps    # redo one part
"""

from __future__ import annotations

import os

# one BLAS/OpenMP thread per process (set before numpy loads): the sweep runs one process per
# worker, and timings per case should not depend on how many cores the machine has
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks._report import HERE, markdown_table, save_json, update_readme  # noqa: E402
from sciflow.data.card import load_card  # noqa: E402
from sciflow.data.check import check_file  # noqa: E402
from sciflow.data.reader import WellFile  # noqa: E402
from sciflow.solvers import PROBLEMS, get_problem  # noqa: E402
from sciflow.solvers import dam as dam_solver  # noqa: E402
from sciflow.solvers.ns2d_output import central_divergence  # noqa: E402
from sciflow.solvers.sweep import generate, plan  # noqa: E402

NAME = "generation"
PARTS = ("sweeps", "per_case", "quality", "validation")
FLOW_CARDS = ("cavity", "tube", "cylinder", "dam")


def flow_cards() -> list[str]:
    """The incompressible-flow cards present (dam only once its card and problem exist)."""
    root = HERE.parent / "datasets"
    return [c for c in FLOW_CARDS if (root / f"{c}.yaml").is_file() and c in PROBLEMS]


def load_results() -> dict[str, Any]:
    path = HERE / "results" / f"{NAME}.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    data.pop("machine", None)
    return data


# -- per case --------------------------------------------------------------------------------------

def _time_case(problem: str, params: dict[str, float], *, grid: list[int], frames: int,
               frame_dt: float, repeats: int) -> dict[str, Any]:
    """Median wall seconds of ``repeats`` simulations of one case, with its resolution."""
    sim = get_problem(problem)
    times, cpu, case = [], [], None
    for r in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        case = sim.simulate(params, grid=tuple(grid), frames=frames, frame_dt=frame_dt, seed=r)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    a = case.attrs
    return {
        "params": params, "output_grid": list(grid), "internal_grid": a.get("internal_grid"),
        "frames": frames, "frame_dt": frame_dt, "reynolds": a.get("reynolds"),
        "n_steps": a.get("n_steps"), "seconds": statistics.median(cpu), "all_seconds": cpu,
        "wall_seconds": times, "load_average": list(os.getloadavg()),
    }


def per_case(repeats: int) -> dict[str, Any]:
    """Seconds per case for every problem (see the module docstring)."""
    out: dict[str, Any] = {}
    cav = load_card("cavity")
    for re in (100, 400, 1000):
        p = {**cav.base, "mu": cav.base["rho"] * cav.base["U"] * cav.base["width"] / re}
        out[f"cavity Re {re}"] = _time_case("cavity", p, grid=cav.grid, frames=cav.frames_for("train"),
                                            frame_dt=cav.dt, repeats=repeats)
        print(f"per case: cavity Re {re}: {out[f'cavity Re {re}']['seconds']:.2f} s", flush=True)
    for name in flow_cards():
        if name == "cavity":
            continue
        card = load_card(name)
        p = dict(card.base)
        key = f"{name} Re {card.derived_values(p).get('Re', float('nan')):.0f} (baseline)"
        out[key] = _time_case(card.problem, p, grid=card.grid, frames=card.frames_for("train"),
                              frame_dt=card.dt, repeats=repeats)
        print(f"per case: {key}: {out[key]['seconds']:.2f} s", flush=True)
    ks = load_card("ks")
    sim = get_problem("ks")
    for frames in (140, 640):
        for batch in (1, 16):
            times = []
            for r in range(repeats):
                params = [{"L": ks.base["L"]}] * batch
                start = time.process_time()
                sim.simulate_batch(params, seeds=list(range(r * batch, (r + 1) * batch)),
                                   grid=tuple(ks.grid), frames=frames, frame_dt=ks.dt)
                times.append((time.process_time() - start) / batch)
            key = f"ks {frames} frames" + ("" if batch == 1 else f", batch of {batch}")
            out[key] = {"params": {"L": ks.base["L"]}, "output_grid": list(ks.grid), "frames": frames,
                        "frame_dt": ks.dt, "batch": batch, "seconds": statistics.median(times),
                        "all_seconds": times, "note": "seconds per trajectory, 80 s warm-up included"}
            print(f"per case: {key}: {out[key]['seconds']:.2f} s", flush=True)
    return out


# -- sweeps ----------------------------------------------------------------------------------------

def _case_attrs(path: Path) -> list[dict[str, Any]]:
    cases = WellFile(path).attrs.get("sciflow_cases", [])
    return json.loads(cases) if isinstance(cases, str) else list(cases)


def sweep(name: str, workers: int) -> dict[str, Any]:
    """Run (or finish) the default sweep of card ``name`` and time it."""
    card = load_card(name)
    jobs = plan(card)
    existing = sum(j.path.exists() for j in jobs)
    load_before = os.getloadavg()
    who = resource.RUSAGE_CHILDREN if workers > 1 else resource.RUSAGE_SELF
    cpu_before = resource.getrusage(who)
    start = time.perf_counter()
    files = generate(card, workers=workers, progress=True)
    wall = time.perf_counter() - start
    cpu_after = resource.getrusage(who)
    # CPU seconds of the worker processes: what the sweep costs regardless of other load
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    attrs = [a for f in files for a in _case_attrs(f)]
    solver = [float(a["wall_seconds"]) for a in attrs]
    return {
        "cases": len(attrs), "files_before": existing, "workers": workers,
        "wall_seconds": wall, "complete_run": existing == 0, "worker_cpu_seconds": cpu,
        "load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
        "solver_seconds_sum": sum(solver), "solver_seconds_median": statistics.median(solver),
        "output_grid": list(card.grid), "frames": card.frames_for("train"), "frame_dt": card.dt,
        "internal_grids": sorted({tuple(a["internal_grid"]) for a in attrs if "internal_grid" in a}),
        "cases_per_subset": {s: sum(a["subset"] == s for a in attrs) for s in card.subsets},
        "split": {s: sum(a["split"] == s for a in attrs) for s in ("train", "valid", "test")},
        "card_hash": card.hash,
    }


# -- quality ---------------------------------------------------------------------------------------

def _channel_height(name: str, params: dict[str, float]) -> float | None:
    if name == "tube":
        return params["diameter"]
    if name == "cylinder":
        return params["y1"] + params["y2"]
    return None


def quality(name: str) -> dict[str, Any]:
    """check_file, divergence and cross-section flux over every file of card ``name``."""
    card = load_card(name)
    files = sorted((card.data_dir() / "data").rglob("*.hdf5"))
    failures, divs, internal, flux_err, n_traj = [], [], [], [], 0
    speeds: dict[str, list[float]] = {"water": [], "air": []}  # dam: max speed per case
    restarts = 0
    for path in files:
        issues = check_file(path)
        if issues:
            failures.append({"file": path.name, "issues": [str(i) for i in issues]})
        wf = WellFile(path)
        cases = _case_attrs(path)
        for b in range(wf.n_trajectories):
            n_traj += 1
            a = cases[b]
            params = dict(zip(wf.param_names, wf.params(b)))
            x, y = wf.coords_of(b)["x"], wf.coords_of(b)["y"]
            hx, hy = float(x[1] - x[0]), float(y[1] - y[0])
            mask = wf.mask(b)
            uv = np.moveaxis(wf.read(b, fields=["velocity"]), 1, -1)  # (T, nx, ny, 2)
            div = central_divergence(uv, hx, hy, mask) / float(a["div_scale"])
            divs.append(np.abs(div[np.isfinite(div)]))
            internal.append(float(a["max_div_internal"]) / float(a["div_scale"]))
            height = _channel_height(name, params)
            if height is not None:
                cols = np.ones(len(x), bool)
                if name == "cylinder":
                    cols = np.abs(x) > 0.5 * params["diameter"] + hx
                flux = uv[..., 0].astype(np.float64).sum(axis=2) * hy  # (T, nx)
                q = params["u_in"] * height
                flux_err.append(float(np.abs(flux[:, cols] - q).max() / q))
            if name == "dam":
                # the largest stored speed in water and in air cells, in units of the inflow plus
                # the gravity-wave speed of the box (the water moves at most ~u_in + sqrt(2 g H))
                frac = np.asarray(wf.read(b, fields=["volume_fraction"])).reshape(uv.shape[:-1])
                speed = np.hypot(uv[..., 0], uv[..., 1]) * mask
                scale = params["u_in"] + math.sqrt(dam_solver.GRAVITY * dam_solver.HEIGHT)
                speeds["water"].append(float(speed[frac >= 0.5].max()) / scale)
                speeds["air"].append(float(speed[frac < 0.5].max()) / scale)
                restarts += int(a.get("restarts", 0) > 0)
    d = np.concatenate(divs) if divs else np.zeros(1)
    out = {
        "files": len(files), "trajectories": n_traj, "check_file_failures": failures,
        "all_pass_check_file": not failures,
        "div_output_max": float(d.max()), "div_output_p99": float(np.percentile(d, 99)),
        "div_output_p50": float(np.percentile(d, 50)),
        "div_internal_max": max(internal) if internal else None,
        "units": "|div u| * L / U (the case's div_scale), interior fluid cells, all frames",
    }
    if flux_err:
        out["flux_rel_error_max"] = max(flux_err)
    if speeds["air"]:
        out["speed_units"] = f"max |u| over a case's frames / (u_in + sqrt(g * {dam_solver.HEIGHT} m))"
        for phase, v in speeds.items():
            out[f"{phase}_speed_max"] = max(v)
            out[f"{phase}_speed_median"] = float(np.median(v))
        out["cases_restarted"] = restarts
    return out


# -- validation ------------------------------------------------------------------------------------

def validation() -> dict[str, Any]:
    """The solver tests' figures, recomputed (same solver calls and reference data)."""
    from sciflow.solvers.cavity import Cavity
    from sciflow.solvers.cylinder import Cylinder
    from sciflow.solvers.tube import Tube
    from tests.solvers.test_cavity import GHIA_U, GHIA_Y
    from tests.solvers.test_cylinder import DFG
    from tests.solvers.test_tube import BASE as TUBE
    from tests.solvers.test_tube import durst_entry_length

    out: dict[str, Any] = {}
    for re in (100, 400):
        start = time.perf_counter()
        solver = Cavity().make_solver({"U": 1.0, "rho": 1.0, "mu": 1.0 / re, "height": 1.0, "width": 1.0}, (64, 64))
        converged, _ = solver.run_steady(tol=1e-4, t_max=80.0)
        g = solver.grid
        u = np.interp(GHIA_Y, np.r_[0.0, g.yc, 1.0], np.r_[0.0, solver.u[g.nx // 2], 1.0])
        out[f"cavity Ghia Re {re}"] = {
            "max_abs_deviation": float(np.abs(u - np.array(GHIA_U[re])).max()), "grid": [64, 64],
            "converged": bool(converged), "seconds": time.perf_counter() - start, "test_bound": 0.01}
        print(f"validation: Ghia Re {re}: {out[f'cavity Ghia Re {re}']['max_abs_deviation']:.4f}", flush=True)

    start = time.perf_counter()
    solver = Tube().make_solver(TUBE, (64, 64))
    converged, _ = solver.run_steady(tol=1e-4, t_max=10.0, scale=0.1)
    g = solver.grid
    u = solver.cell_velocity()[..., 0]
    i = int(0.9 * g.nx)
    centre = solver.u[:, g.ny // 2 - 1 : g.ny // 2 + 1].mean(axis=1)
    target = 0.99 * centre[int(0.95 * g.nx)]
    k = int(np.flatnonzero(centre >= target)[0])
    x_e = float(np.interp(target, centre[k - 1 : k + 1], g.xe[k - 1 : k + 1]))
    re = TUBE["rho"] * TUBE["u_in"] * TUBE["diameter"] / TUBE["mu"]
    out["tube developed, Re 100"] = {
        "u_max_over_u_mean": float(u[i].max() / u[i].mean()), "poiseuille": 1.5,
        "entry_length_over_diameter": x_e / TUBE["diameter"], "durst_correlation": durst_entry_length(re),
        "grid": [64, 64], "converged": bool(converged), "seconds": time.perf_counter() - start}
    print(f"validation: tube {out['tube developed, Re 100']}", flush=True)

    for cpd, warmup in ((20, 20.0), (10, 20.0)):
        start = time.perf_counter()
        case = Cylinder(inflow="parabolic", cells_per_diameter=cpd, warmup=warmup).simulate(
            DFG, grid=(64, 16), frames=41, frame_dt=0.05, seed=0)
        a = case.attrs
        out[f"cylinder DFG 2D-2, {cpd} cells per diameter"] = {
            "strouhal": a["strouhal"], "reference_strouhal": [0.295, 0.305],
            "drag_coefficient_max": a["drag_coefficient_max"], "reference_drag_max": [3.22, 3.24],
            "lift_coefficient_max": a["lift_coefficient_max"], "reference_lift_max": [0.99, 1.01],
            "internal_grid": a["internal_grid"], "seconds": time.perf_counter() - start}
        print(f"validation: DFG {cpd}: St {a['strouhal']}", flush=True)

    if "dam" in PROBLEMS:
        from tests.solvers.test_dam import martin_moyce

        for cpa in (16, 32):
            start = time.perf_counter()
            front = martin_moyce(cpa)
            dev = [(z - Z) / Z for _, Z, z in front]
            out[f"dam break Martin & Moyce, {cpa} cells per a"] = {
                "T": [T for T, _, _ in front], "Z_reference": [Z for _, Z, _ in front],
                "Z_simulated": [z for _, _, z in front], "relative_deviation": dev,
                "max_abs_relative_deviation": max(abs(d) for d in dev),
                "max_abs_relative_deviation_T_ge_1.6": max(abs(d) for (T, _, _), d in zip(front, dev) if T >= 1.6),
                "grid": [5 * cpa, int(2.5 * cpa)], "density_ratio": 100, "seconds": time.perf_counter() - start}
            print(f"validation: Martin & Moyce {cpa}: max dev {max(abs(d) for d in dev):.3f}", flush=True)
    return out


# -- report ----------------------------------------------------------------------------------------

def report(res: dict[str, Any]) -> None:
    parts = ["### Data generation: cost and quality\n\n`python -m benchmarks.generation` -> "
             "`results/generation.json`. CPU, one process per case (numpy, one thread).\n"]
    if "per_case" in res:
        rows = [[k, "x".join(map(str, v["output_grid"])),
                 "x".join(map(str, v["internal_grid"])) if v.get("internal_grid") else "-",
                 v["frames"], v.get("n_steps") or "-", v["seconds"]] for k, v in res["per_case"].items()]
        parts.append("CPU seconds per case, simulated in this process on one thread (median of "
                     f"{len(next(iter(res['per_case'].values()))['all_seconds'])}):\n\n"
                     + markdown_table(["case", "output grid", "internal grid", "frames", "solver steps", "s / case"], rows))
    if "sweeps" in res:
        rows = []
        for k, v in res["sweeps"].items():
            note = "" if v["complete_run"] else f" ({v['files_before']} files existed)"
            rows.append([k, v["cases"], ", ".join(f"{s} {n}" for s, n in v["cases_per_subset"].items()),
                         f"{v['wall_seconds'] / 60:.1f}{note}", v["worker_cpu_seconds"] / 60,
                         v["worker_cpu_seconds"] / 60 / 2, v["worker_cpu_seconds"] / max(v["cases"], 1),
                         f"{v['load_average_before'][0]:.1f}", v["workers"]])
        parts.append("Default sweeps (`sciflow data generate <card> --workers 2`, each subset's `cases`), "
                     "on a shared 2-core machine. The wall time depends on the other load (the load average "
                     "when the sweep started is shown); the CPU minutes of the worker processes do not, and "
                     "half of them is what the sweep takes on an idle 2-core machine:\n\n" + markdown_table(
                         ["card", "cases", "per subset", "wall min", "worker CPU min", "idle 2-core min (est.)",
                          "CPU s / case", "load avg", "workers"], rows))
    if "quality" in res:
        rows = [[k, v["files"], "yes" if v["all_pass_check_file"] else f"NO ({len(v['check_file_failures'])})",
                 v["div_output_p50"], v["div_output_p99"], v["div_output_max"], v["div_internal_max"],
                 v.get("flux_rel_error_max", "-")] for k, v in res["quality"].items()]
        parts.append("Generated files: divergence of the stored (cell-averaged) velocity by central differences on "
                     "interior fluid cells, all frames, in units of U / L; the solver's own staggered divergence; "
                     "largest relative error of the cross-section volume flux (tube: every section, cylinder: "
                     "sections clear of the body):\n\n" + markdown_table(
                         ["card", "files", "check_file", "div p50", "div p99", "div max", "solver div max", "flux rel. err."],
                         rows))
    dam = res.get("quality", {}).get("dam", {})
    if "air_speed_max" in dam:
        rows = [[phase, dam[f"{phase}_speed_median"], dam[f"{phase}_speed_max"]] for phase in ("water", "air")]
        parts.append("Dam: the largest stored speed of each case in water cells (volume fraction >= 1/2) and in "
                     "air cells, over all frames, in units of u_in + sqrt(g H) (H = 0.4 m, the box). The water "
                     "moves at most about u_in + sqrt(2 g H). The air's excess has two sources: air squeezed out of the "
                     "pocket trapped under the falling sheet (in 2D it can only leave through the gaps the water "
                     "leaves it) and the spurious currents of a density-ratio-100 volume of fluid without "
                     "momentum-consistent transport. Cases that "
                     f"needed a restart with a smaller Courant number: {dam['cases_restarted']} of "
                     f"{dam['trajectories']}.\n\n" + markdown_table(["phase", "median over cases", "max over cases"], rows))
    if "validation" in res:
        v = res["validation"]
        rows = []
        for re in (100, 400):
            g = v.get(f"cavity Ghia Re {re}")
            if g:
                rows.append([f"cavity Re {re}, 64x64", "max abs(u - Ghia) / U", g["max_abs_deviation"], "< 0.01"])
        t = v.get("tube developed, Re 100")
        if t:
            rows.append(["tube Re 100, 64x64", "u_max / u_mean at x = 0.9 L", t["u_max_over_u_mean"], "1.5"])
            rows.append(["tube Re 100, 64x64", "entry length / diameter", t["entry_length_over_diameter"],
                         f"{t['durst_correlation']:.3g} (Durst et al. 2005)"])
        for key, c in v.items():
            if key.startswith("cylinder DFG"):
                res_ = key.split(", ")[1]
                rows.append([f"DFG 2D-2, {res_} ({'x'.join(map(str, c['internal_grid']))})", "St", c["strouhal"], "0.295-0.305"])
                rows.append([f"DFG 2D-2, {res_}", "C_D max", c["drag_coefficient_max"], "3.22-3.24"])
        for key, c in v.items():
            if key.startswith("dam break"):
                res_ = key.split(", ")[1]
                worst = max(range(len(c["T"])), key=lambda i: abs(c["relative_deviation"][i]))
                rows.append([f"dam break (a x 2a column, density ratio 100), {res_}",
                             "surge front Z = x / a, worst relative deviation, T <= 2.51",
                             f"{c['relative_deviation'][worst]:+.1%} at T = {c['T'][worst]}",
                             "Martin & Moyce (1952), target within 10 %"])
                rows.append([f"dam break, {res_}", "worst relative deviation, 1.6 <= T <= 2.51",
                             f"{c['max_abs_relative_deviation_T_ge_1.6']:.1%}", "within 10 %"])
        parts.append("Validation figures (the solver tests' checks, recomputed):\n\n"
                     + markdown_table(["set-up", "quantity", "value", "reference"], rows))
    update_readme(NAME, "\n\n".join(parts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=PARTS, action="append", help="run only these parts")
    ap.add_argument("--force", choices=PARTS, action="append", default=[], help="redo these parts")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cards", nargs="+", default=None, help="flow cards for sweeps/quality (default all present)")
    args = ap.parse_args()
    res = load_results()
    parts = args.only or list(PARTS)
    cards = args.cards or flow_cards()

    def save() -> None:
        save_json(NAME, res)
        report(res)

    for part in parts:
        redo = part in args.force
        if part == "sweeps":
            res.setdefault("sweeps", {})
            for name in cards:
                if name in res["sweeps"] and not redo:
                    continue
                print(f"sweep {name} ...", flush=True)
                res["sweeps"][name] = sweep(name, args.workers)
                save()
        elif part == "quality":
            res.setdefault("quality", {})
            for name in cards:
                if name in res["quality"] and not redo:
                    continue
                print(f"quality {name} ...", flush=True)
                res["quality"][name] = quality(name)
                save()
        elif part in res and not redo:
            continue
        elif part == "per_case":
            res["per_case"] = per_case(args.repeats)
            save()
        elif part == "validation":
            res["validation"] = validation()
            save()
    report(res)


if __name__ == "__main__":
    main()

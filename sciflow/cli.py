"""The ``sciflow`` command.

``sciflow fit|validate|test --config X.yaml`` go through LightningCLI (``class_path`` /
``init_args`` configs; the data's sizes and statistics are injected into the model, never written
in configs; the surrogate and data module follow the data's kind, :mod:`sciflow.cli_train`).
``sciflow data ...``, ``sciflow rollout`` (grid or particle checkpoints, by the kind they were
trained on) and ``sciflow demo`` are thin wrappers around library functions a notebook can call
directly.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sciflow.compile import MODES as COMPILE_MODES

LIGHTNING_COMMANDS = ("fit", "validate", "test")
DEBUG_FLAG = "--debug"
THREADS_HELP = "torch CPU threads (default: the cores not busy with other work; OMP_NUM_THREADS also sets it)"


# -- data commands ------------------------------------------------------------------------------------

def _data_errors(fn):  # noqa: ANN001, ANN202
    """Run a data command. An error the input caused (sciflow's data errors, a missing or
    unwritable file, a failed case) prints as one message and exits 1; ``--debug`` shows the
    traceback instead. Anything else is a bug and keeps its traceback."""

    def run(args: argparse.Namespace) -> int:
        where = f"sciflow data {args.data_command}"
        try:
            return fn(args)
        except KeyboardInterrupt:
            if args.debug:
                raise
            print(f"{where}: interrupted; finished files are kept, rerun the command to continue",
                  file=sys.stderr)
            return 130
        except Exception as e:  # noqa: BLE001 - sorted into user errors and bugs below
            if args.debug or not _is_input_error(e):
                raise
            print(f"{where}: error: {e}\n  (add --debug for the traceback)", file=sys.stderr)
            return 1

    return run


def _is_input_error(e: BaseException) -> bool:
    from sciflow.data.errors import DataError

    if isinstance(e, DataError | OSError):
        return True
    from sciflow.solvers.sweep import CaseFailed, SweepIncomplete

    return isinstance(e, CaseFailed | SweepIncomplete)


def cmd_data_generate(args: argparse.Namespace) -> int:
    from sciflow.data.card import load_card
    from sciflow.solvers.sweep import generate

    card = load_card(args.card or args.problem)
    files = generate(card, args.subset, args.cases, root=args.out, workers=args.workers, progress=True,
                     shard=args.shard)
    if args.shard is not None:
        i, n = args.shard
        where = card.data_dir(args.out) / ("cases" if card.kind == "particles" else "data")
        print(f"shard {i}/{n}: {len(files)} files in {where}; when all {n} shards are done, "
              f"`sciflow data merge {args.problem}` (same --subset, --cases, --out) checks the sweep" +
              (" and writes the split files" if card.kind == "particles" else ""))
        return 0
    if card.kind == "particles":
        print(f"{len(files)} trajectories in {card.data_dir(args.out)} (train.h5, valid.h5, test.h5, metadata.json)")
        return 0
    print(f"{len(files)} files in {card.data_dir(args.out) / 'data'}")
    return 0


def cmd_data_merge(args: argparse.Namespace) -> int:
    from sciflow.data.card import load_card
    from sciflow.solvers.sweep import merge

    card = load_card(args.card or args.problem)
    files = merge(card, args.subset, args.cases, root=args.out, shards=args.shards, progress=True)
    what = "trajectories" if card.kind == "particles" else "files"
    print(f"sweep complete: {len(files)} {what} in {card.data_dir(args.out)}")
    return 0


def _check_particles(path: Path, args: argparse.Namespace) -> bool:
    """Check a particle dataset folder or split file; print the result; True when it is ok."""
    from sciflow.data.particles import check_particle_path

    report = check_particle_path(path, scan_values=not args.no_values)
    if not report.ok or not args.quiet:
        print(f"{'ok  ' if report.ok else 'FAIL'} {path} (particle dataset)")
    for issue in report.issues:
        print(f"  {issue}")
    for note in report.notes:
        print(f"  note: {note}")
    return report.ok


def cmd_data_check(args: argparse.Namespace) -> int:
    from sciflow.data.check import check_file
    from sciflow.data.particles import is_particle_path

    paths: list[Path] = []
    n_particle, n_particle_bad = 0, 0
    for p in map(Path, args.files):
        if is_particle_path(p):  # LagrangeBench's layout: checked as a dataset, not file by file
            n_particle += 1
            n_particle_bad += not _check_particles(p, args)
            continue
        paths += sorted(p.rglob("*.hdf5")) + sorted(p.rglob("*.h5")) if p.is_dir() else [p]
    if n_particle and not paths:
        print(f"{n_particle - n_particle_bad} of {n_particle} particle datasets ok")
        return 1 if n_particle_bad else 0
    n_bad = n_particle_bad
    for p in paths:
        issues = check_file(p, scan_values=not args.no_values)
        if issues:
            n_bad += 1
            print(f"FAIL {p}")
            for issue in issues:
                print(f"  {issue}")
        elif not args.quiet:
            print(f"ok   {p}")
    if not paths:
        print("no HDF5 files found", file=sys.stderr)
        return 2
    print(f"{len(paths) - n_bad} of {len(paths)} files ok")
    return 1 if n_bad else 0


def cmd_data_inspect(args: argparse.Namespace) -> int:
    from sciflow.data.particles import is_particle_path, particle_summary
    from sciflow.data.reader import WellFile
    from sciflow.data.sniff import foreign_hint

    for p in args.files:
        hint = foreign_hint(p) if Path(p).is_dir() else None
        if hint is not None:
            from sciflow.data.errors import DataFormatError

            raise DataFormatError(hint)
        print(particle_summary(p) if is_particle_path(p) else WellFile(p).summary())
    return 0


def cmd_data_import(args: argparse.Namespace) -> int:
    import yaml

    from sciflow.data import importers
    from sciflow.data.errors import DataError

    kwargs = {"name": args.name, "seed": args.seed, "split": tuple(args.split)}
    if args.format == "cfdbench":
        card = importers.import_cfdbench(args.src, args.out, problem=args.problem, **kwargs)
        print(f"wrote {card}; train with `sciflow fit --data.card {card} ...`")
        return 0
    from sciflow.data.importers.params import parse_mapping
    from sciflow.data.importers.pdebench import parameter_report

    bad = [p for p in args.param if "=" not in p]
    if bad:
        raise SystemExit(f"--param expects NAME=VALUE, got {bad}")
    params = {}
    for k, v in (p.split("=", 1) for p in args.param):
        try:
            params[k.strip()] = float(v)
        except ValueError:
            raise DataError(f"--param {k}={v}: {v!r} is not a number") from None
    card = importers.import_pdebench(
        args.src, args.out, params=params or None, param_from=parse_mapping(args.param_from),
        auto_params=not args.no_auto_params, fields=args.fields,
        trajectories_per_file=args.trajectories_per_file, periodic=args.periodic, **kwargs,
    )
    lines = parameter_report(yaml.safe_load(card.read_text()))
    print("parameters (found in the file or given; the card lists them under imported_from):")
    print("\n".join(lines) if lines else "  none found; give them with --param NAME=VALUE or --param-from")
    print(f"wrote {card}; train with `sciflow fit --data.card {card} ...`")
    return 0


def _card_list() -> str:
    """The cards `sciflow data generate` can run, one line each (a broken card says so)."""
    from sciflow.data.card import available_cards, card_summary, load_card

    lines = []
    for name, path in available_cards().items():
        try:
            card = load_card(path)
        except Exception as e:  # noqa: BLE001 - a broken card must not break --help
            lines.append(f"  {name:<10} (cannot be read: {e})")
            continue
        if card.problem:
            lines.append(f"  {name:<10} {card_summary(card)}")
    return "available cards:\n" + ("\n".join(lines) if lines else "  (none found)")


# -- rollout and demo ------------------------------------------------------------------------------------

def checkpoint_kind(path: str | os.PathLike) -> str:
    """The data kind a checkpoint was trained on (``grid`` for checkpoints that do not say)."""
    from sciflow.checkpoints import read_checkpoint

    ckpt = read_checkpoint(path)
    return str(((ckpt.get("hyper_parameters") or {}).get("data_spec") or {}).get("kind", "grid"))


def cmd_rollout(args: argparse.Namespace) -> int:
    import json

    from sciflow.checkpoints import CheckpointError
    from sciflow.compile import CompileError
    from sciflow.constraints import LawError
    from sciflow.ensemble import EnsembleError
    from sciflow.evaluate import run_rollout
    from sciflow.spread_correction import SpreadCorrectionError
    from sciflow.threads import configure_threads

    if not args.ckpt and not args.ensemble:
        raise SystemExit("sciflow rollout: give --ckpt (repeat for several models) and/or --ensemble DIR")
    try:
        kinds = {checkpoint_kind(c) for c in args.ckpt or []}
    except CheckpointError as err:
        raise SystemExit(f"sciflow rollout: error: {err}") from None
    if len(kinds) > 1:
        raise SystemExit(f"sciflow rollout: error: --ckpt: checkpoints of different data kinds {sorted(kinds)} "
                         f"cannot form one ensemble")
    if kinds == {"particles"}:
        if args.project != "none":
            raise SystemExit(f"sciflow rollout: error: --project {args.project}: the conservation projection works on "
                             "grid data; particle checkpoints conserve mass by construction (fixed particles)")
        if args.spread_correction:
            raise SystemExit("sciflow rollout: error: --spread-correction works on grid ensembles; the particle "
                             "rollout does not take one")
        if args.compile != "off":
            raise SystemExit(f"sciflow rollout: error: --compile {args.compile} works on grid checkpoints; a particle "
                             "operator's graph changes size every step, so it runs eager")
        return cmd_particle_rollout(args)
    if args.data is None:
        raise SystemExit("sciflow rollout: error: --data.card: give the dataset card the checkpoints are rolled out on")
    configure_threads(args.threads)
    from sciflow import distributed

    try:
        launch = distributed.detect()
        spread = distributed.wanted(args.distributed, launch)
    except distributed.DistributedError as err:
        raise SystemExit(f"sciflow rollout: error: {err}") from None
    kw = dict(
        ensemble=args.ensemble, root=args.root, split=args.split,
        trajectories=list(range(args.trajectories)) if args.trajectories else None,
        steps=args.steps, samples=args.samples, start=args.start, seed=args.seed,
        keep_members=args.members, out=args.out, plots=not args.no_plots,
        batch_size=args.batch_size, project=args.project, sigma_g=args.sigma_g,
        spread_correction=args.spread_correction, compile=args.compile,
    )
    errors = (EnsembleError, LawError, SpreadCorrectionError, CompileError, distributed.DistributedError)
    try:
        if spread:
            from sciflow.distributed_rollout import run_rollout_distributed

            distributed.init(launch, args.dist_backend, args.dist_timeout)
            try:
                _, summary = run_rollout_distributed(launch, args.ckpt or [], args.data,
                                                     device=distributed.device_for(launch, args.device), **kw)
            finally:
                distributed.finish()
            if not launch.is_main:
                return 0
        else:
            _, summary = run_rollout(args.ckpt or [], args.data, device=args.device, **kw)
    except errors as err:  # names the member, law, field, file or rank
        raise SystemExit(f"sciflow rollout: {err}") from None
    print(json.dumps(summary, indent=2))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from sciflow.spread_correction import SpreadCorrectionError, fit_spread_correction

    try:
        corr = fit_spread_correction(args.results, window=args.window)
    except SpreadCorrectionError as err:
        raise SystemExit(f"sciflow calibrate: {err}") from None
    corr.save(args.out)
    f = corr.factors[1:]
    print(f"spread correction from {corr.source} ({corr.members} members, {corr.steps} steps, window "
          f"{corr.window}): factors {f.min():.3g}-{f.max():.3g} -> {args.out}; apply it with "
          f"`sciflow rollout ... --spread-correction {args.out}` on another split")
    return 0


def cmd_particle_rollout(args: argparse.Namespace) -> int:
    import json

    from sciflow.evaluate_particles import run_particle_rollout
    from sciflow.threads import configure_threads

    if args.data is None and args.root is None:
        raise SystemExit("sciflow rollout: error: --data.card or --data.root: give the particle dataset (a card, "
                         "or a folder with metadata.json)")
    configure_threads(args.threads)
    _, summary = run_particle_rollout(
        args.ckpt, args.data, root=args.root, split=args.split,
        trajectories=list(range(args.trajectories)) if args.trajectories else None,
        steps=args.steps, samples=args.samples, start=args.start, keep_members=args.members,
        out=args.out, plots=not args.no_plots, device=args.device,
    )
    print(json.dumps(summary, indent=2))
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from sciflow.ensemble import EnsembleError, train_ensemble

    fit_args = args.fit_args[1:] if args.fit_args[:1] == ["--"] else args.fit_args
    try:
        train_ensemble(args.config, args.members, args.out, fit_args=fit_args, seed=args.seed,
                       parallel=args.parallel, use=args.use)
    except EnsembleError as err:  # names the member or option at fault; no traceback needed
        raise SystemExit(f"sciflow ensemble: {err}") from None
    print(f"ensemble of {args.members} members in {args.out}; roll it out with "
          f"`sciflow rollout --ensemble {args.out} --data ...`")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from sciflow.demo import run_demo
    from sciflow.threads import configure_threads

    configure_threads(args.threads)
    run_demo(out=args.out, quick=args.quick)
    return 0


def _shard(text: str) -> tuple[int, int]:
    from sciflow.solvers.sweep import parse_shard

    try:
        return parse_shard(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sciflow", description="Train neural PDE surrogates and roll them out with uncertainty.",
        epilog=f"{DEBUG_FLAG}: show the full traceback of an error (fit, validate, test).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help=f"{name} a surrogate from a config (LightningCLI; `sciflow {name} --help`)")

    data = sub.add_parser("data", help="generate, import, check and inspect datasets")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", help="show the traceback of an error")
    g = dsub.add_parser("generate", help="simulate a dataset from its card (resumable)", parents=[debug],
                        epilog=_card_list(), formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("problem", help="dataset card name (datasets/<name>.yaml), e.g. cavity; see the list below")
    g.add_argument("--card", help="path to a card, overriding the name lookup")
    g.add_argument("--subset", default="all", help="bc, prop, geo... or all (default)")
    g.add_argument("--cases", type=int, default=None, help="number of cases (default: the card's)")
    g.add_argument("--out", default=None, help="dataset folder (default: the card's path)")
    g.add_argument("--workers", type=int, default=1, help="parallel processes")
    g.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                   help="simulate only shard I (0..N-1) of N disjoint parts, e.g. $SLURM_ARRAY_TASK_ID/4; "
                        "then `sciflow data merge`")
    g.set_defaults(fn=_data_errors(cmd_data_generate))

    m = dsub.add_parser("merge", help="check that a sharded sweep is complete; gather particle parts",
                        parents=[debug])
    m.add_argument("problem", help="dataset card name, as for generate")
    m.add_argument("--card", help="path to a card, overriding the name lookup")
    m.add_argument("--subset", default="all", help="the selection the shards generated (default all)")
    m.add_argument("--cases", type=int, default=None, help="number of cases, as for generate")
    m.add_argument("--out", default=None, help="dataset folder, as for generate")
    m.add_argument("--shards", type=int, default=None, help="N of the shards, to name the shard of a missing file")
    m.set_defaults(fn=_data_errors(cmd_data_merge))

    i = dsub.add_parser("import", help="convert a foreign layout into ours", parents=[debug],
                        description="Convert a CFDBench folder or a PDEBench HDF5 file into sciflow's "
                        "format (see docs/importers.md). Every parameter found in a PDEBench file is "
                        "reported, with whether it was used.")
    i.add_argument("format", choices=["cfdbench", "pdebench"])
    i.add_argument("src", help="CFDBench problem/subset/case folder, or PDEBench HDF5 file")
    i.add_argument("--out", required=True, help="dataset folder to write")
    i.add_argument("--name", default=None)
    i.add_argument("--seed", type=int, default=0, help="seed of the train/valid/test split")
    i.add_argument("--split", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VALID", "TEST"))
    i.add_argument("--problem", default=None, help="CFDBench problem (default: from the folder names)")
    i.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="PDEBench: a parameter shared by every trajectory (e.g. one the file name carries)")
    i.add_argument("--param-from", action="append", default=[], metavar="NAME=SOURCE",
                   help="PDEBench: a per-trajectory parameter read from the file: attr:KEY (attribute of "
                        "each sample group, or of the root), attr:KEY:PATH (a number inside a YAML/JSON "
                        "attribute, e.g. attr:config:sim.k), dataset:PATH[INDEX] (e.g. dataset:params[:, 0])")
    i.add_argument("--no-auto-params", action="store_true",
                   help="PDEBench: use only --param / --param-from, not the parameters found in the file "
                        "(they are still reported)")
    i.add_argument("--fields", nargs="+", default=None, metavar="NAME",
                   help="PDEBench, by layout: per-sample groups (data (T, X[, Y], C)): names the C channels "
                        "in order (default u, or u0 u1 ...); per-field (density, pressure, Vx, Vy): selects "
                        "fields among density, pressure, velocity (default all); tensor: names its one "
                        "field (default u)")
    i.add_argument("--trajectories-per-file", type=int, default=64, help="PDEBench trajectories per output file")
    i.add_argument("--periodic", action="store_true", help="PDEBench data is periodic in space")
    i.set_defaults(fn=_data_errors(cmd_data_import))

    c = dsub.add_parser("check", help="validate files against the format; exits 1 on problems", parents=[debug])
    c.add_argument("files", nargs="+", help="HDF5 files or folders")
    c.add_argument("--no-values", action="store_true", help="skip the NaN/Inf scan")
    c.add_argument("--quiet", action="store_true", help="print only failing files")
    c.set_defaults(fn=_data_errors(cmd_data_check))

    n = dsub.add_parser("inspect", help="print a readable summary of files", parents=[debug])
    n.add_argument("files", nargs="+")
    n.set_defaults(fn=_data_errors(cmd_data_inspect))

    r = sub.add_parser(
        "rollout", help="roll checkpoints out on a dataset split; write netCDF and plots "
                    "(grid fields, or particle positions per step)",
        description="Roll checkpoints (or a deep-ensemble folder) out on a dataset split. Results stream into "
                    "OUT.partial step by step and replace OUT only when complete; rerunning a killed rollout "
                    "continues it. Prints a summary: errors per step with the copy-the-input baseline, "
                    "correlation times (censored ones flagged), and for ensembles CRPS, spread-skill, "
                    "coverage, reliability and the rank histogram.",
    )
    r.add_argument("--ckpt", action="append", default=None, help="checkpoint (repeat for a deep ensemble)")
    r.add_argument("--ensemble", default=None, help="deep-ensemble folder trained by `sciflow ensemble`")
    # named as in `sciflow fit` (--data.card, --data.root); --data and --root are kept as aliases
    r.add_argument("--data.card", "--data", dest="data", default=None, metavar="CARD",
                   help="dataset card name or path, as `sciflow fit --data.card` (alias: --data); particle "
                        "checkpoints may name a dataset folder with --data.root instead")
    r.add_argument("--data.root", "--root", dest="root", default=None, metavar="DIR",
                   help="dataset folder (default: the card's), as `sciflow fit --data.root` (alias: --root)")
    r.add_argument("--split", default="test")
    r.add_argument("--steps", type=int, default=None, help="model steps (default: as many as the data has)")
    r.add_argument("--samples", type=int, default=1,
                   help="samples per stochastic model (flow matching, PDE-Refiner, CRPS); a deterministic "
                        "model is one member whatever this says")
    r.add_argument("--trajectories", type=int, default=None, help="first N trajectories (default all)")
    r.add_argument("--start", type=int, default=0,
                   help="stored frame where the history window starts (default 0, the first); t = 0 of the "
                        "rollout is frame start + (history - 1) x time_step. The summary's nmse_copy_* "
                        "(copying the initial state) tells how hard the start is")
    r.add_argument("--batch-size", type=int, default=None,
                   help="trajectories rolled out at once (default all); memory grows with it, not with --steps")
    r.add_argument("--seed", type=int, default=0, help="seed of the stochastic samples")
    r.add_argument("--project", default="none",
                   choices=["none", "hardc", "probconserv", "insampler", "insampler_probconserv"],
                   help="conservation projection of every step onto the card's laws: none (only measure the "
                        "error), hardc (least change), probconserv (weighted by the ensemble's variance), "
                        "insampler / insampler_probconserv (inside a flow-matching sampler, at every ODE step). "
                        "The per-step error per law is in the results (conservation_rel) and the summary")
    r.add_argument("--sigma-g", type=float, default=0.0,
                   help="constraint noise of the projection (default 0: the laws hold to round-off)")
    r.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    r.add_argument("--compile", default="off", choices=list(COMPILE_MODES),
                   help="torch.compile the models' operators (default off; measured speed-ups in "
                        "benchmarks/README.md, Compile)")
    r.add_argument("--members", action="store_true", help="also store every member")
    r.add_argument("--no-plots", action="store_true")
    r.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    r.add_argument("--spread-correction", default=None, metavar="FILE",
                   help="rescale members about their mean per step by factors from `sciflow calibrate` "
                        "(fitted on another split; the rollout's dynamics are unchanged)")
    r.add_argument("--distributed", choices=["auto", "on", "off"], default="auto",
                   help="split the trajectories over the processes of a torchrun or SLURM launch and merge the "
                        "results on rank 0 (auto: when launched with more than one process)")
    r.add_argument("--dist-backend", default=None, help="process-group backend (default: nccl on CUDA, else gloo)")
    r.add_argument("--dist-timeout", type=float, default=1800.0, help="seconds a rank waits for the others")
    r.add_argument("--out", default="rollout.nc")
    r.set_defaults(fn=cmd_rollout)

    cal = sub.add_parser(
        "calibrate", help="fit per-step spread-correction factors to a scored ensemble rollout",
        description="Fit factors f_k = sqrt(<skill^2> / <spread^2>) per model step to the results of an "
                    "ensemble rollout of a held-out split (e.g. `sciflow rollout --split valid`), so that "
                    "`sciflow rollout --spread-correction FILE` on the test split rescales the members about "
                    "their mean to a spread-skill ratio of 1.",
        epilog="example: sciflow rollout --ensemble runs/ens --data.card cavity --split valid --out valid.nc && "
               "sciflow calibrate valid.nc --out runs/ens/spread.json",
    )
    cal.add_argument("results", help="netCDF results of `sciflow rollout` with two or more members")
    cal.add_argument("--out", required=True, help="JSON file of the factors")
    cal.add_argument("--window", type=int, default=5, help="odd number of steps averaged around each step (default 5)")
    cal.set_defaults(fn=cmd_calibrate)

    e = sub.add_parser(
        "ensemble", help="train a deep ensemble: M `sciflow fit` runs with distinct seeds into one folder",
        description="Train a deep ensemble: M members from one `sciflow fit` config, each with its own seed "
                    "(initial weights, data order, training noise), into one folder with a manifest "
                    "(ensemble.json). Rerunning the same command continues an interrupted ensemble member "
                    "by member. Options after `--` go to every member's `sciflow fit`.",
        epilog="example: sciflow ensemble --config configs/cavity_fno.yaml --members 5 --out runs/cavity_ens "
               "-- --trainer.max_steps 2000",
    )
    e.add_argument("--config", required=True, help="a `sciflow fit` config")
    e.add_argument("--members", type=int, required=True, help="ensemble size M (>= 2)")
    e.add_argument("--out", required=True, help="ensemble folder (created; rerun to continue it)")
    e.add_argument("--seed", type=int, default=None, help="base seed of the member seeds (default: the config's)")
    e.add_argument("--parallel", type=int, default=1,
                   help="members trained at once as separate processes (one GPU each when GPUs are visible)")
    e.add_argument("--use", choices=["last", "best"], default="last",
                   help="checkpoint each member contributes: final weights (default) or best validation NMSE")
    e.add_argument("fit_args", nargs=argparse.REMAINDER, metavar="-- FIT_OPTIONS",
                   help="options for every member's `sciflow fit`, after `--`")
    e.set_defaults(fn=cmd_ensemble)

    d = sub.add_parser("demo", help="generate cavity data, train an FNO, roll it out, write runs/demo")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--quick", action="store_true", help="a much smaller run (seconds), for smoke tests")
    d.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    d.set_defaults(fn=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]
    if argv and argv[0] in LIGHTNING_COMMANDS:
        from sciflow.cli_train import run

        return run(argv, debug=debug)
    args = build_parser().parse_args(argv)
    if debug:  # taken out of argv above for the training commands; the data commands read it here
        args.debug = True
    return int(args.fn(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

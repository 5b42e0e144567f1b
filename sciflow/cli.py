"""The ``sciflow`` command.

``sciflow fit|validate|test --config X.yaml`` go through LightningCLI (``class_path`` /
``init_args`` configs; the data's sizes and statistics are injected into the model, never written
in configs). The surrogate and data module come from the data's kind (:data:`KINDS`): a card's
``kind`` (grid or particles), or ``particles`` for a ``--data.root`` folder with a
``metadata.json``. ``sciflow data ...``, ``sciflow rollout`` (grid or particle checkpoints, by the
kind they were trained on) and ``sciflow demo`` are thin wrappers around library functions a
notebook can call directly.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

LIGHTNING_COMMANDS = ("fit", "validate", "test")

# data kind -> (surrogate, data module, metric the `best` checkpoint monitors); the kind is the
# dataset card's `kind` (or `particles` for a dataset folder with a metadata.json)
KINDS: dict[str, tuple[str, str, str]] = {
    "grid": ("sciflow.surrogate:Surrogate", "sciflow.data.datamodule:SciflowData", "val/nmse"),
    "particles": ("sciflow.particle_surrogate:ParticleSurrogate", "sciflow.data.particles.datamodule:ParticleData",
                  "val/rollout_mse"),
}


def _option(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """Values of ``--name VALUE`` / ``--name=VALUE`` options in ``argv``, in order."""
    out = []
    for i, a in enumerate(argv):
        for n in names:
            if a == n and i + 1 < len(argv):
                out.append(argv[i + 1])
            elif a.startswith(n + "="):
                out.append(a.split("=", 1)[1])
    return out


def data_kind(argv: list[str]) -> str:
    """The kind of data a training command runs on: from ``--data.card`` / ``--data.root`` on the
    command line, else the configs' ``data.card`` / ``data.root`` (the last one given wins)."""
    import yaml

    from sciflow.data.card import load_card

    card = root = None
    for path in _option(argv, ("--config", "-c")):
        try:
            data = (yaml.safe_load(Path(path).read_text()) or {}).get("data") or {}
        except (OSError, yaml.YAMLError, AttributeError):
            continue  # LightningCLI reports a bad config itself
        card, root = data.get("card", card), data.get("root", root)
    card = (_option(argv, ("--data.card",)) or [card])[-1]
    root = (_option(argv, ("--data.root",)) or [root])[-1]
    if card:
        try:
            return load_card(card).kind
        except (OSError, ValueError):
            return "grid"  # the data module reports the missing card with its own message
    if root and (Path(root) / "metadata.json").is_file():
        return "particles"
    return "grid"


# -- training commands (LightningCLI) ---------------------------------------------------------------

def lightning_main(argv: list[str]) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI

    from sciflow.registry import import_path

    model_path, data_path, monitor = KINDS[data_kind(argv[1:])]
    model_class, data_class = import_path(model_path), import_path(data_path)

    class SciflowCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001
            parser.link_arguments("data", "model.data_spec", compute_fn=lambda dm: dm.spec, apply_on="instantiate")
            # Two checkpoint callbacks: `checkpoint` keeps last.ckpt up to date (every epoch, and
            # every N steps when asked) so a killed run resumes with `--ckpt_path last`; `best`
            # keeps the checkpoint with the lowest validation NMSE. They are separate because a
            # monitored callback cannot save before the first validation.
            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
            parser.add_lightning_class_args(ModelCheckpoint, "best")
            parser.link_arguments("checkpoint.dirpath", "best.dirpath")
            parser.set_defaults({
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": 0,
                "best.monitor": monitor,
                "best.mode": "min",
                "best.filename": "best",
                "best.save_last": False,
            })

    # wandb, when a config picks it, stays offline unless the user says otherwise
    os.environ.setdefault("WANDB_MODE", "offline")
    SciflowCLI(
        model_class, data_class,
        args=None if argv == sys.argv[1:] else argv,
        trainer_defaults={
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                       "init_args": {"save_dir": "runs", "name": "default"}},
            "accelerator": "auto",
        },
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
        parser_kwargs={"prog": f"sciflow {argv[0] if argv else ''}".strip()},
    )


# -- data commands ------------------------------------------------------------------------------------

def cmd_data_generate(args: argparse.Namespace) -> int:
    from sciflow.data.card import load_card
    from sciflow.solvers.sweep import generate

    card = load_card(args.card or args.problem)
    files = generate(card, args.subset, args.cases, root=args.out, workers=args.workers, progress=True)
    if card.kind == "particles":
        print(f"{len(files)} trajectories in {card.data_dir(args.out)} (train.h5, valid.h5, test.h5, metadata.json)")
        return 0
    print(f"{len(files)} files in {card.data_dir(args.out) / 'data'}")
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

    for p in args.files:
        print(particle_summary(p) if is_particle_path(p) else WellFile(p).summary())
    return 0


def cmd_data_import(args: argparse.Namespace) -> int:
    from sciflow.data import importers

    kwargs = {"name": args.name, "seed": args.seed, "split": tuple(args.split)}
    if args.format == "cfdbench":
        card = importers.import_cfdbench(args.src, args.out, problem=args.problem, **kwargs)
    else:
        bad = [p for p in args.param if "=" not in p]
        if bad:
            raise SystemExit(f"--param expects NAME=VALUE, got {bad}")
        params = {k: float(v) for k, v in (p.split("=", 1) for p in args.param)}
        card = importers.import_pdebench(
            args.src, args.out, params=params or None, fields=args.fields,
            trajectories_per_file=args.trajectories_per_file, periodic=args.periodic, **kwargs,
        )
    print(f"wrote {card}; train with `sciflow fit --data.card {card} ...`")
    return 0


# -- rollout and demo ------------------------------------------------------------------------------------

def checkpoint_kind(path: str | os.PathLike) -> str:
    """The data kind a checkpoint was trained on (``grid`` for checkpoints that do not say)."""
    import torch

    if not Path(path).is_file():
        raise SystemExit(f"{path}: no such checkpoint")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return str(((ckpt.get("hyper_parameters") or {}).get("data_spec") or {}).get("kind", "grid"))


def cmd_rollout(args: argparse.Namespace) -> int:
    import json

    kinds = {checkpoint_kind(c) for c in args.ckpt}
    if len(kinds) > 1:
        raise SystemExit(f"--ckpt: checkpoints of different data kinds {sorted(kinds)} cannot form one ensemble")
    if kinds == {"particles"}:
        return cmd_particle_rollout(args)
    if args.data is None:
        raise SystemExit("--data: give the dataset card the checkpoints are rolled out on")
    from sciflow.evaluate import run_rollout

    _, summary = run_rollout(
        args.ckpt, args.data, root=args.root, split=args.split,
        trajectories=list(range(args.trajectories)) if args.trajectories else None,
        steps=args.steps, samples=args.samples, start=args.start, seed=args.seed,
        keep_members=args.members, out=args.out, plots=not args.no_plots, device=args.device,
    )
    print(json.dumps(summary, indent=2))
    return 0


def cmd_particle_rollout(args: argparse.Namespace) -> int:
    import json

    from sciflow.evaluate_particles import run_particle_rollout

    if args.data is None and args.root is None:
        raise SystemExit("--data or --root: give the particle dataset (card, or folder with metadata.json)")
    _, summary = run_particle_rollout(
        args.ckpt, args.data, root=args.root, split=args.split,
        trajectories=list(range(args.trajectories)) if args.trajectories else None,
        steps=args.steps, samples=args.samples, start=args.start, keep_members=args.members,
        out=args.out, plots=not args.no_plots, device=args.device,
    )
    print(json.dumps(summary, indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from sciflow.demo import run_demo

    run_demo(out=args.out, quick=args.quick)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sciflow", description="Train neural PDE surrogates and roll them out with uncertainty.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help=f"{name} a surrogate from a config (LightningCLI; `sciflow {name} --help`)")

    data = sub.add_parser("data", help="generate, import, check and inspect datasets")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    g = dsub.add_parser("generate", help="simulate a dataset from its card (resumable)")
    g.add_argument("problem", help="dataset card name (datasets/<name>.yaml), e.g. cavity")
    g.add_argument("--card", help="path to a card, overriding the name lookup")
    g.add_argument("--subset", default="all", help="bc, prop, geo... or all (default)")
    g.add_argument("--cases", type=int, default=None, help="number of cases (default: the card's)")
    g.add_argument("--out", default=None, help="dataset folder (default: the card's path)")
    g.add_argument("--workers", type=int, default=1, help="parallel processes")
    g.set_defaults(fn=cmd_data_generate)

    i = dsub.add_parser("import", help="convert a foreign layout into ours")
    i.add_argument("format", choices=["cfdbench", "pdebench"])
    i.add_argument("src", help="CFDBench problem/subset/case folder, or PDEBench HDF5 file")
    i.add_argument("--out", required=True, help="dataset folder to write")
    i.add_argument("--name", default=None)
    i.add_argument("--seed", type=int, default=0, help="seed of the train/valid/test split")
    i.add_argument("--split", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VALID", "TEST"))
    i.add_argument("--problem", default=None, help="CFDBench problem (default: from the folder names)")
    i.add_argument("--param", action="append", default=[], help="PDEBench operating parameter NAME=VALUE")
    i.add_argument("--fields", nargs="+", default=None, help="PDEBench fields to import (default all)")
    i.add_argument("--trajectories-per-file", type=int, default=64, help="PDEBench trajectories per output file")
    i.add_argument("--periodic", action="store_true", help="PDEBench data is periodic in space")
    i.set_defaults(fn=cmd_data_import)

    c = dsub.add_parser("check", help="validate files against the format; exits 1 on problems")
    c.add_argument("files", nargs="+", help="HDF5 files or folders")
    c.add_argument("--no-values", action="store_true", help="skip the NaN/Inf scan")
    c.add_argument("--quiet", action="store_true", help="print only failing files")
    c.set_defaults(fn=cmd_data_check)

    n = dsub.add_parser("inspect", help="print a readable summary of files")
    n.add_argument("files", nargs="+")
    n.set_defaults(fn=cmd_data_inspect)

    r = sub.add_parser("rollout", help="roll checkpoints out on a dataset split; write netCDF and plots "
                                       "(grid fields, or particle positions per step)")
    r.add_argument("--ckpt", action="append", required=True, help="checkpoint (repeat for a deep ensemble)")
    r.add_argument("--data", default=None, help="dataset card name or path (particles: or give --root)")
    r.add_argument("--root", default=None, help="dataset folder (default: the card's)")
    r.add_argument("--split", default="test")
    r.add_argument("--steps", type=int, default=None, help="model steps (default: as many as the data has)")
    r.add_argument("--samples", type=int, default=1, help="stochastic samples per model")
    r.add_argument("--trajectories", type=int, default=None, help="first N trajectories (default all)")
    r.add_argument("--start", type=int, default=0, help="stored frame the rollouts start from")
    r.add_argument("--seed", type=int, default=0, help="seed of the stochastic samples")
    r.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    r.add_argument("--members", action="store_true", help="also store every member")
    r.add_argument("--no-plots", action="store_true")
    r.add_argument("--out", default="rollout.nc")
    r.set_defaults(fn=cmd_rollout)

    d = sub.add_parser("demo", help="generate cavity data, train an FNO, roll it out, write runs/demo")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--quick", action="store_true", help="a much smaller run (seconds), for smoke tests")
    d.set_defaults(fn=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        lightning_main(argv)
        return 0
    args = build_parser().parse_args(argv)
    return int(args.fn(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

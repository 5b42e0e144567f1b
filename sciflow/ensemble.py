"""Deep ensembles: train M members from one config into one folder, and load them back.

An ensemble folder holds

- ``config.yaml``: the config every member was trained from (a copy, so the folder stays
  reproducible when the original changes);
- ``member_<i>/``: one ``sciflow fit`` run per member (checkpoints, logs);
- ``ensemble.json``: the manifest, written atomically after each member: per member its seed,
  status, checkpoint (relative to the folder), the checkpoint's sha256 and its training cost.

Members differ by their seed (``member_seeds``): ``seed_everything`` draws the initial weights,
the data order and any training noise from it, so members are independently initialised and
shuffled. Training is resumable member by member: a rerun skips finished members and resumes an
interrupted one from its ``last.ckpt``. Members run one after another, or as ``parallel``
processes (one GPU each when GPUs are visible). Loading checks every member (present, unchanged,
readable, same channels / parameters / dt / grid) and refuses members with identical weights:
copies scored as independent members make every ensemble score wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

import sciflow
from sciflow.data.format import atomic_path
from sciflow.surrogate import Surrogate

MANIFEST = "ensemble.json"
CONFIG = "config.yaml"
# what every ensemble member must agree on
SHARED = ("channels", "params", "dt", "spatial_dims", "spatial_shape")


class EnsembleError(ValueError):
    """An ensemble cannot be trained or loaded; the message names the member at fault."""


@dataclass
class Member:
    """One member's entry in the manifest."""

    name: str
    seed: int
    status: str = "pending"  # pending | done
    checkpoint: str | None = None  # relative to the ensemble folder
    sha256: str | None = None
    cpu_seconds: float | None = None  # training processes (all attempts), user + system
    wall_seconds: float | None = None
    fit_args: list[str] | None = None  # the extra `sciflow fit` options it was trained with


@dataclass
class Manifest:
    """The contents of ``ensemble.json``."""

    size: int
    seed: int
    config_sha256: str
    use: str = "last"
    members: list[Member] = field(default_factory=list)
    sciflow_version: str = sciflow.__version__
    format: str = "sciflow-ensemble-1"

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        if not path.is_file():
            raise EnsembleError(f"{folder}: no {MANIFEST}; not an ensemble folder (train one with "
                                f"`sciflow ensemble --config C --members M --out {folder}`)")
        try:
            raw = json.loads(path.read_text())
            members = [Member(**m) for m in raw.pop("members")]
            return cls(**raw, members=members)
        except (ValueError, TypeError, KeyError) as err:
            raise EnsembleError(f"{path}: unreadable ensemble manifest ({err})") from None

    def write(self, folder: Path) -> None:
        with atomic_path(folder / MANIFEST) as tmp:
            tmp.write_text(json.dumps(asdict(self), indent=2))


def member_seeds(seed: int, n: int) -> list[int]:
    """``n`` distinct member seeds derived from ``seed`` (numpy ``SeedSequence``, uint32)."""
    seeds = [int(np.random.SeedSequence([int(seed), i]).generate_state(1, np.uint32)[0]) for i in range(n)]
    if len(set(seeds)) != n:  # astronomically unlikely; never hand two members the same seed
        raise EnsembleError(f"seed {seed} gives colliding member seeds {seeds}")
    return seeds


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- training -------------------------------------------------------------------------------------------

def _member_argv(config: Path, folder: Path, member: Member, fit_args: Sequence[str], cfg: dict[str, Any]) -> list[str]:
    mdir = folder / member.name
    argv = ["fit", "--config", str(config), *fit_args, "--seed_everything", str(member.seed),
            "--checkpoint.dirpath", str(mdir / "checkpoints")]
    logger = (cfg.get("trainer") or {}).get("logger")
    if isinstance(logger, dict) and "save_dir" in (logger.get("init_args") or {}):
        argv += ["--trainer.logger.init_args.save_dir", str(mdir), "--trainer.logger.init_args.name", "logs"]
    if (mdir / "checkpoints" / "last.ckpt").is_file():
        argv += ["--ckpt_path", "last"]  # an interrupted member resumes
    return argv


def _pick_checkpoint(folder: Path, member: Member, use: str) -> Path:
    ckpts = folder / member.name / "checkpoints"
    order = ["best.ckpt", "last.ckpt"] if use == "best" else ["last.ckpt"]
    for name in order:
        if (ckpts / name).is_file():
            return ckpts / name
    raise EnsembleError(f"{member.name}: training finished but left no {' or '.join(order)} in {ckpts}")


def _spawn(argv: list[str], env: dict[str, str], log: Path | None) -> subprocess.Popen:
    """Start ``sciflow <argv>`` as a child process (output to ``log`` when given)."""
    cmd = [sys.executable, "-m", "sciflow.cli", *argv]
    if log is None:
        return subprocess.Popen(cmd, env=env)
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_any(running: dict[int, Any]) -> tuple[int, int, Any]:
    """Wait until one of our children exits: ``(pid, status, rusage)`` (rusage of that child)."""
    while True:
        for pid in list(running):
            wpid, status, usage = os.wait4(pid, os.WNOHANG)
            if wpid:
                return wpid, status, usage
        time.sleep(0.2)


def _run(todo: list[Member], running: dict, failed: list[str], folder: Path, manifest: Manifest,
         cfg: dict[str, Any], fit_args: Sequence[str], use: str, parallel: int, threads: int, n_gpus: int,
         progress: bool) -> None:
    """Train the ``todo`` members, ``parallel`` at a time; ``running`` and ``failed`` are updated
    in place so that the caller can stop what is left if this is interrupted."""
    slot = 0
    while todo or running:
        while todo and len(running) < parallel and not failed:
            member = todo.pop(0)
            env = dict(os.environ)
            if parallel > 1:
                env.setdefault("OMP_NUM_THREADS", str(threads))
                if n_gpus:
                    env["CUDA_VISIBLE_DEVICES"] = str(slot % n_gpus)
            slot += 1
            (folder / member.name).mkdir(exist_ok=True)
            argv = _member_argv(folder / CONFIG, folder, member, fit_args, cfg)
            if progress:
                print(f"ensemble: training {member.name} (seed {member.seed})", flush=True)
            proc = _spawn(argv, env, folder / member.name / "fit.log" if parallel > 1 else None)
            running[proc.pid] = (member, proc, time.perf_counter())
        if not running:
            break
        pid, status, usage = _wait_any(running)
        member, proc, t0 = running.pop(pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
        # the cost of every attempt counts (an interrupted member resumes in a new process)
        member.cpu_seconds = (member.cpu_seconds or 0.0) + usage.ru_utime + usage.ru_stime
        member.wall_seconds = (member.wall_seconds or 0.0) + time.perf_counter() - t0
        if proc.returncode != 0:
            failed.append(f"{member.name} (exit code {proc.returncode})")
            manifest.write(folder)
            continue
        ckpt = _pick_checkpoint(folder, member, use)
        member.status, member.checkpoint = "done", str(ckpt.relative_to(folder))
        member.sha256 = file_sha256(ckpt)
        member.fit_args = list(fit_args)
        manifest.write(folder)
        if progress:
            print(f"ensemble: {member.name} done ({member.cpu_seconds:.0f} CPU s)", flush=True)


def train_ensemble(
    config: str | os.PathLike,
    members: int,
    out: str | os.PathLike,
    *,
    fit_args: Sequence[str] = (),
    seed: int | None = None,
    parallel: int = 1,
    use: str = "last",
    progress: bool = True,
) -> Path:
    """Train a deep ensemble of ``members`` models from a ``sciflow fit`` config into ``out``.

    Args:
        config: a ``sciflow fit`` config (LightningCLI YAML).
        members: ensemble size M >= 2.
        out: the ensemble folder (see the module docstring); rerunning continues it, and a
            larger ``members`` grows it.
        fit_args: further ``sciflow fit`` options for every member (e.g. ``--trainer.max_steps``);
            recorded per member in the manifest.
        seed: base seed of the member seeds (default the config's ``seed_everything``, else 0).
        parallel: members trained at once, as separate processes; with GPUs visible each gets
            one (round robin), on a CPU the threads are shared out.
        use: the checkpoint a member contributes: ``"last"`` (final weights) or ``"best"``
            (lowest validation NMSE, falling back to last).

    Returns the folder. Raises :class:`EnsembleError` naming the member that failed; members
    trained before it are kept in the manifest and a rerun continues with the rest.
    """
    config, folder = Path(config), Path(out)
    if int(members) != members or members < 2:
        raise EnsembleError(f"an ensemble needs at least 2 members, got {members}")
    if parallel < 1:
        raise EnsembleError(f"parallel must be >= 1, got {parallel}")
    if use not in ("last", "best"):
        raise EnsembleError(f"use must be 'last' or 'best', got {use!r}")
    if not config.is_file():
        raise EnsembleError(f"{config}: no such config")
    text = config.read_text()
    cfg = yaml.safe_load(text)
    if not isinstance(cfg, dict):
        raise EnsembleError(f"{config}: expected a mapping at the top level")
    digest = hashlib.sha256(text.encode()).hexdigest()
    base = int(cfg.get("seed_everything", 0) or 0) if seed is None else int(seed)
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / MANIFEST).is_file():
        manifest = Manifest.read(folder)
        if manifest.config_sha256 != digest:
            raise EnsembleError(f"{folder} holds an ensemble trained from another config "
                                f"(its copy is {folder / CONFIG}); use a new --out, or the same config")
        if (manifest.seed, manifest.use) != (base, use) or members < manifest.size:
            raise EnsembleError(
                f"{folder} holds an ensemble of {manifest.size} members with seed {manifest.seed} and use "
                f"{manifest.use!r}; continue it with the same seed and use and at least as many members "
                f"(more members grow it), or use a new --out")
        seeds = member_seeds(base, members)
        manifest.members += [Member(f"member_{i}", seeds[i]) for i in range(manifest.size, members)]
        manifest.size = members
        manifest.write(folder)
    else:
        manifest = Manifest(size=members, seed=base, config_sha256=digest, use=use,
                            members=[Member(f"member_{i}", s) for i, s in enumerate(member_seeds(base, members))])
        with atomic_path(folder / CONFIG) as tmp:
            shutil.copyfile(config, tmp)
        manifest.write(folder)
    todo = [m for m in manifest.members if m.status != "done"]
    if progress:
        done = members - len(todo)
        print(f"ensemble {folder}: {members} members, {done} trained, {len(todo)} to train", flush=True)

    n_gpus = torch.cuda.device_count()
    threads = max(1, (os.cpu_count() or 1) // parallel)
    running: dict[int, tuple[Member, subprocess.Popen, float]] = {}
    failed: list[str] = []
    try:
        _run(todo, running, failed, folder, manifest, cfg, fit_args, use, parallel, threads, n_gpus, progress)
    finally:
        for _, proc, _ in running.values():  # interrupted: stop the members still training
            proc.terminate()
            proc.wait()
    if failed:
        kept = [m.name for m in manifest.members if m.status == "done"]
        raise EnsembleError(
            f"ensemble {folder}: training failed for {', '.join(failed)}; trained members kept: "
            f"{', '.join(kept) or 'none'}. Fix the cause and rerun the same command to continue.")
    load_members(folder)  # refuse identical members now, not at rollout time
    return folder


# -- loading ---------------------------------------------------------------------------------------------

def weights_digest(model: Surrogate) -> str:
    """sha256 of the weights a model evaluates with (the EMA when kept)."""
    h = hashlib.sha256()
    for name, t in sorted(model.inference_stepper.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def check_members(models: Sequence[Surrogate], names: Sequence[str]) -> None:
    """Raise :class:`EnsembleError` naming the member if ``models`` cannot form one ensemble:
    different channels, parameters, dt or grid, or identical weights."""
    ref = models[0].hparams.data_spec
    for name, m in zip(names[1:], models[1:]):
        spec = m.hparams.data_spec
        for key in SHARED:
            if spec.get(key) != ref.get(key):
                raise EnsembleError(
                    f"{name}: {key} {spec.get(key)!r} differs from {names[0]}'s {ref.get(key)!r}; "
                    f"ensemble members must share channels, parameters, dt and grid")
    seen: dict[str, str] = {}
    for name, m in zip(names, models):
        d = weights_digest(m)
        if d in seen:
            raise EnsembleError(
                f"{seen[d]} and {name} have identical weights: copies are one member, not two (they "
                f"would be scored as independent and make the spread and CRPS wrong). For samples of "
                f"one stochastic model use --samples instead")
        seen[d] = name


def load_models(ckpts: Sequence[str | os.PathLike], names: Sequence[str] | None = None,
                map_location: str | torch.device = "cpu") -> list[Surrogate]:
    """Load checkpoints as one ensemble (see :func:`check_members`); errors name the checkpoint."""
    if not ckpts:
        raise ValueError("no checkpoints given")
    names = [str(c) for c in ckpts] if names is None else list(names)
    models = []
    for name, path in zip(names, ckpts):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{name}: no such checkpoint {path}")
        try:
            models.append(Surrogate.load(path, map_location=map_location))
        except (FileNotFoundError, EnsembleError):
            raise
        except Exception as err:  # a truncated or foreign file fails deep in torch / pickle
            raise EnsembleError(f"{name}: cannot load checkpoint {path}: {err}") from None
    if len(models) > 1:
        check_members(models, names)
    return models


def member_checkpoints(folder: str | os.PathLike) -> tuple[list[Path], list[str]]:
    """The checkpoints and names of a trained ensemble folder, checked against the manifest:
    every member trained, present and unchanged since training (sha256)."""
    folder = Path(folder)
    manifest = Manifest.read(folder)
    paths, names = [], []
    for m in manifest.members:
        if m.status != "done" or not m.checkpoint:
            raise EnsembleError(f"{folder}: {m.name} is not trained yet (status {m.status}); rerun "
                                f"`sciflow ensemble` with the same options to finish the ensemble")
        path = folder / m.checkpoint
        if not path.is_file():
            raise EnsembleError(f"{m.name}: checkpoint {path} is missing")
        if m.sha256 and file_sha256(path) != m.sha256:
            raise EnsembleError(f"{m.name}: checkpoint {path} is corrupt or was changed after training "
                                f"(sha256 differs from the manifest's)")
        paths.append(path)
        names.append(f"{folder.name}/{m.name}")
    if len(paths) < 2:
        raise EnsembleError(f"{folder}: an ensemble needs at least 2 members, the manifest lists {len(paths)}")
    return paths, names


def load_members(folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> list[Surrogate]:
    """Load a trained ensemble folder in one call: ``sciflow.ensemble.load_members("runs/ens")``."""
    paths, names = member_checkpoints(folder)
    return load_models(paths, names, map_location=map_location)


__all__ = ["EnsembleError", "Manifest", "Member", "check_members", "load_members", "load_models",
           "member_checkpoints", "member_seeds", "train_ensemble", "weights_digest"]

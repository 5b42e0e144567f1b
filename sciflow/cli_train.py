"""``sciflow fit | validate | test``: LightningCLI with sciflow's checkpoints, resuming and errors.

What this adds to Lightning's CLI:

* the surrogate and data module of the data's kind (:data:`KINDS`): the card's ``kind`` (grids:
  :class:`~sciflow.surrogate.Surrogate` and :class:`~sciflow.data.datamodule.SciflowData`;
  particles: :class:`~sciflow.particle_surrogate.ParticleSurrogate` and
  :class:`~sciflow.data.particles.datamodule.ParticleData`), or particles for a ``--data.root``
  folder holding a ``metadata.json`` (LagrangeBench's layout);
* two :class:`~sciflow.checkpoints.Checkpoint` callbacks: ``checkpoint`` keeps ``last.ckpt`` (every
  epoch, and every N steps with ``--checkpoint.every_n_train_steps N``), ``best`` keeps
  ``best.ckpt`` by ``val/nmse`` (particles: ``val/rollout_mse``); both in ``checkpoint.dirpath``
  (default ``runs/default/checkpoints``);
* ``--ckpt_path last`` (and ``best``) resolve to those files, and fail when there is none instead of
  silently starting over; ``--ckpt_path FILE`` is read safely and the model is rebuilt from the
  hyperparameters stored in it (Lightning's own parsing chokes on registry short names);
* a fresh ``fit`` refuses to overwrite the checkpoints of an earlier run in the same folder;
* the checkpoint is checked against the data (structure, card version, sciflow version);
* ``--threads`` / ``threads:`` and a default that does not oversubscribe (:mod:`sciflow.threads`);
* ``--compile MODE`` / ``compile:``: ``torch.compile`` of the operator (:mod:`sciflow.compile`);
* errors end in one short message naming what is at fault; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentError
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from sciflow.checkpoints import Checkpoint, CheckpointError, check_compatible, read_checkpoint
from sciflow.compile import MODES, CompileError, compile_mode, compile_model
from sciflow.registry import import_path
from sciflow.threads import configure_threads

COMMANDS = ("fit", "validate", "test")
DEFAULT_CHECKPOINT_DIR = "runs/default/checkpoints"


# processes training together, noted before training (Lightning's teardown clears WORLD_SIZE)
_WORLD = {"size": 1}


class ResumeError(RuntimeError):
    """A run cannot start or resume as asked; the message says what to do instead."""


# data kind -> (surrogate, data module, metric the `best` checkpoint follows)
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
    command line, else the configs' ``data.card`` / ``data.root`` (the last one given wins); a card
    that cannot be read counts as grid (the data module then reports it with its own message)."""
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
            return "grid"
    if root and (Path(root) / "metadata.json").is_file():
        return "particles"
    return "grid"


def _model_keys(model_class: type) -> list[str]:
    import inspect

    return [k for k in inspect.signature(model_class.__init__).parameters if k not in ("self", "data_spec")]


class SciflowCLI(LightningCLI):
    """LightningCLI for a sciflow surrogate and its data module (grid or particle, see :data:`KINDS`).

    ``best_monitor``: the metric ``best.ckpt`` follows by default.
    """

    def __init__(self, *args: Any, best_monitor: str = "val/nmse", **kwargs: Any):
        self.best_monitor = best_monitor  # read by add_arguments_to_parser, inside LightningCLI.__init__
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.link_arguments("data", "model.data_spec", compute_fn=lambda dm: dm.spec, apply_on="instantiate")
        # Two callbacks: `checkpoint` keeps last.ckpt current so a killed run resumes with
        # `--ckpt_path last`; `best` keeps the checkpoint with the lowest validation NMSE. They are
        # separate because a monitored callback cannot save before the first validation.
        parser.add_lightning_class_args(Checkpoint, "checkpoint")
        parser.add_lightning_class_args(Checkpoint, "best")
        parser.link_arguments("checkpoint.dirpath", "best.dirpath")
        parser.add_argument(
            "--threads", type=int | None, default=None,
            help="torch CPU threads per process (default: the cores not busy with other work, shared "
                 "among the processes of this machine; OMP_NUM_THREADS also sets it)",
        )
        parser.add_argument(
            "--compile", type=str | bool | None, default="off",
            help=f"torch.compile the operator for training and evaluation: {', '.join(MODES)} (default off; "
                 "checkpoints are the same as eager; see sciflow.compile)",
        )
        parser.set_defaults({
            "checkpoint.dirpath": DEFAULT_CHECKPOINT_DIR,
            "checkpoint.save_last": True,
            "checkpoint.save_top_k": 0,
            "best.monitor": self.best_monitor,
            "best.mode": "min",
            "best.filename": "best",
            "best.save_last": False,
        })

    # -- checkpoints named on the command line ------------------------------------------------------
    def _parse_ckpt_path(self) -> None:
        """Resolve and read ``ckpt_path`` before anything is built (replaces Lightning's version,
        which re-parses the checkpoint's hyperparameters and fails on registry short names)."""
        self._ckpt: tuple[Path, dict[str, Any]] | None = None
        sub = self.config.get("subcommand")
        if not sub:
            return
        cfg = self.config[sub]
        folder = Path(cfg.checkpoint.dirpath or DEFAULT_CHECKPOINT_DIR)
        requested = cfg.get("ckpt_path")
        if requested is None:
            if sub == "fit":
                _refuse_earlier_run(folder)
            return
        if str(requested) == "hpc" or str(requested).startswith("registry"):
            return  # Lightning's own kinds
        path = _resolve(str(requested), folder, cfg.best.filename or "best")
        if sub == "fit" and path.resolve().parent != folder.resolve():
            _refuse_earlier_run(folder)  # continuing another folder's run here must not overwrite this one's
        ckpt = read_checkpoint(path)
        cfg.ckpt_path = str(path)
        self._ckpt = (path, ckpt)
        # the checkpoint describes its own model; the config's model section must not contradict it
        stored = self.model_class.constructor_args(ckpt)
        changed = []
        for key in _model_keys(self.model_class):
            if key in stored and cfg.model.get(key) != stored[key]:
                if cfg.model.get(key) is not None or stored[key] is not None:
                    changed.append(f"model.{key}: config {cfg.model.get(key)!r}, checkpoint {stored[key]!r}")
                cfg.model[key] = stored[key]
        if changed:
            warnings.warn(f"{path}: the checkpoint's hyperparameters are used: " + "; ".join(changed), stacklevel=1)

    def _before(self) -> None:
        _WORLD["size"] = int(self.trainer.world_size)
        threads = self._get(self.config, "threads")
        n, why = configure_threads(threads, processes=max(1, int(self.trainer.num_devices)))
        rank_zero_info(f"sciflow: {n} torch thread{'s' if n > 1 else ''} per process ({why})")
        mode = compile_mode(self._get(self.config, "compile"))
        if mode is not None:
            compile_model(self.model, mode)
            rank_zero_info(f"sciflow: operator compiled (torch.compile, mode {mode})")
        if self._ckpt is not None:
            path, ckpt = self._ckpt
            check_compatible(ckpt, self.datamodule.spec, path)

    def before_fit(self) -> None:
        self._before()

    def before_validate(self) -> None:
        self._before()

    def before_test(self) -> None:
        self._before()


def _resolve(requested: str, folder: Path, best_name: str) -> Path:
    """``last`` / ``best`` -> the file in the checkpoint folder; a path stays a path."""
    if requested not in ("last", "best"):
        return Path(requested)
    path = folder / ("last.ckpt" if requested == "last" else f"{best_name}.ckpt")
    if not path.is_file():
        held = sorted(p.name for p in folder.glob("*.ckpt")) if folder.is_dir() else []
        where = f"{folder} holds {', '.join(held)}" if held else f"{folder} holds no checkpoint"
        raise ResumeError(
            f"--ckpt_path {requested}: no checkpoint to resume: {path} does not exist ({where}). "
            f"Start a new run without --ckpt_path, or name a file with --ckpt_path FILE"
            + ("" if folder.is_dir() else "; is --checkpoint.dirpath (or the config's checkpoint.dirpath) right?")
        )
    return path


def _refuse_earlier_run(folder: Path) -> None:
    held = sorted(p.name for p in folder.glob("*.ckpt")) if folder.is_dir() else []
    if held:
        raise ResumeError(
            f"{folder} already holds checkpoints of an earlier run ({', '.join(held)}); a new run would "
            f"overwrite them. Resume it with --ckpt_path last, or start afresh in another folder "
            f"(--checkpoint.dirpath) or after moving these away"
        )


def run(argv: list[str], debug: bool = False) -> int:
    """Run ``sciflow fit|validate|test ARGS``; returns the exit status. Errors print one short
    message (and the traceback only with ``debug``)."""
    command = argv[0] if argv else "fit"
    # wandb, when a config picks it, stays offline unless the user says otherwise
    os.environ.setdefault("WANDB_MODE", "offline")
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    try:
        model_path, data_path, monitor = KINDS[data_kind(argv[1:])]
        SciflowCLI(
            import_path(model_path), import_path(data_path),
            best_monitor=monitor,
            args=argv,
            trainer_defaults={
                "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                           "init_args": {"save_dir": "runs", "name": "default"}},
                "accelerator": "auto",
            },
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,
            parser_kwargs={"prog": "sciflow", "exit_on_error": False},
        )
    except ArgumentError as err:
        if debug:
            raise
        print(f"{_who(command)}: error: {_message(err)}\n"
              f"tip: `sciflow {command} --help` lists the options", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - every failure ends in one readable line
        if debug:
            raise
        print(f"{_who(command)}: error: {_message(err)}\n(run with --debug for the traceback)", file=sys.stderr)
        return 1
    return 0


def _who(command: str) -> str:
    """``sciflow fit``, with the rank when several processes train together."""
    if _WORLD["size"] > 1:
        from lightning.pytorch.utilities.rank_zero import rank_zero_only

        return f"sciflow {command} (rank {getattr(rank_zero_only, 'rank', 0)} of {_WORLD['size']})"
    return f"sciflow {command}"


# Messages of a collective whose peer process died; the peer's own message says why.
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "NCCL communicator was aborted")


def _message(err: BaseException) -> str:
    # jsonargparse reports an error inside a linked argument (the data spec) as its own ValueError
    while str(err).startswith("Call to compute_fn of link") and err.__cause__ is not None:
        err = err.__cause__
    text = str(err).strip() or type(err).__name__
    if any(m in text for m in _PEER_GONE):
        return f"another training process stopped (its own error is printed above): {text.splitlines()[0][:300]}"
    if isinstance(err, (ArgumentError, CheckpointError, CompileError, ResumeError, OSError)) or type(err).__module__.startswith("sciflow"):
        return text
    return f"{type(err).__name__}: {text}"


__all__ = ["COMMANDS", "DEFAULT_CHECKPOINT_DIR", "KINDS", "ResumeError", "SciflowCLI", "data_kind", "run"]

"""The experiment configs in ``configs/``: each one parses and trains for two steps through
``sciflow fit`` on a tiny stand-in of its dataset, writing its logs and checkpoints where it says;
the checkpoint file it wrote then serves ``validate``, ``test`` and a resumed ``fit``
(``--ckpt_path FILE``); the cavity operator configs share one training budget at comparable
parameter counts; the README's training commands run as written.

The stand-in dataset has the card's fields, parameters, time step and periodicity on a 16-point
grid per axis, written with the data layer's writer, so no solver runs in these tests.
"""

from __future__ import annotations

import copy
import csv
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sciflow.cli import main as sciflow_main
from sciflow.data.card import load_card
from sciflow.data.format import write_well
from sciflow.operators import build_operator

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
CAVITY_OPERATORS = ("fno", "unet", "factformer", "ifactformer")
# vector fields are stored as t1 fields with one component per spatial axis
VECTOR_FIELDS = {"velocity"}


def _is_particle_config(path: Path) -> bool:
    card = ((yaml.safe_load(path.read_text()) or {}).get("data") or {}).get("card")
    try:
        return bool(card) and load_card(card).kind == "particles"
    except (OSError, ValueError):
        return False


# particle configs train on particle stand-ins, in tests/test_configs_particles.py
ALL_CONFIGS = [p for p in sorted(CONFIGS.glob("*.yaml")) if not _is_particle_config(p)]
# tiny-run overrides: one epoch of two batches, so that the epoch-end validation runs too
TINY_RUN = [
    "--data.batch_size", "2", "--data.rollout_steps", "2", "--data.num_workers", "0",
    "--trainer.limit_train_batches", "2", "--trainer.log_every_n_steps", "1",
    "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
    "--trainer.num_sanity_val_steps", "0", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", "--threads", "1",
]


def load_config(path: Path) -> dict:
    cfg = yaml.safe_load(path.read_text())
    if not isinstance(cfg, dict):
        raise ValueError(f"{path.name}: expected a mapping at the top level, got {type(cfg).__name__}")
    return cfg


def tiny_dataset(card_name: str, root: Path, *, n: int = 16, seed: int = 0) -> Path:
    """Write a small stand-in for the dataset ``card_name`` under ``root``; return its card path.

    3 train, 1 valid and 1 test trajectories of smooth random fields on ``n`` points per axis,
    with the card's fields (``velocity`` as a vector field), parameters (base value x U(0.5, 1.5)),
    time step and periodicity; enough frames for two-step rollouts.
    """
    card = load_card(card_name)
    n_dims = len(card.grid) if card.grid else 2
    rng = np.random.default_rng(seed)
    axes = "xyz"[:n_dims]
    coords = {a: (np.arange(n) + 0.5) / n for a in axes}
    grids = np.meshgrid(*coords.values(), indexing="ij")
    frames = 4 * card.time_step + 2
    dt = card.dt or 0.1
    time = np.arange(frames) * dt

    def smooth_field(components: int | None) -> np.ndarray:
        """(1, T, *S) or (1, T, *S, D): a travelling wave with random wavenumbers and phases."""
        shape = (frames,) + (n,) * n_dims
        out = []
        for _ in range(components or 1):
            k = rng.integers(1, 3, size=n_dims)
            phase = sum(2 * np.pi * k[i] * grids[i] for i in range(n_dims)) + rng.uniform(0, 2 * np.pi)
            out.append(np.sin(phase[None] - time.reshape((-1,) + (1,) * n_dims)) * np.ones(shape))
        arr = np.stack(out, -1) if components else out[0]
        return arr[None].astype(np.float32)

    k = 0
    for split, count in (("train", 3), ("valid", 1), ("test", 1)):
        for _ in range(count):
            t0 = {f: smooth_field(None) for f in card.fields if f not in VECTOR_FIELDS}
            t1 = {f: smooth_field(n_dims) for f in card.fields if f in VECTOR_FIELDS}
            params = {p: card.base.get(p, 1.0) * rng.uniform(0.5, 1.5) for p in card.params}
            write_well(root / "data" / split / f"case_{k:04d}.hdf5", dataset_name=f"{card.name}-tiny",
                       time=time, coords=coords, t0_fields=t0, t1_fields=t1, params=params,
                       attrs={"dt": dt})
            k += 1
    path = root / "card.yaml"
    path.write_text(yaml.safe_dump({
        "name": f"{card.name}-tiny", "path": str(root), "fields": list(card.fields),
        "params": list(card.params), "dt": dt, "frames": frames, "time_step": card.time_step,
        "periodic": card.periodic,
    }))
    return path


def _run_dirs(cfg: dict, cwd: Path) -> tuple[Path | None, Path]:
    """Where a config's CSV logs (None for another logger) and checkpoints land, relative paths
    taken from ``cwd``; a config without them gets the CLI's defaults."""
    logger = cfg.get("trainer", {}).get("logger") or {
        "class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "runs", "name": "default"}}
    logs = None
    if isinstance(logger, dict) and logger.get("class_path", "").endswith("CSVLogger"):
        args = logger.get("init_args", {})
        logs = cwd / args.get("save_dir", ".") / args.get("name", "lightning_logs")
    dirpath = cfg.get("checkpoint", {}).get("dirpath")
    return logs, (cwd / dirpath if dirpath else cwd)


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=[p.stem for p in ALL_CONFIGS])
def test_config_trains_and_resumes_from_a_checkpoint_file(config, tmp_path, monkeypatch):
    cfg = load_config(config)
    card = tiny_dataset(cfg.get("data", {}).get("card", "cavity"), tmp_path / "data")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # the config's relative run folders land here
    monkeypatch.setattr(sys, "argv", ["sciflow"])  # pytest's own arguments are not the CLI's

    def sciflow(command: str, *extra: str) -> None:
        rc = sciflow_main([command, "--config", str(config), "--data.card", str(card), *TINY_RUN, *extra])
        assert rc == 0, f"sciflow {command} --config {config.name} {' '.join(extra)} exited {rc}"

    sciflow("fit", "--trainer.max_steps", "2")
    logs, ckpts = _run_dirs(cfg, work)
    found = sorted(ckpts.rglob("last.ckpt"))
    assert found, f"{config.name}: no last.ckpt under {ckpts}"
    last = found[0]
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["global_step"] == 2, f"{config.name}: trained {ckpt['global_step']} steps, expected 2"
    assert ckpt["hyper_parameters"]["operator"] == cfg["model"]["operator"]
    if logs is not None:
        metrics = sorted(logs.rglob("metrics.csv"))  # version_N/metrics.csv, or directly with version ""
        assert metrics, f"{config.name}: no CSV log under {logs}"
        with metrics[-1].open() as f:
            rows = list(csv.DictReader(f))
        losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
        assert losses and all(np.isfinite(losses)), f"{config.name}: train losses {losses}"
        assert any(r.get("val/nmse") for r in rows), f"{config.name}: validation did not run"
    # the file serves validate and test, and a resumed fit continues from it (registry short names
    # in the stored hyperparameters included)
    sciflow("validate", "--ckpt_path", str(last))
    sciflow("test", "--ckpt_path", str(last))
    sciflow("fit", "--ckpt_path", str(last), "--trainer.max_steps", "3", "--trainer.limit_train_batches", "3")
    assert torch.load(last, weights_only=True)["global_step"] == 3


def readme_commands() -> list[str]:
    """The `sciflow fit|test|rollout` lines of the README's training section."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Train on your own data"):text.index("## GPUs and several nodes")]
    lines = [ln.split("#")[0].strip() for ln in section.splitlines()]
    return [ln for ln in lines if ln.startswith(("sciflow fit", "sciflow test", "sciflow rollout"))]


def test_readme_training_commands_run_as_written(tmp_path, monkeypatch):
    """Each command of the README's "Train on your own data" section, with only a tiny dataset and
    tiny-run options appended: train, resume with `--ckpt_path last`, test `best.ckpt`, roll out."""
    commands = readme_commands()
    fit, fresh_card, resume, test, rollout, *others = commands
    rollouts = [c for c in others if c.startswith("sciflow rollout")]
    assert rollouts, "the README shows how to roll out an ensemble"
    assert fit == "sciflow fit --config configs/cavity_fno.yaml"
    assert resume == fit + " --ckpt_path last"
    assert test.startswith("sciflow test --config configs/cavity_fno.yaml --ckpt_path runs/cavity_fno/checkpoints/best.ckpt")
    assert "--data.card" in fresh_card and all("--data.card" in c for c in [rollout, *rollouts])
    card = tiny_dataset("cavity", tmp_path / "data")
    work = tmp_path / "work"
    shutil.copytree(CONFIGS, work / "configs")
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "argv", ["sciflow"])
    tiny = ["--data.card", str(card), *TINY_RUN]
    for command, extra in ((fit, ["--trainer.max_steps", "2"]),
                           (resume, ["--trainer.max_steps", "3", "--trainer.limit_train_batches", "3"]),
                           (test, [])):
        assert sciflow_main(shlex.split(command)[1:] + tiny + extra) == 0, command
    assert torch.load("runs/cavity_fno/checkpoints/last.ckpt", weights_only=True)["global_step"] == 3
    args = shlex.split(rollout)[1:]
    args[args.index("--data.card") + 1] = str(card)
    args[args.index("--steps") + 1] = "2"
    assert sciflow_main([*args, "--no-plots", "--threads", "1"]) == 0, rollout
    assert Path(args[args.index("--out") + 1]).is_file()


def _cavity_configs() -> dict[str, dict]:
    return {op: load_config(CONFIGS / f"cavity_{op}.yaml") for op in CAVITY_OPERATORS}


def test_cavity_configs_share_one_budget():
    configs = _cavity_configs()
    stripped = {}
    for op, cfg in configs.items():
        name = f"cavity_{op}"
        assert cfg["data"]["card"] == "cavity"
        assert cfg["trainer"]["logger"]["init_args"] == {"save_dir": "runs", "name": name}
        assert cfg["checkpoint"]["dirpath"] == f"runs/{name}/checkpoints"
        assert cfg["model"]["stepper"]["class_path"] == "deterministic"
        assert cfg["model"]["operator"]["class_path"] == op
        rest = copy.deepcopy(cfg)
        del rest["model"]["operator"], rest["trainer"]["logger"], rest["checkpoint"]
        stripped[op] = rest
    reference = stripped["fno"]
    for op, rest in stripped.items():
        assert rest == reference, f"cavity_{op}.yaml differs from cavity_fno.yaml outside the operator"


def test_cavity_configs_have_comparable_parameter_counts():
    # cavity: u, v, p (+ the geometry mask as an input channel), parameters [U, rho, mu, height, width]
    counts = {}
    for op, cfg in _cavity_configs().items():
        model = build_operator(cfg["model"]["operator"], in_channels=4, out_channels=3, n_dims=2, cond_dim=5)
        counts[op] = sum(p.numel() for p in model.parameters())
    mean = np.mean(list(counts.values()))
    assert all(abs(c / mean - 1) <= 0.25 for c in counts.values()), counts


def test_cavity_configs_use_the_benchmark_hyperparameters():
    from benchmarks.operators import OPERATORS

    by_key = {spec["class_path"]: spec for spec in OPERATORS.values()}
    for op, cfg in _cavity_configs().items():
        assert cfg["model"]["operator"] == by_key[op], f"cavity_{op}.yaml"


def test_tiny_dataset_has_the_card_layout(tmp_path):
    from sciflow.data.datamodule import SciflowData

    dm = SciflowData(str(tiny_dataset("cavity", tmp_path)), batch_size=2, rollout_steps=2)
    assert dm.spec["channels"] == ["velocity_x", "velocity_y", "pressure"]
    assert dm.spec["params"] == ["U", "rho", "mu", "height", "width"]
    assert dm.spec["spatial_shape"] == [16, 16]
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["input"].shape == (2, 1, 3, 16, 16)
    assert torch.all(batch["params"] > 0)

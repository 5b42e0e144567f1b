"""The demo behind ``make demo``: generate lid-driven cavity data, train an FNO, test it against
the copy-the-input baseline, roll it out, and write everything to one folder.

Every stage is the library's public path (the sweep generator, ``SciflowData``, ``Surrogate``, a
Lightning ``Trainer``, ``run_rollout``), so the demo doubles as an example to copy.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

from sciflow.checkpoints import Checkpoint
from sciflow.data.card import load_card
from sciflow.data.datamodule import SciflowData
from sciflow.data.format import atomic_path
from sciflow.evaluate import run_rollout
from sciflow.solvers.sweep import generate
from sciflow.surrogate import Surrogate

# Sizes of the full demo (about 10 minutes on 2 CPU cores) and of the quick smoke run.
FULL = {
    "cases": 30,
    "epochs": 11,
    "width": 24,
    "modes": 12,
    "layers": 4,
    "batch": 16,
    "rollout_steps": 20,
}
DEMO_MAX_RE = 500.0
QUICK = {
    "cases": 9,
    "epochs": 1,
    "width": 8,
    "modes": 4,
    "layers": 1,
    "batch": 8,
    "rollout_steps": 3,
}


def run_demo(
    out: str | os.PathLike = "runs/demo",
    *,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the demo into ``out``; returns the metrics also written to ``out/metrics.json``."""
    cfg = QUICK if quick else FULL
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(seed, workers=True, verbose=False)
    timings: dict[str, float] = {}

    card = load_card("cavity")
    # Keep the demo's cases at Re <= 500, which run on the 64x64 grid itself (a few seconds each);
    # the card's full range goes to Re 1000 on a refined internal grid.
    card.limits = {**card.limits, "Re": [10.0, DEMO_MAX_RE]}
    data_root = out / "data"
    t0 = time.perf_counter()
    generate(
        card,
        "all",
        cfg["cases"],
        root=data_root,
        workers=min(2, os.cpu_count() or 1),
        progress=progress,
    )
    timings["generate_s"] = time.perf_counter() - t0

    dm = SciflowData(
        "cavity", root=str(data_root), batch_size=cfg["batch"], rollout_steps=cfg["rollout_steps"]
    )
    operator = {
        "class_path": "fno",
        "init_args": {"width": cfg["width"], "modes": cfg["modes"], "n_layers": cfg["layers"]},
    }
    model = Surrogate(operator, lr=2e-3, warmup_steps=20, ema_decay=0.99, data_spec=dm.spec)
    ckpt_dir = out / "checkpoints"
    trainer = L.Trainer(
        max_epochs=cfg["epochs"],
        accelerator="cpu",
        devices=1,
        default_root_dir=out,
        logger=CSVLogger(out, name="logs", version=""),
        callbacks=[
            # best.ckpt by validation NMSE, last.ckpt after every epoch; a rerun overwrites both
            Checkpoint(
                dirpath=ckpt_dir, filename="best", monitor="val/nmse", mode="min", save_last=True
            )
        ],
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=10,
    )
    t0 = time.perf_counter()
    trainer.fit(model, dm)
    timings["train_s"] = time.perf_counter() - t0

    best = ckpt_dir / "best.ckpt"
    t0 = time.perf_counter()
    tested = trainer.test(model, dm, ckpt_path=str(best), verbose=False)
    timings["test_s"] = time.perf_counter() - t0
    one_step = {k: float(v) for d in tested for k, v in d.items()}

    t0 = time.perf_counter()
    _, rollout_summary = run_rollout(
        [str(best)],
        "cavity",
        root=str(data_root),
        split="test",
        steps=cfg["rollout_steps"],
        out=str(out / "rollout.nc"),
        progress=progress,
    )
    timings["rollout_s"] = time.perf_counter() - t0

    nmse, copy = one_step["test/nmse"], one_step["test/nmse_copy"]
    metrics = {
        "dataset": {
            "card": card.name,
            "max_reynolds": DEMO_MAX_RE,
            "card_hash": card.hash,
            "cases": cfg["cases"],
            "train_windows": len(dm.train_set),
            "channels": dm.spec["channels"],
        },
        "model": {
            "operator": operator,
            "parameters": sum(p.numel() for p in model.stepper.parameters()),
            "epochs": cfg["epochs"],
            "checkpoint": str(best),
        },
        "test_one_step": {
            "fno_nmse": nmse,
            "copy_input_nmse": copy,
            "improvement_over_copy": copy / nmse,
        },
        "test_rollout": {k: v for k, v in one_step.items() if "rollout" in k}
        | {"summary": rollout_summary},
        "timings_s": timings,
        "torch_threads": torch.get_num_threads(),
    }
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, default=float))
    if progress:
        print(f"\nsciflow demo -> {out}/")
        print(
            f"  one-step test NMSE: FNO {nmse:.3e} vs copy-the-input {copy:.3e} ({copy / nmse:.1f}x lower)"
        )
        print(
            "  files: metrics.json, rollout.nc, rollout_fields.png, rollout_errors.png, checkpoints/, logs/"
        )
    return metrics

"""Evaluate particle surrogates by long rollouts on a particle dataset split: what ``sciflow
rollout`` runs for particle checkpoints.

Checkpoints -> ensemble -> :func:`sciflow.particle_rollout.rollout_particles` over the chosen
trajectories (batched as one graph) -> :class:`sciflow.particle_results.ParticleResultsWriter`
(netCDF written step by step) -> frame plots of predicted vs true particles, error curves, and a
summary of LagrangeBench's scores.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sciflow.checkpoints import check_compatible, read_checkpoint
from sciflow.data.particles.datamodule import ParticleData
from sciflow.particle_plots import plot_particle_errors, plot_particle_frames
from sciflow.particle_results import ParticleResultsWriter
from sciflow.particle_rollout import rollout_particles
from sciflow.particle_surrogate import ParticleSurrogate
from sciflow.surrogate_base import load_surrogate

# what every member of a particle ensemble must agree on
_SHARED = ("dim", "params", "dt", "history", "bounds", "periodic")


def load_particle_ensemble(ckpts: Sequence[str | os.PathLike], map_location: str | torch.device = "cpu"
                           ) -> list[ParticleSurrogate]:
    """Load particle checkpoints and check they can form one ensemble; errors name the file."""
    if not ckpts:
        raise ValueError("no checkpoints given")
    models = []
    for path in ckpts:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such checkpoint")
        model = load_surrogate(path, map_location)
        if not isinstance(model, ParticleSurrogate):
            raise ValueError(f"{path}: not a particle checkpoint (a {type(model).__name__})")
        models.append(model)
    ref = models[0].hparams.data_spec
    for path, m in zip(ckpts[1:], models[1:]):
        for key in _SHARED:
            if m.hparams.data_spec.get(key) != ref.get(key):
                raise ValueError(f"{path}: {key} {m.hparams.data_spec.get(key)!r} differs from {ckpts[0]}'s "
                                 f"{ref.get(key)!r}; ensemble members must share them")
    return models


def run_particle_rollout(
    ckpts: Sequence[str | os.PathLike],
    data: str | None = None,
    *,
    root: str | os.PathLike | None = None,
    split: str = "test",
    trajectories: Sequence[int] | None = None,
    steps: int | None = None,
    samples: int = 1,
    start: int = 0,
    keep_members: bool = False,
    out: str | os.PathLike = "rollout.nc",
    plots: bool = True,
    plot_steps: Sequence[int] | None = None,
    progress: bool = True,
    blowup: float = 100.0,
    device: str | torch.device = "cpu",
) -> tuple[Path, dict[str, Any]]:
    """Roll particle checkpoints out on a split and write positions per step, plots and scores.

    Args:
        ckpts: particle checkpoints (one per ensemble model).
        data: dataset card name or path; ``root`` (a dataset folder) may replace or override it.
        split, trajectories: the split and indices into it (default all).
        steps: model steps (default as many as every chosen trajectory allows).
        samples: copies per model; start: stored frame where the history window starts.
        keep_members: store every member's positions.
        out: netCDF path; plots go beside it as ``<stem>_frames.png`` and ``<stem>_errors.png``.
        plot_steps: steps shown in the frame plot (default spread over the rollout).
        blowup: speed factor of the blow-up check; device: where the models run.

    Returns:
        ``(path, summary)``: the results file and LagrangeBench's scores averaged over trajectories.
    """
    models = [m.to(device) for m in load_particle_ensemble(ckpts)]
    spec = models[0].hparams.data_spec
    dm = ParticleData(card=data, root=None if root is None else str(root), history=int(spec["history"]),
                      time_step=int(spec.get("time_step", 1)))
    tr = dm.trajectories(split)
    card_hash = dm.spec["card_hash"]
    for path in ckpts:  # structure must match the data (an error); another card version only warns
        check_compatible(read_checkpoint(path), dm.spec, path)
    if list(tr.param_names) != list(spec["params"]):
        raise ValueError(f"split {split!r} has parameters {tr.param_names}, the models {spec['params']}")
    if tr.dim != int(spec["dim"]):
        raise ValueError(f"split {split!r} has dim {tr.dim}, the models {spec['dim']}")
    ts, h = int(spec.get("time_step", 1)), int(spec["history"])
    idx = list(range(len(tr))) if trajectories is None else [int(i) for i in trajectories]
    bad = [i for i in idx if not 0 <= i < len(tr)]
    if bad or not idx:
        raise ValueError(f"trajectories {bad or idx} out of range: split {split!r} has {len(tr)}")
    t0 = start + h * ts  # stored frame of t = 0 (h velocities need h + 1 positions)
    room = {i: (tr.n_frames(i) - 1 - t0) // ts for i in idx}
    steps = min(room.values()) if steps is None else int(steps)
    short = [i for i in idx if room[i] < steps]
    if steps < 1 or short:
        raise ValueError(f"{steps} steps of {ts} frames from frame {t0} do not fit trajectories {short or idx} of split "
                         f"{split!r} (they allow {min(room[i] for i in (short or idx))})")
    hist = [torch.from_numpy(tr.read(i, start, t0 + 1, ts)) for i in idx]  # (h + 1, N_b, D)
    truth = [torch.from_numpy(tr.read(i, t0, t0 + steps * ts + 1, ts)) for i in idx]  # (steps + 1, N_b, D)
    types = [torch.from_numpy(tr.particle_type(i)) for i in idx]
    params = torch.stack([torch.from_numpy(tr.params(i)).float() for i in idx]) if spec["params"] else None
    n = torch.tensor([t.shape[0] for t in types])
    batch = torch.repeat_interleave(torch.arange(len(idx)), n)
    kinematic = torch.cat([t[1:] for t in truth], dim=1)  # walls follow their stored positions
    writer = ParticleResultsWriter(
        out, initial=[x[-2:] for x in hist], particle_type=types, steps=steps, dt=float(spec["dt"]),
        n_members=len(models) * samples, samples=samples, truth=truth, params=params,
        param_names=list(spec["params"]), trajectories=idx, frame_dt=float(spec["dt"]), dx=float(spec["dx"]),
        domain=models[0].stepper.domain, keep_members=keep_members,
        attrs={"checkpoints": [os.fspath(c) for c in ckpts], "card": dm.name, "card_hash": card_hash,
               "split": split, "start_frame": start, "time_step_frames": ts, "blowup": blowup, "kind": "particles"})
    try:
        for step in rollout_particles(models, torch.cat(hist, dim=1), torch.cat(types), params, steps, batch=batch,
                                      samples=samples, kinematic=kinematic, blowup=blowup, progress=progress):
            writer.update(step)
    except BaseException:
        writer.abort()
        raise
    summary = writer.close()
    out = Path(out)
    if plots:
        stem = out.with_suffix("")
        plot_particle_frames(out, trajectory=0, steps=plot_steps, path=f"{stem}_frames.png")
        plot_particle_errors(out, path=f"{stem}_errors.png")
    return out, summary


__all__ = ["load_particle_ensemble", "run_particle_rollout"]

"""Evaluate trained surrogates by long rollouts on a dataset split: what ``sciflow rollout`` runs.

Checkpoints -> ensemble -> :func:`sciflow.rollout.rollout` over the chosen trajectories ->
:class:`sciflow.results.RolloutCollector` -> netCDF file (streamed, atomic, resumable), plots
and a summary.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

import sciflow
from sciflow.checkpoints import CardMismatchWarning
from sciflow.compile import compile_model
from sciflow.data.datamodule import SciflowData
from sciflow.data.trajectories import Trajectories
from sciflow.ensemble import load_models, member_checkpoints
from sciflow.plots import (
    default_plot_steps,
    plot_calibration,
    plot_conservation,
    plot_error_curves,
    plot_fields,
    plot_spacetime,
)
from sciflow.results import DEFAULT_SCORES, RolloutCollector, Score, summarize
from sciflow.rollout import Projection, member_table, rollout
from sciflow.rollout_conservation import RolloutConservation
from sciflow.spread_correction import SpreadCorrection, SpreadCorrectionError, as_correction
from sciflow.surrogate import Surrogate


def load_ensemble(
    ckpts: Sequence[str | os.PathLike], map_location: str | torch.device = "cpu"
) -> list[Surrogate]:
    """Load checkpoints and check that they can form one ensemble: same channels, parameters,
    time step (dt) and grid, no two with identical weights; the error names the checkpoint
    (see :func:`sciflow.ensemble.load_models`)."""
    return load_models(ckpts, map_location=map_location)


def _fields_for(traj: Trajectories, channels: list[str]) -> list[str] | None:
    """Stored field names whose channels, in order, are ``channels`` (None if impossible)."""
    infos = traj.files[0].fields
    out, pos = [], 0
    while pos < len(channels):
        match = next(
            (i for i in infos if list(i.channels) == channels[pos : pos + len(i.channels)]), None
        )
        if match is None:
            return None
        out.append(match.name)
        pos += len(match.channels)
    return out


def _trajectories(dm: SciflowData, split: str, channels: list[str]) -> Trajectories:
    traj = dm.trajectories(split)
    if list(traj.channel_names) != channels:
        fields = _fields_for(traj, channels)
        if fields is None:
            raise ValueError(
                f"dataset {dm.card.name!r} split {split!r}: channels {traj.channel_names} do not match the "
                f"model's {channels}, and no choice of stored fields gives them"
            )
        traj = Trajectories([wf.path for wf in traj.files], fields)
    return traj


def run_rollout(
    ckpts: Sequence[str | os.PathLike],
    data: str,
    *,
    ensemble: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
    split: str = "test",
    trajectories: Sequence[int] | None = None,
    steps: int | None = None,
    samples: int = 1,
    start: int = 0,
    seed: int = 0,
    keep_members: bool = False,
    out: str | os.PathLike = "rollout.nc",
    plots: bool = True,
    plot_steps: Sequence[int] | None = None,
    progress: bool = True,
    batch_size: int | None = None,
    max_batch: int | None = None,
    blowup: float = 1e3,
    project: str | Projection | None = None,
    sigma_g: float = 0.0,
    device: str | torch.device = "cpu",
    scores: Sequence[Score] = (),
    spread_correction: SpreadCorrection | str | os.PathLike | None = None,
    compile: str | bool | None = None,
) -> tuple[xr.Dataset, dict[str, Any]]:
    """Roll an ensemble of checkpoints out on a dataset split and save results, plots and scores.

    Args:
        ckpts: checkpoint paths (one per ensemble model).
        data: dataset card name or path; ``root`` overrides where its files are.
        ensemble: a deep-ensemble folder (``sciflow ensemble``) whose members join ``ckpts``.
        split: ``train``, ``valid`` or ``test``.
        trajectories: indices into the split (default all).
        steps: model steps (default as many as every chosen trajectory allows).
        samples: samples per stochastic model (a deterministic model is one member whatever
            this says; see :func:`~sciflow.rollout.member_table`).
        start: stored frame where the history window starts; the first ``h`` frames at the
            model's time step are the initial condition, the last of them is t = 0.
        seed: the generator seed of a trajectory batch is ``seed`` plus the split index of the
            batch's first trajectory, so a batch gets the same samples whichever process runs it.
        blowup, max_batch: passed to :func:`~sciflow.rollout.rollout`.
        project: the conservation projection applied to every step's members, by name (laws
            from the card, see :mod:`sciflow.rollout_conservation`): ``"none"`` (monitor only),
            ``"hardc"``, ``"probconserv"``, ``"insampler"`` or ``"insampler_probconserv"``; or a
            ``project(members, k)`` callable passed to :func:`~sciflow.rollout.rollout` as is
            (no conservation scores). None is ``"none"``. With a card that names laws, the
            results get ``conservation_abs`` / ``conservation_rel`` ``(trajectory, time, law)``.
        sigma_g: constraint noise of a named projection (0: the laws hold to round-off).
        keep_members: store every member's fields in the dataset.
        out: netCDF path. Results are streamed into ``<out>.partial`` step by step (memory flat
            in the number of steps, truth read from disk as it is needed) and moved to ``out``
            only when complete: a killed rollout never leaves a half-written ``out``, and an
            older file there stays intact until then. Rerunning the same call continues from
            the trajectory batches the killed run finished. Plots go next to it as
            ``<stem>_fields.png``, ``<stem>_errors.png`` and, for an ensemble,
            ``<stem>_calibration.png``, with conservation laws ``<stem>_conservation.png`` (1D data also ``<stem>_spacetime.png``).
        plot_steps: model steps shown in the field plot (default spread over the rollout).
        batch_size: trajectories per rollout batch (default all at once): memory grows with it,
            not with ``steps``.
        device: where the models run.
        scores: per-step scores in addition to :data:`~sciflow.results.DEFAULT_SCORES`.
        spread_correction: per-step factors (or their JSON file, ``sciflow calibrate``) that
            rescale the members about their mean before scoring and storing; fit them on another
            split (see :mod:`sciflow.spread_correction`).
        compile: ``torch.compile`` mode of the models' operators (:mod:`sciflow.compile`; None or
            ``"off"``: eager). The results are the same to float round-off.

    Returns:
        ``(dataset, summary)``: the results (see :mod:`sciflow.results`), opened lazily from
        ``out``, and :func:`~sciflow.results.summarize` of them.
    """
    paths: list[str | os.PathLike] = []
    names: list[str] = []
    if ensemble is not None:
        member_paths, names = member_checkpoints(ensemble)
        paths += member_paths
    paths += list(ckpts)
    names += [os.fspath(c) for c in ckpts]
    models = [compile_model(m.to(device), compile) for m in load_models(paths, names)]
    ckpts = paths
    spec = models[0].hparams.data_spec
    dm = SciflowData(data, root=None if root is None else str(root))
    for path, m in zip(ckpts, models):
        trained_on = m.hparams.data_spec.get("card_hash")
        if trained_on and trained_on != dm.card.hash:
            warnings.warn(
                f"{path}: trained on a different version of card {spec.get('card')!r} (hash "
                f"{trained_on[:12]}) than {dm.card.name!r} now (hash {dm.card.hash[:12]})",
                CardMismatchWarning,
                stacklevel=2,
            )
    channels = list(spec["channels"])
    traj = _trajectories(dm, split, channels)
    if list(traj.param_names) != list(spec["params"]):
        raise ValueError(
            f"split {split!r} has parameters {traj.param_names}, the models {spec['params']}"
        )
    if list(traj.spatial_shape) != list(spec["spatial_shape"]):
        raise ValueError(
            f"split {split!r} has grid {list(traj.spatial_shape)}, the models {spec['spatial_shape']}"
        )
    ts = int(spec.get("time_step", 1))
    h = max(int(m.hparams.data_spec.get("history", 1)) for m in models)
    idx = list(range(len(traj))) if trajectories is None else [int(i) for i in trajectories]
    bad = [i for i in idx if not 0 <= i < len(traj)]
    if bad or not idx:
        raise ValueError(f"trajectories {bad or idx} out of range: split {split!r} has {len(traj)}")
    t0 = start + (h - 1) * ts  # stored frame of t = 0
    room = {i: (traj.n_steps(i) - 1 - t0) // ts for i in idx}
    if steps is None:
        steps = min(room.values())
    if steps < 1:
        short = min(room, key=room.get)
        raise ValueError(
            f"trajectory {short} of split {split!r} has {traj.n_steps(short)} frames: no room for a step after "
            f"{h} history frames from frame {start} at a time step of {ts} frames"
        )
    short = [i for i in idx if room[i] < steps]
    if short:
        raise ValueError(
            f"{steps} steps of {ts} frames from frame {t0} do not fit trajectories {short} of split {split!r} "
            f"(they allow {min(room[i] for i in short)})"
        )
    params = np.stack([traj.params(i) for i in idx]).astype(np.float32)
    mask = np.stack([traj.mask(i) for i in idx])
    files = [traj.files[traj.index[i][0]] for i in idx]
    dt = float(spec["dt"])
    attrs = {
        "checkpoints": [os.fspath(c) for c in ckpts],
        "ensemble": "" if ensemble is None else os.fspath(ensemble),
        "card": dm.card.name,
        "card_hash": dm.card.hash,
        "checkpoint_card_hashes": [m.hparams.data_spec.get("card_hash") or "" for m in models],
        "split": split,
        "seed": seed,
        "start_frame": start,
        "time_step_frames": ts,
        "blowup": blowup,
        "projected": project not in (None, "none"),
        "projection": project if isinstance(project, str) else ("none" if project is None else "custom"),
        "sigma_g": float(sigma_g),
    }
    correction = as_correction(spread_correction)
    attrs["spread_correction"] = "" if correction is None else (
        os.fspath(spread_correction) if not isinstance(spread_correction, SpreadCorrection) else correction.source)
    table = member_table(models, samples)
    if correction is not None:
        if correction.steps < steps:
            raise SpreadCorrectionError(f"spread correction {attrs['spread_correction']}: covers "
                                        f"{correction.steps} steps, the rollout has {steps}")
        if len(table) < 2:
            raise SpreadCorrectionError(f"spread correction {attrs['spread_correction']}: needs an ensemble "
                                        f"of two or more members, the rollout has {len(table)}")
        if correction.members and correction.members != len(table):
            warnings.warn(f"spread correction {attrs['spread_correction']}: fitted on {correction.members} members, "
                          f"applied to {len(table)}: the spread of a few members is itself noisy, refit at this size",
                          UserWarning, stacklevel=2)
    if samples > 1 and len(table) < len(models) * samples:
        fixed = [str(c) for c, m in zip(ckpts, models) if not m.stochastic]
        warnings.warn(
            f"{', '.join(fixed)}: deterministic: each contributes one member (samples = {samples} "
            f"applies to stochastic models only); {len(table)} member{'s' if len(table) != 1 else ''} in all",
            UserWarning,
            stacklevel=2,
        )
    chunk = len(idx) if batch_size is None else int(batch_size)
    if chunk < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    score_list = list(DEFAULT_SCORES) + list(scores)
    start_times = [float(wf.time[t0]) for wf in files]  # each trajectory's t = 0 since its case began
    conservation = None
    if project is None or isinstance(project, str):
        conservation = RolloutConservation(dm.card, traj, idx, project or "none", sigma_g=sigma_g, dt=dt,
                                           t0=start_times)
        if conservation.active:
            score_list.append(conservation.score)
    key = run_key(ckpts, dm.card.hash, split, idx, steps, samples, start, seed, chunk, max_batch, blowup,
                  keep_members, attrs["projection"], float(sigma_g), [sorted(sc.outputs) for sc in score_list],
                  *([] if correction is None else [[round(float(f), 12) for f in correction.factors[: steps + 1]]]))
    out = Path(out)
    collector = RolloutCollector(
        steps=steps,
        dt=dt,
        channels=channels,
        coords={d: traj.files[0].coords[d] for d in traj.spatial_dims},
        n_members=len(table),
        samples=samples,
        member_labels=table,
        mask=mask,
        params=params,
        param_names=traj.param_names,
        trajectories=idx,
        trajectory_coords={
            "file": [wf.path.name for wf in files],
            "index_in_file": [traj.index[i][1] for i in idx],
            "t0": start_times,
        },
        keep_members=keep_members,
        attrs=attrs,
        scored=True,
        scores=score_list,
        path=out,
        run_key=key,
        spread_correction=correction,
    )
    if progress and collector.complete.any():
        print(f"{out}: continuing a partial rollout, {int(collector.complete.sum())} of {len(idx)} "
              f"trajectories already done", file=sys.stderr)
    mask_t = torch.from_numpy(mask) if traj.has_mask else None
    try:
        for a in range(0, len(idx), chunk):
            b = slice(a, min(a + chunk, len(idx)))
            if collector.complete[b].all():
                continue
            ids = idx[b]
            truth = TruthReader(traj, ids, t0, ts, steps)
            history = np.stack([traj.read(i, start, t0 + 1, ts) for i in ids])  # (b, h, C, *S)
            hook = project if conservation is None else conservation.begin(b, history[:, -1])
            collector.begin(b, history[:, -1], truth=truth(0))
            stream = rollout(
                models,
                torch.from_numpy(history),
                torch.from_numpy(params[b]),
                steps,
                samples=samples,
                mask=None if mask_t is None else mask_t[b],
                seed=seed + idx[a],  # by the batch's first trajectory: the same on any rank
                project=hook,
                blowup=blowup,
                progress=progress,
                max_batch=max_batch,
                dt=dt,
            )
            for step in stream:
                collector.update(step, batch=b, truth=truth(step.index))
            collector.end(b)
        ds = collector.dataset()
    finally:
        collector.close()
    if plots:
        write_plots(ds, out, plot_steps)
    return ds, summarize(ds)


def write_plots(ds: xr.Dataset, out: str | os.PathLike, plot_steps: Sequence[int] | None = None) -> None:
    """The plots of a results file ``out`` next to it (see :func:`run_rollout`)."""
    stem = Path(out).with_suffix("")
    steps = ds.sizes["time"] - 1
    chosen = default_plot_steps(steps) if plot_steps is None else list(plot_steps)
    plot_fields(ds, chosen, 0, 0, path=f"{stem}_fields.png")
    plot_error_curves(ds, path=f"{stem}_errors.png")
    if "crps" in ds:
        plot_calibration(ds, path=f"{stem}_calibration.png")
    if "conservation_rel" in ds:
        plot_conservation(ds, path=f"{stem}_conservation.png")
    if len([d for d in ds["mean"].dims if d not in ("trajectory", "time", "channel")]) == 1:
        plot_spacetime(ds, 0, 0, path=f"{stem}_spacetime.png")


def split_size(data: str, split: str, root: str | os.PathLike | None = None) -> int:
    """The number of trajectories in ``split`` of dataset ``data``."""
    return len(SciflowData(data, root=None if root is None else str(root)).trajectories(split))


class TruthReader:
    """The reference states of a batch of trajectories, read from disk a block of steps at a
    time, so a long rollout never holds its whole truth: ``reader(k) -> (b, C, *S)``.

    Args:
        traj: the split's trajectories.
        ids: trajectory indices of the batch.
        t0: stored frame of t = 0; ts: stored frames per model step; steps: the last step.
        block: model steps read at once.
    """

    def __init__(self, traj: Trajectories, ids: Sequence[int], t0: int, ts: int, steps: int, block: int = 16):
        self.traj, self.ids, self.t0, self.ts, self.steps, self.block = traj, list(ids), t0, ts, steps, block
        self.first, self.frames = -1, np.empty(0)

    def __call__(self, k: int) -> np.ndarray:
        if not 0 <= k <= self.steps:
            raise ValueError(f"step {k} outside 0..{self.steps}")
        held = self.frames.shape[1] if self.frames.ndim > 1 else 0
        if not self.first <= k < self.first + held:
            last = min(k + self.block, self.steps + 1)
            a, z = self.t0 + k * self.ts, self.t0 + (last - 1) * self.ts + 1
            self.frames = np.stack([self.traj.read(i, a, z, self.ts) for i in self.ids])  # (b, n, C, *S)
            self.first = k
        return self.frames[:, k - self.first]


def run_key(ckpts: Sequence[str | os.PathLike], *parts: Any) -> str:
    """A digest of a rollout's inputs (checkpoints by path, size and modification time, and
    ``parts``): a streamed result file is continued only by a rerun with the same key."""
    stamp = [(os.fspath(c), os.stat(c).st_size, os.stat(c).st_mtime_ns) for c in ckpts]
    text = json.dumps([stamp, sciflow.__version__, *parts], default=str)
    return hashlib.sha256(text.encode()).hexdigest()


__all__ = ["CardMismatchWarning", "TruthReader", "load_ensemble", "run_key", "run_rollout", "split_size",
           "write_plots"]

"""Pictures of particle rollout results (:mod:`sciflow.particle_results`): predicted vs true
particles at a few steps, and error / kinetic-energy curves, saved as PNG.

Built on ``matplotlib.figure.Figure`` (no pyplot, no screen) and written atomically, like
:mod:`sciflow.plots`, whose helpers they share.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from sciflow.plots import _save, default_plot_steps


def _open(results: str | os.PathLike | xr.Dataset) -> xr.Dataset:
    if isinstance(results, xr.Dataset):
        return results
    path = Path(results)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such results file")
    return xr.load_dataset(path, engine="h5netcdf")


def plot_particle_frames(results: str | os.PathLike | xr.Dataset, *, trajectory: int = 0,
                         steps: Sequence[int] | None = None, path: str | os.PathLike,
                         max_points: int = 20000) -> Path:
    """Rows of truth / prediction at a few model steps of one trajectory (2D data): fluid in
    blue, walls (kinematic types) in grey. Returns ``path``."""
    ds = _open(results)
    if ds.sizes["spatial"] != 2:
        raise ValueError(f"plot_particle_frames draws 2D clouds; the results have {ds.sizes['spatial']} coordinates")
    B = ds.sizes["trajectory"]
    if not -B <= trajectory < B:
        raise ValueError(f"trajectory position {trajectory} out of range: the results have {B} trajectories")
    one = ds.isel(trajectory=trajectory)
    n = int(one.n_particles)
    T = ds.sizes["time"] - 1
    chosen = default_plot_steps(T) if steps is None else [int(s) for s in steps]
    bad = [s for s in chosen if not 0 <= s <= T]
    if bad:
        raise ValueError(f"plot steps {bad} outside 0..{T}")
    types = one.particle_type.values[:n]
    fluid = types == 0
    every = max(1, n // max_points)
    size = float(np.clip(3000.0 / max(1, n // every), 0.3, 12.0))  # dots that fill a panel without clutter
    panels = [("truth", "truth")] if "truth" in ds else []
    panels.append(("prediction", "mean"))
    fig = Figure(figsize=(3.6 * len(chosen), 3.2 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), len(chosen), squeeze=False)
    x_all = one["mean"].values[:, :n]
    lo, hi = np.nanmin(x_all, axis=(0, 1)), np.nanmax(x_all, axis=(0, 1))
    for r, (label, var) in enumerate(panels):
        for c, k in enumerate(chosen):
            ax = axes[r, c]
            x = one[var].values[k, :n][::every]
            f = fluid[::every]
            ax.scatter(x[~f, 0], x[~f, 1], s=size, c="0.6", linewidths=0)
            ax.scatter(x[f, 0], x[f, 1], s=size, c="C0", linewidths=0)
            ax.set_xlim(lo[0], hi[0])
            ax.set_ylim(lo[1], hi[1])
            ax.set_aspect("equal")
            ax.set_title(f"{label}, step {k} (t = {float(ds.time[k]):.3g} s)", fontsize=8)
            ax.tick_params(labelsize=6)
    return _save(fig, path)


def plot_particle_errors(results: str | os.PathLike | xr.Dataset, *, path: str | os.PathLike) -> Path:
    """Position MSE (log scale) and kinetic energy (predicted dashed, true solid) against time,
    one line per trajectory; with an ensemble also spread and skill. Returns ``path``."""
    ds = _open(results)
    if "truth" not in ds:
        raise ValueError("plot_particle_errors: the results have no truth to score against")
    t = ds.time.values
    ensemble = "spread" in ds
    fig = Figure(figsize=(4.2 * (3 if ensemble else 2), 3.4), layout="constrained")
    axes = fig.subplots(1, 3 if ensemble else 2, squeeze=False)[0]
    for b in range(ds.sizes["trajectory"]):
        axes[0].plot(t[1:], ds.mse.values[b, 1:], color=f"C{b % 10}", lw=0.9)
        axes[1].plot(t, ds.e_kin_true.values[b], color=f"C{b % 10}", lw=1.2)
        axes[1].plot(t, ds.e_kin_pred.values[b], color=f"C{b % 10}", lw=1.2, ls="--")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("position MSE")
    axes[1].set_ylabel("kinetic energy (LagrangeBench units)")
    axes[1].set_title("true solid, predicted dashed", fontsize=8)
    if ensemble:
        with warnings.catch_warnings():  # t = 0 has no spread: a NaN column
            warnings.simplefilter("ignore", RuntimeWarning)
            axes[2].plot(t, np.sqrt(np.nanmean(ds.skill.values**2, axis=0)), color="C3", lw=2, label="skill")
            axes[2].plot(t, np.sqrt(np.nanmean(ds.spread.values**2, axis=0)), color="C0", lw=2, ls="--", label="spread")
        axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("time (s)")
    return _save(fig, path)


__all__ = ["plot_particle_errors", "plot_particle_frames"]

"""Pictures of a rollout dataset (see :mod:`sciflow.results`): fields, space-time diagrams and
error curves, saved as PNG.

Figures are built with ``matplotlib.figure.Figure`` and rendered by Agg, never through pyplot,
so nothing needs a screen and no global backend state is touched. Files are written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib import colormaps
from matplotlib.figure import Figure

from sciflow.data.format import atomic_path

_SOLID = "0.75"  # grey for cells outside the fluid


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def _channel(ds: xr.Dataset, channel: int | str) -> str:
    names = [str(c) for c in ds.channel.values]
    if isinstance(channel, str):
        if channel not in names:
            raise ValueError(f"channel {channel!r} not in the dataset's channels {names}")
        return channel
    if not -len(names) <= channel < len(names):
        raise ValueError(f"channel index {channel} out of range for channels {names}")
    return names[channel]


def _trajectory(ds: xr.Dataset, trajectory: int) -> xr.Dataset:
    n = ds.sizes["trajectory"]
    if not -n <= trajectory < n:
        raise ValueError(
            f"trajectory position {trajectory} out of range: the dataset has {n} trajectories"
        )
    return ds.isel(trajectory=trajectory)


def _edges(c: np.ndarray) -> tuple[float, float]:
    """Outer cell edges of cell-centred coordinates ``c`` (so pixels sit on their centres)."""
    c = np.asarray(c, dtype=float)
    if c.size < 2:
        return float(c[0]) - 0.5, float(c[0]) + 0.5
    return float(c[0] - (c[1] - c[0]) / 2), float(c[-1] + (c[-1] - c[-2]) / 2)


def _spatial_dims(ds: xr.Dataset) -> list[str]:
    return [d for d in ds["mean"].dims if d not in ("trajectory", "time", "channel")]


def default_plot_steps(n_steps: int, rows: int = 4) -> list[int]:
    """Up to ``rows`` model steps spread over ``1..n_steps`` (always the first and the last)."""
    if n_steps < 1:
        return [0]
    return sorted({int(round(v)) for v in np.linspace(1, n_steps, min(rows, n_steps))})


def _check_steps(ds: xr.Dataset, steps: Sequence[int] | None) -> list[int]:
    T = ds.sizes["time"]
    steps = default_plot_steps(T - 1) if steps is None else [int(s) for s in steps]
    bad = [s for s in steps if not 0 <= s < T]
    if bad or not steps:
        raise ValueError(f"plot steps {bad or steps} outside the rollout's steps 0..{T - 1}")
    return steps


def _panels(ds1: xr.Dataset, ch: str) -> list[tuple[str, xr.DataArray]]:
    """(title, (time, *S) field) columns: truth, prediction, |error|, std (ensembles)."""
    cols = []
    if "truth" in ds1:
        cols.append(("truth", ds1.truth.sel(channel=ch)))
    cols.append(("prediction", ds1["mean"].sel(channel=ch)))
    if "truth" in ds1:
        cols.append(("|error|", abs(ds1["mean"] - ds1.truth).sel(channel=ch)))
    if ds1.sizes.get("member", 1) > 1:
        cols.append(("ensemble std", ds1["std"].sel(channel=ch)))
    return cols


def _limits(a: np.ndarray, positive: bool) -> tuple[float, float]:
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (0.0, float(finite.max())) if positive else (float(finite.min()), float(finite.max()))
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5) if not positive else (0.0, max(hi, 1e-12))


def plot_fields(
    ds: xr.Dataset,
    steps: Sequence[int] | None = None,
    channel: int | str = 0,
    trajectory: int = 0,
    *,
    path: str | os.PathLike,
) -> Path:
    """Fields of one trajectory at chosen steps: rows = ``steps`` (model steps, default spread over
    the rollout), columns = truth / prediction (ensemble mean) / |error| (/ ensemble std).

    2D: maps with solid cells greyed out (``mask``), one colour scale per column (truth and
    prediction share theirs). 1D: one line plot per step (truth, mean, mean +- 2 std).
    ``trajectory`` is a position along the ``trajectory`` axis. Returns ``path``.
    """
    ch = _channel(ds, channel)
    ds1 = _trajectory(ds, trajectory)
    steps = _check_steps(ds, steps)
    dims = _spatial_dims(ds)
    if len(dims) == 1:
        return _plot_lines(ds1, steps, ch, dims[0], path)
    if len(dims) != 2:
        raise ValueError(f"plot_fields draws 1D or 2D fields, the dataset has spatial dims {dims}")
    cols = _panels(ds1, ch)
    mask = ds1["mask"].values if "mask" in ds1 else None
    xd, yd = dims
    x, y = ds[xd].values, ds[yd].values
    extent = (*_edges(x), *_edges(y))
    data = [
        (title, field.isel(time=steps).transpose("time", xd, yd).values) for title, field in cols
    ]
    # one scale per column; truth and prediction share theirs so they compare by eye
    limits = []
    joint = np.concatenate([d for t, d in data if t in ("truth", "prediction")])
    for title, d in data:
        limits.append(
            _limits(joint, False) if title in ("truth", "prediction") else _limits(d, True)
        )
    fig = Figure(figsize=(3.2 * len(cols), 2.8 * len(steps) + 0.6), layout="constrained")
    axes = fig.subplots(len(steps), len(cols), squeeze=False)
    for c, ((title, d), (lo, hi)) in enumerate(zip(data, limits)):
        cmap = colormaps["RdBu_r" if title in ("truth", "prediction") else "magma"].copy()
        cmap.set_bad(_SOLID)
        for r, k in enumerate(steps):
            a = d[r]
            if mask is not None:
                a = np.ma.masked_where(~mask.astype(bool), a)
            ax = axes[r, c]
            im = ax.imshow(
                np.ma.masked_invalid(a).T,
                origin="lower",
                extent=extent,
                cmap=cmap,
                vmin=lo,
                vmax=hi,
                aspect="equal",
                interpolation="nearest",
            )
            ax.set_title(f"{title}, t = {float(ds.time[k]):.4g} s", fontsize=9)
            ax.set_xlabel(xd)
            ax.set_ylabel(yd)
        fig.colorbar(im, ax=axes[:, c], location="bottom", shrink=0.8)
    fig.suptitle(f"{ch}, trajectory {ds1.trajectory.item()}")
    return _save(fig, path)


def _plot_lines(
    ds1: xr.Dataset, steps: list[int], ch: str, xd: str, path: str | os.PathLike
) -> Path:
    x = ds1[xd].values
    keep = ds1["mask"].values.astype(bool) if "mask" in ds1 else np.ones(x.shape, bool)
    fig = Figure(figsize=(7, 1.9 * len(steps) + 0.6), layout="constrained")
    axes = fig.subplots(len(steps), 1, squeeze=False)[:, 0]
    ensemble = ds1.sizes.get("member", 1) > 1
    for ax, k in zip(axes, steps):
        mean = np.where(keep, ds1["mean"].sel(channel=ch).isel(time=k).values, np.nan)
        if "truth" in ds1:
            ax.plot(
                x,
                np.where(keep, ds1.truth.sel(channel=ch).isel(time=k).values, np.nan),
                color="k",
                lw=1.2,
                label="truth",
            )
        ax.plot(x, mean, color="C0", lw=1.2, label="prediction")
        if ensemble:
            s = np.where(keep, ds1["std"].sel(channel=ch).isel(time=k).values, np.nan)
            ax.fill_between(
                x, mean - 2 * s, mean + 2 * s, color="C0", alpha=0.25, label="mean +- 2 std"
            )
        ax.set_title(f"t = {float(ds1.time[k]):.4g} s", fontsize=9)
        ax.set_ylabel(ch)
    axes[-1].set_xlabel(xd)
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle(f"{ch}, trajectory {ds1.trajectory.item()}")
    return _save(fig, path)


def plot_spacetime(
    ds: xr.Dataset, channel: int | str = 0, trajectory: int = 0, *, path: str | os.PathLike
) -> Path:
    """Space-time images (x across, time up) of a 1D rollout: truth / prediction / |error|
    (/ ensemble std). Returns ``path``."""
    ch = _channel(ds, channel)
    dims = _spatial_dims(ds)
    if len(dims) != 1:
        raise ValueError(f"plot_spacetime needs 1D fields, the dataset has spatial dims {dims}")
    xd = dims[0]
    ds1 = _trajectory(ds, trajectory)
    cols = _panels(ds1, ch)
    x, t = ds[xd].values, ds.time.values
    extent = (*_edges(x), *_edges(t))
    data = [(title, f.transpose("time", xd).values) for title, f in cols]
    joint = np.concatenate([d for title, d in data if title in ("truth", "prediction")])
    fig = Figure(figsize=(3.3 * len(cols), 4.2), layout="constrained")
    axes = fig.subplots(1, len(cols), squeeze=False)[0]
    for ax, (title, d) in zip(axes, data):
        shared = title in ("truth", "prediction")
        lo, hi = _limits(joint if shared else d, not shared)
        im = ax.imshow(
            np.ma.masked_invalid(d),
            origin="lower",
            extent=extent,
            aspect="auto",
            cmap="RdBu_r" if shared else "magma",
            vmin=lo,
            vmax=hi,
            interpolation="nearest",
        )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xd)
        fig.colorbar(im, ax=ax, location="bottom", shrink=0.8)
    axes[0].set_ylabel("time (s)")
    fig.suptitle(f"{ch}, trajectory {ds1.trajectory.item()}")
    return _save(fig, path)


def plot_error_curves(ds: xr.Dataset, *, path: str | os.PathLike) -> Path:
    """NMSE (log scale) and correlation of the ensemble mean against time: one thin line per
    trajectory, the mean over trajectories thick. With an ensemble, also the spread and the
    skill (RMSE of the mean) against time and a spread-vs-error scatter (calibrated on the
    diagonal). Returns ``path``."""
    if "nmse" not in ds or "correlation" not in ds:
        raise ValueError(
            "plot_error_curves: the dataset has no scores (it was collected without truth)"
        )
    ensemble = "spread" in ds
    t = ds.time.values
    fig = Figure(figsize=(4.2 * (4 if ensemble else 2), 3.6), layout="constrained")
    axes = fig.subplots(1, 4 if ensemble else 2, squeeze=False)[0]
    later = slice(1, None)  # t = 0 scores 0 and has no place on a log axis
    for ax, name, log in ((axes[0], "nmse", True), (axes[1], "correlation", False)):
        v = ds[name].transpose("trajectory", "time").values
        sl = later if log else slice(None)
        for row in v:
            ax.plot(t[sl], row[sl], color="C0", lw=0.6, alpha=0.4)
        with np.errstate(invalid="ignore"):
            ax.plot(
                t[sl], np.nanmean(v, axis=0)[sl], color="C3", lw=2.2, label="mean over trajectories"
            )
        ax.set_xlabel("time (s)")
        ax.set_ylabel(name)
        if log:
            ax.set_yscale("log")
    axes[1].axhline(0.8, color="0.5", ls=":", lw=1)
    axes[0].legend(fontsize=8)
    if ensemble:
        spread = np.sqrt(np.nanmean(ds.spread.values**2, axis=0))
        skill = np.sqrt(np.nanmean(ds.skill.values**2, axis=0))
        axes[2].plot(t, skill, color="C3", lw=2, label="skill (RMSE of mean)")
        axes[2].plot(t, spread, color="C0", lw=2, ls="--", label="spread")
        axes[2].set_xlabel("time (s)")
        axes[2].legend(fontsize=8)
        s, e = ds.spread.values[:, later].ravel(), ds.skill.values[:, later].ravel()
        ok = np.isfinite(s) & np.isfinite(e)
        sc = axes[3].scatter(
            e[ok],
            s[ok],
            c=np.broadcast_to(t[later], ds.spread.values[:, later].shape).ravel()[ok],
            s=8,
            cmap="viridis",
        )
        top = float(max(s[ok].max(initial=0), e[ok].max(initial=0))) or 1.0
        axes[3].plot([0, top], [0, top], color="0.4", ls=":", lw=1)
        axes[3].set_xlabel("error (RMSE of mean)")
        axes[3].set_ylabel("spread")
        axes[3].set_title("spread vs error", fontsize=9)
        fig.colorbar(sc, ax=axes[3], label="time (s)")
    return _save(fig, path)


__all__ = ["default_plot_steps", "plot_error_curves", "plot_fields", "plot_spacetime"]

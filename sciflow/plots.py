"""Pictures of a rollout dataset (see :mod:`sciflow.results`): fields, space-time diagrams, error
curves and the calibration of an ensemble, saved as PNG.

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
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter

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


def _readable_ticks(ax: Axes, n: int = 4) -> None:
    """At most ``n`` ticks per axis with short labels (a power of ten goes to the axis end),
    so that small panels of physical coordinates (0.000 ... 0.010 m) do not overlap."""
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(n))
        fmt = ScalarFormatter(useMathText=True)
        fmt.set_powerlimits((-2, 3))
        axis.set_major_formatter(fmt)


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
            _readable_ticks(ax)
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
        _readable_ticks(ax)
        fig.colorbar(im, ax=ax, location="bottom", shrink=0.8)
    axes[0].set_ylabel("time (s)")
    fig.suptitle(f"{ch}, trajectory {ds1.trajectory.item()}")
    return _save(fig, path)


def plot_error_curves(ds: xr.Dataset, *, path: str | os.PathLike) -> Path:
    """NMSE (log scale) and correlation of the ensemble mean against time: one thin line per
    trajectory, the mean over trajectories thick, and (dashed) copying the initial state, the
    baseline a model has to beat. Returns ``path``."""
    if "nmse" not in ds or "correlation" not in ds:
        raise ValueError(
            "plot_error_curves: the dataset has no scores (it was collected without truth)"
        )
    t = ds.time.values
    fig = Figure(figsize=(8.4, 3.6), layout="constrained")
    axes = fig.subplots(1, 2, squeeze=False)[0]
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
        ax.xaxis.set_major_locator(MaxNLocator(5))
        if log:
            ax.set_yscale("log")
    if "nmse_copy" in ds:
        with np.errstate(invalid="ignore"):
            copy = np.nanmean(ds.nmse_copy.transpose("trajectory", "time").values, axis=0)
        axes[0].plot(t[later], copy[later], color="0.3", lw=1.5, ls="--", label="copy the initial state")
    axes[1].axhline(0.8, color="0.5", ls=":", lw=1)
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def plot_conservation(ds: xr.Dataset, *, path: str | os.PathLike) -> Path:
    """Relative conservation error (log scale) against time, one panel per law: the worst living
    member of each trajectory thin, the largest over trajectories thick, and the float64
    round-off level dotted. Returns ``path``."""
    if "conservation_rel" not in ds:
        raise ValueError("plot_conservation: the dataset has no conservation scores (the card names no laws)")
    laws = [str(n) for n in ds.law.values]
    t = ds.time.values
    fig = Figure(figsize=(4.2 * len(laws), 3.4), layout="constrained")
    axes = fig.subplots(1, len(laws), squeeze=False)[0]
    projection = ds.attrs.get("projection", "none")
    tiny = 1e-18  # exact zeros (a law that holds to the last bit) drawn at the bottom of the axis
    for ax, law in zip(axes, laws):
        v = ds.conservation_rel.sel(law=law).transpose("trajectory", "time").values
        for row in v:
            ax.plot(t, np.maximum(row, tiny), color="C0", lw=0.6, alpha=0.4)
        with np.errstate(invalid="ignore"):
            worst = np.nanmax(np.where(np.isnan(v), -np.inf, v), axis=0)
        ax.plot(t, np.maximum(worst, tiny), color="C3", lw=2.0, label="worst trajectory")
        ax.axhline(np.finfo(np.float64).eps, color="0.5", ls=":", lw=1, label="float64 epsilon")
        ax.set_yscale("log")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("relative error")
        ax.set_title(f"{law} (projection: {projection})", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(5))
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def _rms_over_trajectories(v: xr.DataArray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.nanmean(v.transpose("trajectory", "time").values ** 2, axis=0))


def plot_calibration(ds: xr.Dataset, *, path: str | os.PathLike) -> Path:
    """How far an ensemble's uncertainty can be trusted, four panels: spread and skill (RMSE of
    the mean) against time (calibrated: equal); fair CRPS and the mean's MAE against time (the
    ensemble is worth its members where its CRPS is below the MAE); the reliability diagram
    pooled over the rollout (calibrated: on the diagonal), with the 50 / 90 % coverage; the
    rank histogram pooled over the rollout (calibrated: flat). Returns ``path``."""
    need = [n for n in ("spread", "skill", "crps", "reliability", "rank_histogram") if n not in ds]
    if need:
        raise ValueError(f"plot_calibration: the dataset lacks {need} (an ensemble of >= 2 members "
                         f"with truth is needed)")
    t = ds.time.values
    later = slice(1, None)
    fig = Figure(figsize=(15.5, 3.7), layout="constrained")
    ax = fig.subplots(1, 4, squeeze=False)[0]
    ax[0].plot(t[later], _rms_over_trajectories(ds.skill)[later], color="C3", lw=2, label="skill (RMSE of mean)")
    ax[0].plot(t[later], _rms_over_trajectories(ds.spread)[later], color="C0", lw=2, ls="--", label="spread")
    ax[0].set_title("spread and skill", fontsize=9)
    with np.errstate(invalid="ignore"):
        crps = np.nanmean(ds.crps.transpose("trajectory", "time").values, axis=0)
        mae = np.nanmean(ds.mae.transpose("trajectory", "time").values, axis=0) if "mae" in ds else None
    ax[1].plot(t[later], crps[later], color="C0", lw=2, label="fair CRPS")
    if mae is not None:
        ax[1].plot(t[later], mae[later], color="C3", lw=1.5, ls="--", label="MAE of the mean")
    ax[1].set_title("CRPS (lower is better)", fontsize=9)
    for a in ax[:2]:
        a.set_xlabel("time (s)")
        a.xaxis.set_major_locator(MaxNLocator(5))
        a.legend(fontsize=8)
    rest = ds.isel(time=later)
    p = ds.probability.values
    with np.errstate(invalid="ignore"):
        obs = np.nanmean(rest.reliability.values.reshape(-1, p.size), axis=0)
        hist = np.nanmean(rest.rank_histogram.values.reshape(-1, ds.sizes["rank"]), axis=0)
    ax[2].plot([0, 1], [0, 1], color="0.5", ls=":", lw=1)
    ax[2].plot(p, obs, "o-", color="C0", ms=3)
    if "coverage" in ds:
        with np.errstate(invalid="ignore"):
            cov = np.nanmean(rest.coverage.values.reshape(-1, ds.sizes["coverage_level"]), axis=0)
        text = ", ".join(f"{lv:.0%}: {c:.0%}" for lv, c in zip(ds.coverage_level.values, cov))
        ax[2].text(0.03, 0.93, f"coverage {text}", transform=ax[2].transAxes, fontsize=8, va="top")
    ax[2].set_xlabel("nominal probability")
    ax[2].set_ylabel("observed frequency")
    ax[2].set_title("reliability (rank-based PIT)", fontsize=9)
    ranks = ds["rank"].values
    ax[3].bar(ranks, hist, color="C0", width=0.8)
    ax[3].axhline(1 / ranks.size, color="0.3", ls="--", lw=1, label="calibrated")
    ax[3].set_xlabel("rank of the truth among the members")
    ax[3].set_title("rank histogram", fontsize=9)
    ax[3].xaxis.set_major_locator(MaxNLocator(8, integer=True))
    ax[3].legend(fontsize=8)
    fig.suptitle(f"{ds.sizes['member']} members, {ds.sizes['trajectory']} trajectories")
    return _save(fig, path)


__all__ = [
    "default_plot_steps",
    "plot_calibration",
    "plot_conservation",
    "plot_error_curves",
    "plot_fields",
    "plot_spacetime",
]

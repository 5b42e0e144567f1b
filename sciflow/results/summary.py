"""A rollout's results as plain numbers (``metrics.json``, the command's output)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from sciflow import metrics

THRESHOLDS = (0.8, 0.9, 0.95)
# per-step scores of the ensemble mean summarised as mean / step 1 / last step
MEAN_SCORES = ("nmse", "nrmse", "vrmse", "correlation", "mae", "nmse_copy")


def _plain(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _ratio_of_means(num: xr.DataArray, den: xr.DataArray) -> float | None:
    n, d = float(num.mean(skipna=False)), float(den.mean(skipna=False))
    return _plain(np.sqrt(n / d)) if d > 0 else None


def _times(out: dict[str, Any], prefix: str, corr: np.ndarray, times: np.ndarray,
           thresholds: Sequence[float]) -> None:
    """First time the trajectory-mean correlation ``corr (T, B)`` drops below each threshold,
    and whether that time is censored (never dropped: the time is a lower bound)."""
    c = torch.from_numpy(np.nan_to_num(corr, nan=0.0))
    t = torch.from_numpy(times.astype(np.float64))
    for th in thresholds:
        value, censored = metrics.high_correlation_time(c, t, th, return_censored=True)
        out[f"{prefix}_{th:g}"] = _plain(value)
        out[f"{prefix}_{th:g}_censored"] = bool(censored)


def summarize(ds: xr.Dataset, thresholds: Sequence[float] = THRESHOLDS) -> dict[str, Any]:
    """Plain numbers for ``metrics.json``.

    - ``trajectories``, ``steps``, ``members``, ``dt``; ``alive_fraction_last`` and
      ``stopped_trajectories`` (no member left at the end);
    - for ``nmse``, ``nrmse``, ``vrmse``, ``correlation``, ``mae`` and the copy-the-input
      baseline ``nmse_copy``: the mean over trajectories averaged over steps ``1..T``
      (``*_mean``), at step 1 (``*_step1``) and at the last step (``*_last``);
      ``nmse_step1_vs_copy``: the model's step-1 NMSE over copying the initial state (below 1:
      the model beats persistence at the first step);
    - ``high_correlation_time_<th>`` (s): the first time the trajectory-mean correlation drops
      below ``th``, and ``high_correlation_time_<th>_censored``: True when it never dropped
      within the rollout, so the time (the last one) is only a lower bound, ``>=`` that;
    - with an ensemble: ``crps_mean`` / ``crps_last``; ``spread_skill`` (ratio of the averaged
      squared spread and skill) and ``spread_skill_last``; ``coverage_<level>_mean`` /
      ``_last`` and ``interval_width_<level>_mean``; ``reliability`` (observed frequency at each
      of ``reliability_levels``, pooled over trajectories and steps ``1..T``) and
      ``calibration_error`` (its RMS gap to the diagonal); ``rank_histogram`` pooled likewise
      (over the steps and trajectories where every member is alive);
      ``sample_decorrelation_time_<th>`` (and ``_censored``).

    - with conservation laws (``conservation_rel``): ``projection`` (the method) and, per law,
      ``conservation_rel_max`` (the largest relative error over trajectories, living members and
      steps ``1..T``) and ``conservation_rel_last`` (at the last step).

    Means do not skip NaN: a trajectory whose members all blew up (or, for ensemble scores, with
    fewer than two members left) makes the mean None rather than silently better; for the
    correlation times it counts as decorrelated from then on.
    """
    T = ds.sizes["time"]
    M = ds.sizes.get("member", 1)
    out: dict[str, Any] = {
        "trajectories": int(ds.sizes["trajectory"]),
        "steps": int(T - 1),
        "members": int(M),
        "dt": float(ds.attrs["dt"]) if "dt" in ds.attrs else (float(ds.time[1] - ds.time[0]) if T > 1 else None),
    }
    if "alive" in ds:
        last_alive = ds.alive.isel(time=-1)
        out["alive_fraction_last"] = _plain(last_alive.mean())
        out["stopped_trajectories"] = int((~last_alive.any("member")).sum())
    if "conservation_rel" in ds:
        later_rel = ds.conservation_rel.isel(time=slice(1, None)) if T > 1 else ds.conservation_rel
        out["projection"] = str(ds.attrs.get("projection", "none"))
        out["conservation_rel_max"] = {str(law): _plain(later_rel.sel(law=law).max(skipna=True))
                                       for law in ds.law.values}
        out["conservation_rel_last"] = {str(law): _plain(ds.conservation_rel.sel(law=law).isel(time=-1).max())
                                        for law in ds.law.values}
    if T < 2 or "nmse" not in ds:
        return out
    later = ds.isel(time=slice(1, None))
    for name in MEAN_SCORES:
        if name in ds:
            out[f"{name}_mean"] = _plain(later[name].mean(skipna=False).values)
            out[f"{name}_step1"] = _plain(ds[name].isel(time=1).mean(skipna=False).values)
            out[f"{name}_last"] = _plain(ds[name].isel(time=-1).mean(skipna=False).values)
    if out.get("nmse_step1") is not None and out.get("nmse_copy_step1"):
        out["nmse_step1_vs_copy"] = out["nmse_step1"] / out["nmse_copy_step1"]
    times = ds.time.values
    _times(out, "high_correlation_time", ds.correlation.transpose("time", "trajectory").values, times, thresholds)
    if "crps" not in ds:
        return out
    out["crps_mean"] = _plain(later.crps.mean(skipna=False).values)
    out["crps_last"] = _plain(ds.crps.isel(time=-1).mean(skipna=False).values)
    out["spread_skill"] = _ratio_of_means(later.spread**2, later.skill**2)
    last = ds.isel(time=-1)
    out["spread_skill_last"] = _ratio_of_means(last.spread**2, last.skill**2)
    if "coverage" in ds:
        for level in ds.coverage_level.values:
            cov = ds.coverage.sel(coverage_level=level)
            out[f"coverage_{level:g}_mean"] = _plain(cov.isel(time=slice(1, None)).mean(skipna=False))
            out[f"coverage_{level:g}_last"] = _plain(cov.isel(time=-1).mean(skipna=False))
            width = ds.interval_width.sel(coverage_level=level).isel(time=slice(1, None))
            out[f"interval_width_{level:g}_mean"] = _plain(width.mean(skipna=False))
    if "reliability" in ds:
        rel = later.reliability.mean(("trajectory", "time"), skipna=False)
        levels = ds.probability.values
        out["reliability_levels"] = [float(p) for p in levels]
        out["reliability"] = [_plain(v) for v in rel.values]
        err = metrics.calibration_error(torch.tensor(levels), torch.tensor(np.asarray(rel.values)))
        out["calibration_error"] = _plain(err)
    if "rank_histogram" in ds:
        hist = later.rank_histogram.mean(("trajectory", "time"), skipna=True)
        out["rank_histogram"] = [_plain(v) for v in hist.values]
    _times(out, "sample_decorrelation_time", ds.sample_correlation.transpose("time", "trajectory").values,
           times, thresholds)
    return out


__all__ = ["THRESHOLDS", "summarize"]

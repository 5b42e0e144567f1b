"""Rollout results as an ``xarray.Dataset``: a streaming collector, a netCDF writer and reader, and
a summary of plain numbers.

Layout of the dataset (``S`` = the spatial dims, ``x`` or ``x, y``):

- coordinates ``time`` (seconds from the initial condition, t = 0 included), ``step`` (along
  ``time``), ``trajectory``, ``channel`` (names), the spatial dims with their values, ``member``
  (with ``member_model`` and ``member_sample``) and ``param`` (names);
- fields ``truth``, ``mean``, ``std``: ``(trajectory, time, channel, *S)``, and ``members``:
  ``(member, trajectory, time, channel, *S)`` when kept; ``mask``: ``(trajectory, *S)``;
  ``params``: ``(trajectory, param)``; ``alive``: ``(member, trajectory, time)``;
- per-step, per-trajectory scores of the ensemble mean ``nmse``, ``nrmse``, ``vrmse``,
  ``correlation`` (each computed per stored field, vector components pooled, then averaged
  over fields: fields carry different units) and, with two or more members, ``crps``, ``spread``, ``skill``,
  ``spread_skill``, ``sample_correlation``: ``(trajectory, time)``.

Ensemble statistics use the members that are still alive; ``std`` is the unbiased ensemble
standard deviation (0 for one member). Scores come from :mod:`sciflow.metrics`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

import sciflow
from sciflow import metrics
from sciflow.data.format import atomic_path
from sciflow.data.reader import field_groups
from sciflow.rollout import Step

FIELD_VARS = ("truth", "mean", "std")
SCORES = ("nmse", "nrmse", "vrmse", "correlation")
ENSEMBLE_SCORES = ("crps", "spread", "skill", "spread_skill", "sample_correlation")
THRESHOLDS = (0.8, 0.9, 0.95)
# attributes netCDF cannot hold as they are (lists, dicts, booleans, None) travel as JSON
_JSON_ATTRS = "sciflow_json_attrs"


def _np(x: Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


class RolloutCollector:
    """Consume the :class:`~sciflow.rollout.Step` s of a rollout and build its dataset.

    Args:
        initial: ``(B, C, *S)`` state at t = 0 (the last history frame).
        steps: model steps that will be collected.
        dt: seconds per model step.
        channels: the ``C`` channel names.
        coords: spatial dim name -> coordinate values, in axis order (``x`` first).
        n_members: ensemble size ``M``.
        samples: samples per model (labels members ``member_model``, ``member_sample`` as
            ``m // samples``, ``m % samples``) when ``member_labels`` is not given.
        member_labels: ``(model, sample)`` of each member (:func:`sciflow.rollout.member_table`).
        truth: ``(B, steps + 1, C, *S)`` reference states from t = 0, or None.
        mask: ``(B, *S)`` bool fluid cells, or None (all cells count).
        params, param_names: ``(B, P)`` operating parameters and their names.
        trajectories: labels of the ``B`` trajectories (default ``0..B-1``).
        trajectory_coords: extra per-trajectory coordinates, name -> ``(B,)`` values.
        keep_members: store every member's states (``M`` times the memory of ``mean``).
        attrs: dataset attributes (checkpoints, card, seed, ...).
    """

    def __init__(
        self,
        initial: Tensor | np.ndarray,
        *,
        steps: int,
        dt: float,
        channels: Sequence[str],
        coords: Mapping[str, Sequence[float] | np.ndarray],
        n_members: int = 1,
        samples: int | None = None,
        member_labels: Sequence[tuple[int, int]] | None = None,
        truth: Tensor | np.ndarray | None = None,
        mask: Tensor | np.ndarray | None = None,
        params: Tensor | np.ndarray | None = None,
        param_names: Sequence[str] | None = None,
        trajectories: Sequence[int] | None = None,
        trajectory_coords: Mapping[str, Sequence[Any]] | None = None,
        keep_members: bool = False,
        attrs: Mapping[str, Any] | None = None,
    ):
        init = _np(initial).astype(np.float32)
        self.dims = list(coords)
        S = tuple(len(coords[d]) for d in self.dims)
        if init.ndim != 2 + len(S) or init.shape[1] != len(channels) or tuple(init.shape[2:]) != S:
            raise ValueError(
                f"RolloutCollector: initial must be (B, C={len(channels)}, *S={S}), got {init.shape}"
            )
        B, C = init.shape[:2]
        T = steps + 1
        self.B, self.C, self.S, self.T, self.M = B, C, S, T, int(n_members)
        self.steps, self.dt = int(steps), float(dt)
        self.samples = self.M if samples is None else int(samples)
        if member_labels is None:
            if self.M % self.samples:
                raise ValueError(
                    f"RolloutCollector: n_members {self.M} is not a multiple of samples {self.samples}"
                )
            member_labels = [(m // self.samples, m % self.samples) for m in range(self.M)]
        if len(member_labels) != self.M:
            raise ValueError(
                f"RolloutCollector: {len(member_labels)} member labels for n_members {self.M}"
            )
        self.member_labels = np.asarray(member_labels, dtype=np.int64).reshape(self.M, 2)
        self.channels, self.coords = list(channels), {d: np.asarray(coords[d]) for d in self.dims}
        self.field_groups = field_groups(self.channels, self.dims)
        self.truth = None if truth is None else _np(truth).astype(np.float32)
        if self.truth is not None and self.truth.shape != (B, T, C, *S):
            raise ValueError(
                f"RolloutCollector: truth must be (B, steps + 1, C, *S) = {(B, T, C, *S)}, "
                f"got {self.truth.shape}"
            )
        self.mask = None if mask is None else _np(mask).astype(bool)
        if self.mask is not None and self.mask.shape != (B, *S):
            raise ValueError(
                f"RolloutCollector: mask must be (B, *S) = {(B, *S)}, got {self.mask.shape}"
            )
        self.params = None if params is None else _np(params).astype(np.float64)
        if self.params is not None:
            names = (
                list(param_names)
                if param_names is not None
                else [f"p{i}" for i in range(self.params.shape[-1])]
            )
            if self.params.shape != (B, len(names)):
                raise ValueError(
                    f"RolloutCollector: params must be (B, P) = {(B, len(names))}, got {self.params.shape}"
                )
            self.param_names = names
        self.trajectories = list(range(B)) if trajectories is None else list(trajectories)
        if len(self.trajectories) != B:
            raise ValueError(
                f"RolloutCollector: {len(self.trajectories)} trajectory labels for B={B}"
            )
        self.trajectory_coords = {k: list(v) for k, v in (trajectory_coords or {}).items()}
        self.keep_members = keep_members
        self.attrs = dict(attrs or {})

        self.mean = np.full((B, T, C, *S), np.nan, np.float32)
        self.std = np.full((B, T, C, *S), np.nan, np.float32)
        self.members = np.full((self.M, B, T, C, *S), np.nan, np.float32) if keep_members else None
        self.alive = np.zeros((self.M, B, T), bool)
        names = SCORES + (ENSEMBLE_SCORES if self.M > 1 else ())
        self.scores = {n: np.full((B, T), np.nan) for n in names} if self.truth is not None else {}
        self.filled = np.zeros((B, T), bool)
        init_t = torch.from_numpy(init)
        self._record(
            0,
            init_t.unsqueeze(0).expand(self.M, *init_t.shape),
            torch.ones(self.M, B, dtype=torch.bool),
            slice(0, B),
        )

    def update(self, step: Step, batch: slice | None = None) -> None:
        """Record one step. ``batch`` places a step of a rollout over a subset of the
        trajectories (chunked evaluation); default all of them."""
        batch = slice(0, self.B) if batch is None else batch
        n = len(range(*batch.indices(self.B)))
        want = (self.M, n, self.C, *self.S)
        if tuple(step.members.shape) != want:
            raise ValueError(
                f"RolloutCollector: step {step.index} members {tuple(step.members.shape)}, expected {want}"
            )
        if not 1 <= step.index <= self.steps:
            raise ValueError(f"RolloutCollector: step index {step.index} outside 1..{self.steps}")
        self._record(step.index, step.members, step.alive, batch)

    def _record(self, k: int, members: Tensor, alive: Tensor, batch: slice) -> None:
        x = members.detach().to("cpu", torch.float64)
        alive = alive.detach().cpu().bool()
        a = alive.view(*alive.shape, *([1] * (x.ndim - 2))).to(x.dtype)
        n = alive.sum(0).view(-1, *([1] * (x.ndim - 2))).to(x.dtype)  # (b, 1, ...)
        xz = torch.where(a > 0, x, torch.zeros_like(x))
        mean = xz.sum(0) / n  # NaN where no member is alive
        var = (a * (xz - mean) ** 2).sum(0) / (n - 1).clamp_min(1)
        std = torch.where(n > 1, var.sqrt(), torch.where(n > 0, 0.0, torch.nan))
        self.mean[batch, k] = mean.numpy()
        self.std[batch, k] = std.numpy()
        if self.members is not None:
            self.members[:, batch, k] = x.numpy()
        self.alive[:, batch, k] = alive.numpy()
        self.filled[batch, k] = True
        if self.truth is None:
            return
        y = torch.from_numpy(self.truth[batch, k]).double()
        m = None if self.mask is None else torch.from_numpy(self.mask[batch])
        # field by field (vector components pooled), then averaged: fields carry different units
        groups = list(self.field_groups.values())
        field_nmse = metrics.grouped_nmse(mean, y, groups, m)
        self.scores["nmse"][batch, k] = field_nmse.mean(-1).numpy()
        self.scores["nrmse"][batch, k] = field_nmse.sqrt().mean(-1).numpy()
        self.scores["vrmse"][batch, k] = metrics.vrmse(mean, y, m).numpy()
        corr = [metrics.pearson_correlation(mean[:, g], y[:, g], m) for g in groups]
        self.scores["correlation"][batch, k] = torch.stack(corr, -1).mean(-1).numpy()
        if self.M > 1:
            for name, v in _ensemble_scores(x, y, m, alive).items():
                self.scores[name][batch, k] = v

    def dataset(self) -> xr.Dataset:
        """The collected results; raises if some step was never recorded."""
        if not self.filled.all():
            b, t = np.argwhere(~self.filled)[0]
            raise ValueError(
                f"RolloutCollector: step {t} of trajectory {self.trajectories[b]} was never recorded"
            )
        sd = tuple(self.dims)
        field_dims = ("trajectory", "time", "channel", *sd)
        coords: dict[str, Any] = {
            "time": (
                "time",
                np.arange(self.T) * self.dt,
                {"units": "s", "long_name": "time since the initial condition"},
            ),
            "step": ("time", np.arange(self.T)),
            "trajectory": ("trajectory", np.asarray(self.trajectories)),
            "channel": ("channel", np.asarray(self.channels, dtype=object)),
            "member": ("member", np.arange(self.M)),
            "member_model": ("member", self.member_labels[:, 0]),
            "member_sample": ("member", self.member_labels[:, 1]),
            **{d: (d, self.coords[d]) for d in sd},
            **{k: ("trajectory", np.asarray(v)) for k, v in self.trajectory_coords.items()},
        }
        data: dict[str, Any] = {
            "mean": (field_dims, self.mean, {"long_name": "ensemble mean"}),
            "std": (field_dims, self.std, {"long_name": "ensemble standard deviation (unbiased)"}),
            "alive": (("member", "trajectory", "time"), self.alive),
        }
        if self.truth is not None:
            data["truth"] = (field_dims, self.truth)
        if self.members is not None:
            data["members"] = (("member", *field_dims), self.members)
        if self.mask is not None:
            data["mask"] = (("trajectory", *sd), self.mask)
        if self.params is not None:
            coords["param"] = ("param", np.asarray(self.param_names, dtype=object))
            data["params"] = (("trajectory", "param"), self.params)
        for name, v in self.scores.items():
            data[name] = (("trajectory", "time"), v)
        attrs = {
            "sciflow_version": sciflow.__version__,
            "dt": self.dt,
            "steps": self.steps,
            "n_members": self.M,
            "samples": self.samples,
            **self.attrs,
        }
        return xr.Dataset(data, coords=coords, attrs=attrs)


def _ensemble_scores(
    x: Tensor, y: Tensor, mask: Tensor | None, alive: Tensor
) -> dict[str, np.ndarray]:
    """CRPS, spread, skill, their ratio and the inter-member correlation of ``x: (M, b, C, *S)``
    against ``y: (b, C, *S)``, over the alive members of each trajectory: ``(b,)`` each."""
    b = y.shape[0]
    out = {n: np.full(b, np.nan) for n in ENSEMBLE_SCORES}
    full = alive.all(0)

    def put(idx: Tensor | list[int], xs: Tensor, ys: Tensor, ms: Tensor | None) -> None:
        spread2, skill2 = metrics.spread_skill_terms(xs, ys, ms)
        out["crps"][idx] = metrics.crps_ensemble(xs, ys, ms).numpy()
        out["spread"][idx] = spread2.sqrt().numpy()
        out["skill"][idx] = skill2.sqrt().numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            out["spread_skill"][idx] = np.sqrt(spread2.numpy() / skill2.numpy())
        out["sample_correlation"][idx] = metrics.sample_decorrelation(xs, ms).numpy()

    idx = torch.nonzero(full).flatten()
    if len(idx):
        put(idx.numpy(), x[:, idx], y[idx], None if mask is None else mask[idx])
    for j in torch.nonzero(~full).flatten().tolist():
        keep = alive[:, j]
        if int(keep.sum()) >= 2:
            put([j], x[keep][:, j : j + 1], y[j : j + 1], None if mask is None else mask[j : j + 1])
    return out


# -- files --------------------------------------------------------------------------------------------
def _encode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    as_json = []
    for k, v in attrs.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, str) or (isinstance(v, int | float) and not isinstance(v, bool)):
            out[k] = v
        else:
            try:
                out[k] = json.dumps(v)
            except TypeError:
                raise ValueError(
                    f"attribute {k!r} = {v!r} cannot be stored (not JSON-serialisable)"
                ) from None
            as_json.append(k)
    if as_json:
        out[_JSON_ATTRS] = json.dumps(as_json)
    return out


def _decode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    as_json = set(json.loads(attrs.get(_JSON_ATTRS, "[]")))
    out = {}
    for k, v in attrs.items():
        if k == _JSON_ATTRS:
            continue
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = json.loads(v) if k in as_json else v
    return out


def write_results(ds: xr.Dataset, path: str | os.PathLike, *, compress: bool = True) -> Path:
    """Write ``ds`` to netCDF (engine ``h5netcdf``) atomically: a temporary file renamed into place.

    Attributes netCDF cannot hold (lists, dicts, booleans, None) are stored as JSON and restored
    by :func:`read_results`. ``compress``: gzip the field variables.
    """
    path = Path(path)
    out = ds.copy()
    out.attrs = _encode_attrs(ds.attrs)
    encoding = {}
    if compress:
        for name, var in out.data_vars.items():
            if var.ndim >= 3 and var.dtype.kind == "f":
                encoding[name] = {"compression": "gzip", "compression_opts": 4}
    with atomic_path(path) as tmp:
        out.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
    return path


def read_results(path: str | os.PathLike) -> xr.Dataset:
    """Load a dataset written by :func:`write_results` fully into memory (the file is closed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such results file")
    ds = xr.load_dataset(path, engine="h5netcdf")
    ds.attrs = _decode_attrs(ds.attrs)
    return ds


# -- summary --------------------------------------------------------------------------------------------
def _plain(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def summarize(
    ds: xr.Dataset, thresholds: Sequence[float] = THRESHOLDS
) -> dict[str, float | int | None]:
    """Plain numbers for ``metrics.json``: means over trajectories of the scores averaged over
    steps ``1..T`` (``*_mean``), at step 1 (``*_step1``) and at the last step (``*_last``); the
    high-correlation times (s) at ``thresholds``; with an ensemble the CRPS, the spread-skill
    ratio (ratio of the averaged squared spread and skill) and the time the members decorrelate
    from each other; ``alive_fraction_last`` and ``stopped_trajectories`` (no member left).

    Means do not skip NaN: a trajectory whose members all blew up (or, for ensemble scores, with
    fewer than two members left) makes the mean None rather than silently better; for the
    correlation times it counts as decorrelated from then on.
    """
    T = ds.sizes["time"]
    M = ds.sizes.get("member", 1)
    out: dict[str, float | int | None] = {
        "trajectories": int(ds.sizes["trajectory"]),
        "steps": int(T - 1),
        "members": int(M),
        "dt": float(ds.attrs["dt"])
        if "dt" in ds.attrs
        else (float(ds.time[1] - ds.time[0]) if T > 1 else None),
    }
    if "alive" in ds:
        last_alive = ds.alive.isel(time=-1)
        out["alive_fraction_last"] = _plain(last_alive.mean())
        out["stopped_trajectories"] = int((~last_alive.any("member")).sum())
    if T < 2 or "nmse" not in ds:
        return out
    later = ds.isel(time=slice(1, None))
    for name in SCORES:
        if name in ds:
            v = ds[name]
            out[f"{name}_mean"] = _plain(later[name].mean(skipna=False).values)
            out[f"{name}_step1"] = _plain(v.isel(time=1).mean(skipna=False).values)
            out[f"{name}_last"] = _plain(v.isel(time=-1).mean(skipna=False).values)
    times = torch.from_numpy(ds.time.values.astype(np.float64))
    corr = torch.from_numpy(np.nan_to_num(ds.correlation.values.T, nan=0.0))  # (T, B)
    for th in thresholds:
        out[f"high_correlation_time_{th:g}"] = _plain(
            metrics.high_correlation_time(corr, times, th)
        )
    if "crps" in ds:
        out["crps_mean"] = _plain(later.crps.mean(skipna=False).values)
        out["crps_last"] = _plain(ds.crps.isel(time=-1).mean(skipna=False).values)
        spread2, skill2 = (
            (later.spread**2).mean(skipna=False).values,
            (later.skill**2).mean(skipna=False).values,
        )
        out["spread_skill"] = _plain(np.sqrt(spread2 / skill2)) if skill2 > 0 else None
        last = ds.isel(time=-1)
        s2, k2 = (
            (last.spread**2).mean(skipna=False).values,
            (last.skill**2).mean(skipna=False).values,
        )
        out["spread_skill_last"] = _plain(np.sqrt(s2 / k2)) if k2 > 0 else None
        sc = torch.from_numpy(np.nan_to_num(ds.sample_correlation.values.T, nan=0.0))
        for th in thresholds:
            out[f"sample_decorrelation_time_{th:g}"] = _plain(
                metrics.high_correlation_time(sc, times, th)
            )
    return out


__all__ = ["RolloutCollector", "read_results", "summarize", "write_results"]

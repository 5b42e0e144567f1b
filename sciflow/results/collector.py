"""The results collector: consumes the :class:`~sciflow.rollout.Step` s of a rollout and records
the ensemble statistics, the truth and the per-step scores, in memory or streamed to netCDF.

Layout of the results (``S`` = the spatial dims, ``x`` or ``x, y``):

- coordinates ``time`` (seconds from the initial condition, t = 0 included), ``step`` (along
  ``time``), ``trajectory``, ``channel`` (names), the spatial dims with their values, ``member``
  (with ``member_model`` and ``member_sample``: which model and which of its samples each member
  is), ``param`` (names), and the extra dims of the scores (``coverage_level``, ``probability``,
  ``rank``);
- fields ``truth``, ``mean``, ``std``: ``(trajectory, time, channel, *S)``, and ``members``:
  ``(member, trajectory, time, channel, *S)`` when kept; ``mask``: ``(trajectory, *S)``;
  ``params``: ``(trajectory, param)``; ``alive``: ``(member, trajectory, time)``;
- per-step, per-trajectory scores (:mod:`sciflow.results.scores`): ``nmse``, ``nrmse``,
  ``vrmse``, ``correlation``, ``mae`` of the ensemble mean and ``nmse_copy`` of copying the
  initial state; with two or more members ``crps`` (fair), ``spread``, ``skill``,
  ``spread_skill``, ``sample_correlation``, ``coverage`` and ``interval_width``
  ``(trajectory, time, coverage_level)``, ``reliability`` ``(trajectory, time, probability)``
  and ``rank_histogram`` ``(trajectory, time, rank)``.

Ensemble statistics use the members that are still alive; ``std`` is the unbiased ensemble
standard deviation (0 for one member).

Memory: with ``path`` the per-step arrays go straight to the file (see
:class:`~sciflow.results.store.NetCDFStore`), so what the collector holds does not grow with the
number of steps, and the per-trajectory state it keeps (the initial condition of the batch in
progress) is bounded by the batch. Trajectories are recorded in batches: :meth:`begin` with
their initial state, :meth:`update` per step (with the truth of that step), :meth:`end`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

import sciflow
from sciflow.data.reader import field_groups
from sciflow.results.files import open_results
from sciflow.results.scores import DEFAULT_SCORES, Score, StepContext, extra_coords, score_names
from sciflow.results.store import MemoryStore, NetCDFStore, Variable
from sciflow.rollout import Step
from sciflow.spread_correction import SpreadCorrection


def _np(x: Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def _as_slice(batch: slice | None, B: int) -> slice:
    start, stop, step = (slice(0, B) if batch is None else batch).indices(B)
    if step != 1 or stop <= start:
        raise ValueError(f"RolloutCollector: batch must be a non-empty contiguous slice, got {batch}")
    return slice(start, stop)


class RolloutCollector:
    """Consume the steps of a rollout and build its results; see the module docstring.

    Args:
        initial: ``(B, C, *S)`` state at t = 0 of every trajectory, recorded at once; or None
            and :meth:`begin` each batch.
        steps: model steps that will be collected.
        dt: seconds per model step.
        channels: the ``C`` channel names.
        coords: spatial dim name -> coordinate values, in axis order (``x`` first).
        n_members: ensemble size ``M``.
        samples: samples per model; labels members ``m // samples, m % samples`` when
            ``member_labels`` is not given.
        member_labels: ``(model, sample)`` of each member (:func:`sciflow.rollout.member_table`).
        truth: ``(B, steps + 1, C, *S)`` reference states from t = 0, held in memory; or None
            and pass each step's truth to :meth:`update` (``scored=True``).
        mask: ``(B, *S)`` bool fluid cells, or None (all cells count).
        params, param_names: ``(B, P)`` operating parameters and their names.
        trajectories: labels of the ``B`` trajectories (default ``0..B-1``).
        trajectory_coords: extra per-trajectory coordinates, name -> ``(B,)`` values.
        keep_members: store every member's states (``M`` times the size of ``mean``).
        attrs: dataset attributes (checkpoints, card, seed, ...).
        n_trajectories: ``B`` when neither ``initial`` nor ``trajectories`` gives it.
        scored: whether a truth comes with the steps (default: ``truth`` is given).
        scores: the per-step scores (default :data:`~sciflow.results.scores.DEFAULT_SCORES`).
        path: stream the results into this netCDF file (atomic; see
            :class:`~sciflow.results.store.NetCDFStore`); None keeps them in memory.
        run_key: identifies the run for resuming a streamed file (``path``): a partial file
            with the same key is continued, see :attr:`complete`.
        spread_correction: rescales the members about their mean per step before they are
            scored and stored (see :mod:`sciflow.spread_correction`); must cover ``steps``.
    """

    def __init__(
        self,
        initial: Tensor | np.ndarray | None = None,
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
        n_trajectories: int | None = None,
        scored: bool | None = None,
        scores: Sequence[Score] = DEFAULT_SCORES,
        path: str | os.PathLike | None = None,
        run_key: str = "",
        spread_correction: SpreadCorrection | None = None,
    ):
        self.dims = list(coords)
        self.S = tuple(len(coords[d]) for d in self.dims)
        self.C = len(channels)
        init = None if initial is None else _np(initial).astype(np.float32)
        if init is not None and (init.ndim != 2 + len(self.S) or init.shape[1] != self.C
                                 or tuple(init.shape[2:]) != self.S):
            raise ValueError(
                f"RolloutCollector: initial must be (B, C={self.C}, *S={self.S}), got {init.shape}")
        if init is not None:
            B = init.shape[0]
        elif trajectories is not None:
            B = len(trajectories)
        elif n_trajectories is not None:
            B = int(n_trajectories)
        else:
            raise ValueError("RolloutCollector: give initial, trajectories or n_trajectories")
        self.B, self.T, self.M = B, int(steps) + 1, int(n_members)
        self.steps, self.dt = int(steps), float(dt)
        self.samples = self.M if samples is None else int(samples)
        if member_labels is None:
            if self.M % self.samples:
                raise ValueError(
                    f"RolloutCollector: n_members {self.M} is not a multiple of samples {self.samples}")
            member_labels = [(m // self.samples, m % self.samples) for m in range(self.M)]
        if len(member_labels) != self.M:
            raise ValueError(f"RolloutCollector: {len(member_labels)} member labels for n_members {self.M}")
        self.member_labels = np.asarray(member_labels, dtype=np.int64).reshape(self.M, 2)
        self.channels = list(channels)
        self.coords = {d: np.asarray(coords[d]) for d in self.dims}
        self.groups = list(field_groups(self.channels, self.dims).values())
        self.truth = None if truth is None else _np(truth).astype(np.float32)
        shape = (B, self.T, self.C, *self.S)
        if self.truth is not None and self.truth.shape != shape:
            raise ValueError(
                f"RolloutCollector: truth must be (B, steps + 1, C, *S) = {shape}, got {self.truth.shape}")
        self.mask = None if mask is None else _np(mask).astype(bool)
        if self.mask is not None and self.mask.shape != (B, *self.S):
            raise ValueError(f"RolloutCollector: mask must be (B, *S) = {(B, *self.S)}, got {self.mask.shape}")
        self.params = None if params is None else _np(params).astype(np.float64)
        self.param_names = None
        if self.params is not None:
            names = list(param_names) if param_names is not None else [f"p{i}" for i in range(self.params.shape[-1])]
            if self.params.shape != (B, len(names)):
                raise ValueError(
                    f"RolloutCollector: params must be (B, P) = {(B, len(names))}, got {self.params.shape}")
            self.param_names = names
        self.trajectories = list(range(B)) if trajectories is None else list(trajectories)
        if len(self.trajectories) != B:
            raise ValueError(f"RolloutCollector: {len(self.trajectories)} trajectory labels for B={B}")
        self.trajectory_coords = {k: list(v) for k, v in (trajectory_coords or {}).items()}
        self.keep_members = keep_members
        if spread_correction is not None and spread_correction.steps < self.steps:
            raise ValueError(
                f"RolloutCollector: the spread correction ({spread_correction.source or 'no source'}) covers "
                f"{spread_correction.steps} steps, the rollout has {self.steps}")
        self.spread_correction = spread_correction
        self.attrs = dict(attrs or {})
        self.scored = self.truth is not None if scored is None else bool(scored)
        self.scores = list(scores) if self.scored else []
        self.outputs = score_names(self.scores, self.M)
        self.extra = extra_coords(self.scores, self.M)
        skeleton, variables = self._layout()
        self.store: MemoryStore | NetCDFStore = (
            MemoryStore(skeleton, variables) if path is None
            else NetCDFStore(path, skeleton, variables, run_key))
        self.filled = np.zeros((B, self.T), bool)
        self.filled[self.store.complete] = True
        self._initial: list[tuple[slice, Tensor]] = []  # the initial states of open batches
        if init is not None:
            self.begin(slice(0, B), init)

    # -- layout ---------------------------------------------------------------------------------------
    def _layout(self) -> tuple[xr.Dataset, dict[str, Variable]]:
        sd = tuple(self.dims)
        coords: dict[str, Any] = {
            "time": ("time", np.arange(self.T) * self.dt, {"units": "s", "long_name": "time since the initial condition"}),
            "step": ("time", np.arange(self.T)),
            "trajectory": ("trajectory", np.asarray(self.trajectories)),
            "channel": ("channel", np.asarray(self.channels, dtype=object)),
            "member": ("member", np.arange(self.M)),
            "member_model": ("member", self.member_labels[:, 0]),
            "member_sample": ("member", self.member_labels[:, 1]),
            **{d: (d, self.coords[d]) for d in sd},
            **{k: ("trajectory", np.asarray(v)) for k, v in self.trajectory_coords.items()},
        }
        for dim, values in self.extra.items():
            coords[dim] = (dim, values.astype(object) if values.dtype.kind == "U" else values)
        data: dict[str, Any] = {}
        if self.mask is not None:
            data["mask"] = (("trajectory", *sd), self.mask)
        if self.params is not None:
            coords["param"] = ("param", np.asarray(self.param_names, dtype=object))
            data["params"] = (("trajectory", "param"), self.params)
        attrs = {"sciflow_version": sciflow.__version__, "dt": self.dt, "steps": self.steps,
                 "n_members": self.M, "samples": self.samples, **self.attrs}
        skeleton = xr.Dataset(data, coords=coords, attrs=attrs)
        field_dims = ("trajectory", "time", "channel", *sd)
        variables = {
            "mean": Variable(field_dims, np.float32, {"long_name": "ensemble mean"}, compress=True),
            "std": Variable(field_dims, np.float32, {"long_name": "ensemble standard deviation (unbiased)"},
                            compress=True),
            "alive": Variable(("member", "trajectory", "time"), bool),
        }
        if self.scored:
            variables["truth"] = Variable(field_dims, np.float32, compress=True)
        if self.keep_members:
            variables["members"] = Variable(("member", *field_dims), np.float32, compress=True)
        long_names = {k: v for s in self.scores for k, v in s.long_names.items()}
        for name, dim in self.outputs.items():
            dims = ("trajectory", "time") if dim is None else ("trajectory", "time", dim)
            attrs_ = {"long_name": long_names[name]} if name in long_names else {}
            variables[name] = Variable(dims, np.float64, attrs_)
        return skeleton, variables

    # -- recording ------------------------------------------------------------------------------------
    @property
    def complete(self) -> np.ndarray:
        """``(B,)`` bool: trajectories already recorded in full (a resumed file's)."""
        return self.store.complete.copy()

    def begin(self, batch: slice, initial: Tensor | np.ndarray, truth: Tensor | np.ndarray | None = None) -> None:
        """Start recording trajectories ``batch`` from their states at t = 0, ``(b, C, *S)``
        (``truth`` at t = 0 defaults to them)."""
        batch = _as_slice(batch, self.B)
        init = torch.from_numpy(_np(initial).astype(np.float32)).double()
        n = batch.stop - batch.start
        if tuple(init.shape) != (n, self.C, *self.S):
            raise ValueError(f"RolloutCollector: initial of batch {batch} must be {(n, self.C, *self.S)}, "
                             f"got {tuple(init.shape)}")
        self._initial = [(s, t) for s, t in self._initial if s.stop <= batch.start or s.start >= batch.stop]
        self._initial.append((batch, init))
        y = init if truth is None and self.truth is None else self._truth(0, batch, truth)
        self._record(0, init.unsqueeze(0).expand(self.M, *init.shape), torch.ones(self.M, n, dtype=torch.bool),
                     batch, y)

    def update(self, step: Step, batch: slice | None = None, truth: Tensor | np.ndarray | None = None) -> None:
        """Record one step of trajectories ``batch`` (default all); ``truth`` ``(b, C, *S)`` is
        that step's reference (default: from the ``truth`` array given at construction)."""
        batch = _as_slice(batch, self.B)
        n = batch.stop - batch.start
        want = (self.M, n, self.C, *self.S)
        if tuple(step.members.shape) != want:
            raise ValueError(f"RolloutCollector: step {step.index} members {tuple(step.members.shape)}, expected {want}")
        if not 1 <= step.index <= self.steps:
            raise ValueError(f"RolloutCollector: step index {step.index} outside 1..{self.steps}")
        x = step.members.detach().to("cpu", torch.float64)
        self._record(step.index, x, step.alive.detach().cpu().bool(), batch, self._truth(step.index, batch, truth))

    def end(self, batch: slice | None = None) -> None:
        """Trajectories ``batch`` are recorded in full: mark them complete (a streamed file
        records it, so a rerun skips them) and release their state."""
        batch = _as_slice(batch, self.B)
        if not self.filled[batch].all():
            b, t = np.argwhere(~self.filled[batch])[0]
            raise ValueError(f"RolloutCollector: step {t} of trajectory "
                             f"{self.trajectories[batch.start + b]} was never recorded")
        self.store.mark_complete(np.arange(batch.start, batch.stop))
        self._initial = [(s, t) for s, t in self._initial if not (batch.start <= s.start and s.stop <= batch.stop)]

    def _truth(self, k: int, batch: slice, truth: Tensor | np.ndarray | None) -> Tensor | None:
        if truth is not None:
            y = torch.from_numpy(_np(truth).astype(np.float32)).double()
            n = batch.stop - batch.start
            if tuple(y.shape) != (n, self.C, *self.S):
                raise ValueError(f"RolloutCollector: truth of step {k} must be {(n, self.C, *self.S)}, "
                                 f"got {tuple(y.shape)}")
            return y
        if self.truth is not None:
            return torch.from_numpy(self.truth[batch, k]).double()
        if self.scored:
            raise ValueError(f"RolloutCollector: no truth for step {k} (pass it to update)")
        return None

    def _initial_of(self, batch: slice) -> Tensor:
        for s, t in self._initial:
            if s.start <= batch.start and batch.stop <= s.stop:
                return t[batch.start - s.start: batch.stop - s.start]
        raise ValueError(f"RolloutCollector: trajectories {batch} were not begun (call begin first)")

    def _record(self, k: int, x: Tensor, alive: Tensor, batch: slice, y: Tensor | None) -> None:
        a = alive.view(*alive.shape, *([1] * (x.ndim - 2))).to(x.dtype)
        n = alive.sum(0).view(-1, *([1] * (x.ndim - 2))).to(x.dtype)  # (b, 1, ...)
        xz = torch.where(a > 0, x, torch.zeros_like(x))
        mean = xz.sum(0) / n  # NaN where no member is alive
        if self.spread_correction is not None:
            # scored and stored members only: the rollout continues from its own states
            x = torch.where(a > 0, self.spread_correction.apply(x, mean, k), x)
            xz = torch.where(a > 0, x, torch.zeros_like(x))
        var = (a * (xz - mean) ** 2).sum(0) / (n - 1).clamp_min(1)
        std = torch.where(n > 1, var.sqrt(), torch.where(n > 0, 0.0, torch.nan))
        w = self.store.write
        w("mean", (batch, k), mean.float().numpy())
        w("std", (batch, k), std.float().numpy())
        w("alive", (slice(None), batch, k), alive.numpy())
        if self.keep_members:
            w("members", (slice(None), batch, k), x.float().numpy())
        self.filled[batch, k] = True
        if not self.scored or y is None:
            return
        w("truth", (batch, k), y.float().numpy())
        ctx = StepContext(
            index=k, time=k * self.dt, members=x, mean=mean, truth=y, initial=self._initial_of(batch),
            mask=None if self.mask is None else torch.from_numpy(self.mask[batch]), groups=self.groups,
            coords=self.coords, params=None if self.params is None else torch.from_numpy(self.params[batch]),
        )
        for score in self.scores:
            if score.ensemble and self.M < 2:
                continue
            values = self._ensemble(score, ctx, alive) if score.ensemble else score.compute(ctx)
            for name in score.outputs:
                w(name, (batch, k), np.asarray(values[name], dtype=np.float64))

    def _ensemble(self, score: Score, ctx: StepContext, alive: Tensor) -> dict[str, np.ndarray]:
        """An ensemble score over the alive members of each trajectory (NaN where < 2 are)."""
        b = ctx.truth.shape[0]
        out = {name: np.full((b, *self._extra(dim)), np.nan) for name, dim in score.outputs.items()}
        full = alive.all(0)
        idx = torch.nonzero(full).flatten()
        if len(idx):
            for name, v in score.compute(ctx.subset(idx)).items():
                out[name][idx.numpy()] = v
        if not score.all_members:
            for j in torch.nonzero(~full).flatten().tolist():
                keep = alive[:, j]
                if int(keep.sum()) >= 2:
                    for name, v in score.compute(ctx.subset([j], keep)).items():
                        out[name][j] = v[0]
        return out

    def _extra(self, dim: str | None) -> tuple[int, ...]:
        return () if dim is None else (len(self.extra[dim]),)

    # -- results --------------------------------------------------------------------------------------
    def dataset(self) -> xr.Dataset:
        """The results; raises if some step was never recorded. Streamed to a file: the file is
        finished (moved into place) and opened lazily (:func:`~sciflow.results.open_results`)."""
        if not self.filled.all():
            b, t = np.argwhere(~self.filled)[0]
            raise ValueError(f"RolloutCollector: step {t} of trajectory {self.trajectories[b]} was never recorded")
        if isinstance(self.store, MemoryStore):
            return self.store.dataset()
        self.store.mark_complete(np.arange(self.B))
        return open_results(self.store.finish())

    def close(self) -> None:
        """Release the file of a streamed collector that did not finish (it stays for a rerun)."""
        self.store.close()

    @property
    def path(self) -> Path | None:
        return self.store.path if isinstance(self.store, NetCDFStore) else None


__all__ = ["RolloutCollector"]

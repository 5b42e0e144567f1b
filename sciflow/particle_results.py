"""Particle rollout results: a netCDF file written step by step as the rollout streams, and the
scores LagrangeBench reports.

Layout (read it with ``sciflow.results.read_results`` or ``xarray.open_dataset``):

- dimensions ``trajectory`` (B), ``time`` (steps + 1, t = 0 included), ``particle`` (the largest
  particle count; shorter trajectories are padded with NaN and type -1), ``spatial`` (D), ``param``
  and, with ``keep_members``, ``member``;
- coordinates ``time`` (seconds), ``step``, ``spatial`` (``x``, ``y``[, ``z``]), ``param`` (names),
  ``trajectory`` (indices into the split);
- ``truth``, ``mean``: ``(trajectory, time, particle, spatial)`` positions (the ensemble mean is
  taken on displacements from member 0, so it is right across periodic faces); ``members``:
  ``(member, trajectory, time, particle, spatial)`` when kept;
- ``particle_type``, ``n_particles``, ``params``, ``alive (member, trajectory, time)``;
- per step and trajectory: ``mse`` (position MSE of the mean over all particles, LagrangeBench's),
  ``e_kin_pred``, ``e_kin_true`` (LagrangeBench's kinetic energy from the last two frames),
  ``sinkhorn`` (at steps 1, 1 + stride, ... up to ``sinkhorn_steps``; NaN elsewhere) and, with
  two or more members, ``spread`` and ``skill`` (finite-ensemble corrected);
- attributes: the summary (``mse5``, ``mse10``, ``mse20``, ``mse``, ``sinkhorn``, ``e_kin_mse``
  averaged over trajectories) and provenance (checkpoints, card, split, seed).

The file is written to a temporary name beside ``path`` and renamed when complete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import h5netcdf
import h5py
import numpy as np
import torch
from torch import Tensor

from sciflow.data.format import atomic_path
from sciflow.metrics.particles import HORIZONS, ensemble_spread, kinetic_energy, position_mse
from sciflow.metrics.sinkhorn import sinkhorn_divergence
from sciflow.particle_rollout import ParticleStep
from sciflow.results.files import encode_attrs

SPATIAL = ("x", "y", "z")


class ParticleResultsWriter:
    """Stream :class:`~sciflow.particle_rollout.ParticleStep` s of a batch of trajectories to netCDF.

    Args:
        path: the netCDF file.
        initial: per trajectory, the last two initial frames ``(2, N_b, D)`` (t = 0 and the frame
            before it, for the kinetic energy at t = 0).
        particle_type: per trajectory ``(N_b,)``.
        steps, dt: model steps and seconds per step.
        n_members, samples: ensemble size and samples per model.
        truth: per trajectory ``(steps + 1, N_b, D)`` from t = 0, or None.
        params, param_names: ``(B, P)`` and their names; trajectories: labels of the B trajectories.
        frame_dt, dx: seconds per model step and particle spacing (kinetic energy units).
        domain: minimum images on periodic axes.
        keep_members: store every member.
        stride, sinkhorn_steps: LagrangeBench's metric stride and the steps the Sinkhorn and
            kinetic-energy scores cover (20).
        attrs: provenance attributes.
    """

    def __init__(self, path: str | os.PathLike, *, initial: Sequence[Tensor], particle_type: Sequence[Tensor],
                 steps: int, dt: float, n_members: int, samples: int = 1, truth: Sequence[Tensor] | None = None,
                 params: Tensor | None = None, param_names: Sequence[str] = (), trajectories: Sequence[int] | None = None,
                 frame_dt: float, dx: float, domain: Any | None = None, keep_members: bool = False,
                 stride: int = 10, sinkhorn_steps: int = 20, attrs: Mapping[str, Any] | None = None):
        self.B = len(initial)
        self.n = [int(x.shape[1]) for x in initial]
        self.D = int(initial[0].shape[-1])
        self.M, self.samples, self.steps, self.dt = int(n_members), int(samples), int(steps), float(dt)
        self.frame_dt, self.dx, self.domain = float(frame_dt), float(dx), domain
        self.stride, self.sinkhorn_steps, self.keep = int(stride), int(sinkhorn_steps), bool(keep_members)
        self.truth = None if truth is None else [t.double() for t in truth]
        self.offsets = np.cumsum([0] + self.n)
        self.prev_mean = [x[-1].double() for x in initial]
        self.prev_before = [x[0].double() for x in initial]
        self.ek_pred: list[list[float]] = [[] for _ in range(self.B)]
        self.ek_true: list[list[float]] = [[] for _ in range(self.B)]
        self.mse: list[list[float]] = [[] for _ in range(self.B)]
        self.sink: list[list[float]] = [[] for _ in range(self.B)]
        self.attrs = dict(attrs or {})
        self._stack = ExitStack()
        self._atomic = atomic_path(path)
        self.path = Path(path)
        tmp = self._stack.enter_context(self._atomic)
        f = self.f = self._stack.enter_context(h5netcdf.File(tmp, "w"))
        T, Nmax, P = self.steps + 1, max(self.n), 0 if params is None else int(params.shape[1])
        dims = {"trajectory": self.B, "time": T, "particle": Nmax, "spatial": self.D, "param": P}
        if self.keep:
            dims["member"] = self.M
        f.dimensions = dims
        self._var("time", ("time",), "f8")[:] = np.arange(T) * self.dt
        self._var("step", ("time",), "i4")[:] = np.arange(T)
        self._var("spatial", ("spatial",), h5py.string_dtype())[:] = np.array(SPATIAL[: self.D], dtype=object)
        self._var("param", ("param",), h5py.string_dtype())[:] = np.array(list(param_names), dtype=object)
        self._var("trajectory", ("trajectory",), "i4")[:] = np.asarray(trajectories if trajectories is not None
                                                                       else range(self.B))
        self._var("n_particles", ("trajectory",), "i4")[:] = np.asarray(self.n)
        types = np.full((self.B, Nmax), -1, dtype=np.int32)  # -1 pads (no fill value: xarray would mask it)
        for b, t in enumerate(particle_type):
            types[b, : self.n[b]] = t.cpu().numpy()
        self._var("particle_type", ("trajectory", "particle"), "i4")[:] = types
        if P:
            self._var("params", ("trajectory", "param"), "f8")[:] = params.double().cpu().numpy()
        cloud = ("trajectory", "time", "particle", "spatial")
        chunks = (1, 1, Nmax, self.D)
        self.mean = self._var("mean", cloud, "f4", fill=np.nan, chunks=chunks)
        self.truth_var = self._var("truth", cloud, "f4", fill=np.nan, chunks=chunks) if truth is not None else None
        self.members = (self._var("members", ("member",) + cloud, "f4", fill=np.nan, chunks=(1,) + chunks)
                        if self.keep else None)
        self.alive = self._var("alive", ("member", "trajectory", "time"), "i1") if self.keep else None
        self.alive_all = np.ones((self.M, self.B, T), dtype=np.int8)
        per_step = ("trajectory", "time")
        self.score = {name: self._var(name, per_step, "f8", fill=np.nan)
                      for name in ("mse", "e_kin_pred", "e_kin_true", "sinkhorn")
                      + (("spread", "skill") if self.M >= 2 else ())}
        for b in range(self.B):
            x0 = initial[b][-1]
            self.mean[b, 0, : self.n[b]] = x0.cpu().numpy()
            if self.members is not None:
                for m in range(self.M):
                    self.members[m, b, 0, : self.n[b]] = x0.cpu().numpy()
            ek0 = float(kinetic_energy(initial[b].double(), self.frame_dt, self.dx, domain)[0])
            self.score["e_kin_pred"][b, 0] = ek0
            if self.truth is not None:
                self.truth_var[b, 0, : self.n[b]] = self.truth[b][0].cpu().numpy()
                self.score["e_kin_true"][b, 0] = ek0
                self.score["mse"][b, 0] = float(position_mse(x0.double(), self.truth[b][0], domain))

    def _var(self, name: str, dims: tuple[str, ...], dtype: Any, fill: Any = None, chunks: tuple | None = None):
        kw: dict[str, Any] = {}
        if fill is not None:
            kw["fillvalue"] = fill
        if chunks is not None:
            kw.update(chunks=chunks, compression="gzip", compression_opts=4)
        return self.f.create_variable(name, dims, dtype, **kw)

    def _mean(self, members: Tensor) -> Tensor:
        """Ensemble mean ``(N, D)`` of ``members (M, N, D)`` ignoring stopped (NaN) members, taken on
        displacements from the first alive member so that it is right across periodic faces."""
        ok = torch.isfinite(members).all(-1).all(-1)
        if not bool(ok.any()):
            return torch.full_like(members[0], float("nan"))
        live = members[ok]
        ref = live[0]
        d = live - ref if self.domain is None else self.domain.displacement(live, ref[None])
        mean = ref + d.mean(0)
        return mean if self.domain is None else self.domain.wrap(mean)

    def update(self, step: ParticleStep) -> None:
        """Write one step: positions, alive flags and the per-step scores."""
        k = step.index
        members = step.members.detach().to("cpu", torch.float64)
        self.alive_all[:, :, k] = step.alive.cpu().numpy().astype(np.int8)
        for b in range(self.B):
            a, z = self.offsets[b], self.offsets[b + 1]
            mb = members[:, a:z]
            mean = self._mean(mb)
            self.mean[b, k, : self.n[b]] = mean.numpy()
            if self.members is not None:
                for m in range(self.M):
                    self.members[m, b, k, : self.n[b]] = mb[m].numpy()
            ek = float(kinetic_energy(torch.stack([self.prev_mean[b], mean]), self.frame_dt, self.dx, self.domain)[0])
            self.score["e_kin_pred"][b, k] = ek
            self.ek_pred[b].append(ek)
            self.prev_mean[b] = mean
            if self.truth is None:
                continue
            tr = self.truth[b][k]
            self.truth_var[b, k, : self.n[b]] = tr.numpy()
            et = float(kinetic_energy(self.truth[b][k - 1: k + 1], self.frame_dt, self.dx, self.domain)[0])
            self.score["e_kin_true"][b, k] = et
            self.ek_true[b].append(et)
            err = float(position_mse(mean, tr, self.domain))
            self.score["mse"][b, k] = err
            self.mse[b].append(err)
            if k <= self.sinkhorn_steps and (k - 1) % self.stride == 0:
                s = float(sinkhorn_divergence(mean, tr, domain=self.domain)) if torch.isfinite(mean).all() else float("nan")
                self.score["sinkhorn"][b, k] = s
                self.sink[b].append(s)
            if self.M >= 2:
                sp = ensemble_spread(mb[torch.isfinite(mb).all(-1).all(-1)], tr, self.domain) \
                    if int(torch.isfinite(mb).all(-1).all(-1).sum()) >= 2 else None
                if sp is not None:
                    self.score["spread"][b, k] = float(sp["spread"])
                    self.score["skill"][b, k] = float(sp["skill"])

    def summary(self) -> dict[str, Any]:
        """LagrangeBench's scores averaged over trajectories (each trajectory's mean first)."""
        out: dict[str, Any] = {"steps": self.steps, "trajectories": self.B, "members": self.M,
                               "alive_fraction": float(self.alive_all[:, :, -1].mean())}
        if self.truth is None:
            return out
        mse = np.array(self.mse)
        for h in HORIZONS:
            if h <= self.steps:
                out[f"mse{h}"] = float(np.mean(mse[:, :h].mean(1)))
        out["mse"] = float(np.mean(mse.mean(1)))
        out["sinkhorn"] = float(np.mean([np.mean(s) for s in self.sink]))
        # LagrangeBench: energies at frames 0, stride, ... of the first sinkhorn_steps predictions
        idx = list(range(0, min(self.steps, self.sinkhorn_steps) - 1, self.stride))
        ep, et = np.array(self.ek_pred)[:, 1:], np.array(self.ek_true)[:, 1:]
        out["e_kin_mse"] = float(np.mean(((ep[:, idx] - et[:, idx]) ** 2).mean(1))) if idx and ep.shape[1] else float("nan")
        return out

    def close(self) -> dict[str, Any]:
        """Write the summary and provenance attributes and move the file into place."""
        summary = self.summary()
        try:
            if self.alive is not None:
                self.alive[:] = self.alive_all
            for k, v in encode_attrs({**self.attrs, **summary, "summary": json.dumps(summary)}).items():
                self.f.attrs[k] = v
        finally:
            self._stack.close()
        return summary

    def abort(self) -> None:
        """Drop the unfinished file."""
        self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)


__all__ = ["ParticleResultsWriter"]

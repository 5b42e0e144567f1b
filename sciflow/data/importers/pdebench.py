"""Import PDEBench HDF5 files (Takamoto et al. 2022) into sciflow's format, 1D and 2D.

Three layouts are recognised by the file's top-level keys (``docs/importers.md`` shows each):

``tensor``
    one dataset ``tensor (N, T, X[, Y])`` with ``x-coordinate`` (``y-coordinate``) and
    ``t-coordinate`` (advection, Burgers, 1D reaction-diffusion). One scalar field, named ``u``
    unless ``fields=[name]`` says otherwise.
per-field
    datasets ``density``, ``pressure``, ``Vx`` (``Vy``) of shape ``(N, T, X[, Y])`` with the same
    coordinates (compressible Navier-Stokes). ``density`` and ``pressure`` become t0 fields,
    ``Vx`` / ``Vy`` the t1 field ``velocity``; ``fields`` picks a subset of
    ``["density", "pressure", "velocity"]``.
per-sample groups
    groups ``"0000"``, ``"0001"``, ... each holding ``data (T, X[, Y], C)`` and
    ``grid/x`` (``grid/y``), ``grid/t`` (2D reaction-diffusion, shallow water, diffusion-sorption).
    Each of the C channels becomes one t0 field, named by ``fields`` (default ``u`` when C = 1,
    else ``u0``, ``u1``, ...).

Operating parameters: constants from the command line (``params``), sources named in
``param_from`` (``{"k": "attr:k"}``, see :mod:`sciflow.data.importers.params`), and whatever the
file carries that looks like one (attributes of the sample groups, root attributes, datasets
with one number per trajectory). Every parameter found is listed in the card under
``imported_from.parameters`` with its source and whether it was used.

PDEBench arrays are already x-first. Time alignment: PDEBench stores ``t-coordinate`` with T + 1
entries for T frames, starting at the initial condition (frame 0 at t = 0); frame k is taken at
``t[k]``, so the last coordinate (one step past the final frame) is dropped. A coordinate of
exactly T entries is used as is; any other length is an error.

Reading is lazy: trajectories are read ``trajectories_per_file`` at a time with h5py slicing, and
each chunk is written to one output file, so memory holds one chunk, never the whole file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm.auto import tqdm

import sciflow
from sciflow.data.card import SPLITS
from sciflow.data.case import BoundarySpec
from sciflow.data.errors import DataError, DataFormatError, DataNotFoundError
from sciflow.data.format import write_well
from sciflow.data.importers._common import (
    assign_splits,
    check_split,
    count_splits,
    prepare_outputs,
    split_card,
    write_card,
)
from sciflow.data.importers.params import ParamReader, ParamSource, parse_source, resolve_params
from sciflow.data.sniff import pdebench_layout

_DIMS = ("x", "y")
_VELOCITY_KEYS = ("Vx", "Vy")
_PER_FIELD = ("density", "pressure", "velocity")


@dataclass
class _Layout:
    """What one source file holds, in terms of the output: how to read B trajectories."""

    kind: str
    n: int
    time: np.ndarray
    coords: dict[str, np.ndarray]
    t0: dict[str, Any] = field(default_factory=dict)  # output name -> reader spec
    t1: dict[str, Any] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    time_dropped: bool = False  # the source had T + 1 times and the last was dropped
    reserved: list[str] = field(default_factory=list)  # top-level datasets read as fields / coordinates


def _align_time(t: np.ndarray, T: int, where: str) -> tuple[np.ndarray, bool]:
    """Frame times ``(T,)`` and whether a final extra time was dropped."""
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    dropped = t.shape[0] == T + 1
    if dropped:
        t = t[:T]
    elif t.shape[0] != T:
        raise DataFormatError(f"{where}: {t.shape[0]} times for {T} frames (expected {T} or {T + 1})")
    if not np.isfinite(t).all():
        raise DataFormatError(f"{where}: times hold NaN/Inf")
    if T > 1 and not np.all(np.diff(t) > 0):
        raise DataFormatError(f"{where}: times are not strictly increasing")
    return t, dropped


def _numeric(ds: Any, where: str, key: str) -> h5py.Dataset:
    if not isinstance(ds, h5py.Dataset):
        raise DataFormatError(f"{where}: {key} is not a dataset")
    if ds.dtype.kind not in "iuf":
        raise DataFormatError(f"{where}: {key} holds {ds.dtype}, expected numbers")
    return ds


def _coord(f: h5py.Group, key: str, n: int, where: str) -> np.ndarray:
    if key not in f:
        raise DataFormatError(f"{where}: missing coordinate dataset {key!r}; it has {sorted(f.keys())}")
    c = np.asarray(_numeric(f[key], where, key)[()], dtype=np.float64).reshape(-1)
    if c.shape[0] != n:
        raise DataFormatError(f"{where}: {key} has {c.shape[0]} points, the data has {n} along that axis")
    if not np.isfinite(c).all():
        raise DataFormatError(f"{where}: {key} holds NaN/Inf")
    if n > 1 and not (np.all(np.diff(c) > 0) or np.all(np.diff(c) < 0)):
        raise DataFormatError(f"{where}: {key} is not monotonic")
    return c


def _spatial_dims(ndim_after_nt: int, where: str, key: str, shape: tuple[int, ...]) -> list[str]:
    if ndim_after_nt not in (1, 2):
        raise DataFormatError(f"{where}: {key} has shape {shape}; only 1D and 2D data (N, T, X[, Y]) can be imported")
    return list(_DIMS[:ndim_after_nt])


def _inspect(f: h5py.File, where: str, fields: Sequence[str] | None) -> _Layout:
    keys = sorted(f.keys())
    kind = pdebench_layout(f)
    if kind == "tensor":
        ds = _numeric(f["tensor"], where, "tensor")
        dims = _spatial_dims(ds.ndim - 2, where, "tensor", ds.shape)
        n, T = int(ds.shape[0]), int(ds.shape[1])
        names = list(fields) if fields is not None else ["u"]
        if len(names) != 1:
            raise DataError(f"{where}: the tensor layout holds one field; fields={names} names {len(names)}")
        coords = {d: _coord(f, f"{d}-coordinate", ds.shape[2 + k], where) for k, d in enumerate(dims)}
        time, dropped = _align_time(_coord_any(f, "t-coordinate", where), T, f"{where}: t-coordinate")
        return _Layout("tensor", n, time, coords, t0={names[0]: "tensor"}, time_dropped=dropped,
                       reserved=["tensor", "t-coordinate", *(f"{d}-coordinate" for d in dims)])

    if kind == "per-field":
        ref_key = next(k for k in ("density", "pressure", *_VELOCITY_KEYS) if k in f)
        ref = _numeric(f[ref_key], where, ref_key)
        dims = _spatial_dims(ref.ndim - 2, where, ref_key, ref.shape)
        present = [k for k in ("density", "pressure") if k in f]
        vel_keys = list(_VELOCITY_KEYS[: len(dims)])
        if any(k in f for k in vel_keys):
            missing = [k for k in vel_keys if k not in f]
            if missing:
                raise DataFormatError(f"{where}: velocity components {missing} missing for {len(dims)}D data; "
                                      f"top-level keys: {keys}")
            present.append("velocity")
        if not present:
            raise DataFormatError(f"{where}: none of density, pressure, {', '.join(vel_keys)} for {len(dims)}D data; "
                                  f"top-level keys: {keys}")
        wanted = list(fields) if fields is not None else present
        unknown = [n for n in wanted if n not in present]
        if unknown or not wanted:
            raise DataError(f"{where}: fields {unknown or wanted} not in this file; it has {present}")
        for k in [k for k in ("density", "pressure") if k in wanted] + (vel_keys if "velocity" in wanted else []):
            if _numeric(f[k], where, k).shape != ref.shape:
                raise DataFormatError(f"{where}: {k} has shape {f[k].shape}, {ref_key} has {ref.shape}")
        n, T = int(ref.shape[0]), int(ref.shape[1])
        coords = {d: _coord(f, f"{d}-coordinate", ref.shape[2 + k], where) for k, d in enumerate(dims)}
        time, dropped = _align_time(_coord_any(f, "t-coordinate", where), T, f"{where}: t-coordinate")
        return _Layout(
            "per-field", n, time, coords,
            t0={k: k for k in ("density", "pressure") if k in wanted},
            t1={"velocity": vel_keys} if "velocity" in wanted else {},
            time_dropped=dropped,
            reserved=["density", "pressure", "Vx", "Vy", "Vz", "t-coordinate", *(f"{d}-coordinate" for d in dims)],
        )

    if kind == "per-sample":
        samples = [k for k in keys if k.isdigit() and isinstance(f[k], h5py.Group)]
        first = f[samples[0]]
        sw = f"{where}: group {samples[0]!r}"
        if "data" not in first:
            raise DataFormatError(f"{sw}: missing dataset 'data'; it has {sorted(first.keys())}")
        data = _numeric(first["data"], sw, "data")
        if data.ndim < 3:
            raise DataFormatError(f"{sw}: data has shape {data.shape}, expected (T, X[, Y], C)")
        dims = _spatial_dims(data.ndim - 2, sw, "data", data.shape)
        T, C = int(data.shape[0]), int(data.shape[-1])
        names = list(fields) if fields is not None else (["u"] if C == 1 else [f"u{c}" for c in range(C)])
        if len(names) != C:
            raise DataError(f"{sw}: data has {C} channels, fields={names} names {len(names)} "
                            f"(in this layout --fields names every channel, in order)")
        if len(set(names)) != len(names):
            raise DataError(f"{where}: fields={names} repeats a name")
        if "grid" not in first or not isinstance(first["grid"], h5py.Group):
            raise DataFormatError(f"{sw}: missing group 'grid'; it has {sorted(first.keys())}")
        coords = {d: _coord(first["grid"], d, data.shape[1 + k], f"{sw}/grid") for k, d in enumerate(dims)}
        time, dropped = _align_time(_coord_any(first["grid"], "t", f"{sw}/grid"), T, f"{sw}/grid/t")
        return _Layout("per-sample", len(samples), time, coords,
                       t0={name: c for c, name in enumerate(names)}, samples=samples, time_dropped=dropped)

    own = "t0_fields" in f or "dimensions" in f
    raise DataFormatError(
        f"{where}: " + ("already in sciflow's format (it has t0_fields / dimensions); no import needed"
                        if own else
                        f"unknown PDEBench layout (expected 'tensor', per-field 'density'/'pressure'/'Vx'/'Vy', "
                        f"or per-sample groups '0000', ...); top-level keys: {keys}")
    )


def _coord_any(g: h5py.Group, key: str, where: str) -> np.ndarray:
    if key not in g:
        raise DataFormatError(f"{where}: missing dataset {key!r}; it has {sorted(g.keys())}")
    return np.asarray(_numeric(g[key], where, key)[()], dtype=np.float64)


def _read_chunk(f: h5py.File, lay: _Layout, idx: list[int], where: str) -> tuple[dict, dict]:
    """Read trajectories ``idx`` (sorted): t0 fields ``(B, T, *S)``, t1 fields ``(B, T, *S, D)``."""
    T = lay.time.shape[0]
    contiguous = idx == list(range(idx[0], idx[-1] + 1))
    sl: Any = slice(idx[0], idx[-1] + 1) if contiguous else np.asarray(idx)
    key = "?"
    try:
        if lay.kind in ("tensor", "per-field"):
            t0, t1 = {}, {}
            for name, key in lay.t0.items():
                t0[name] = np.asarray(f[key][sl], dtype=np.float32)
            for name, comps in lay.t1.items():
                parts = []
                for key in comps:
                    parts.append(np.asarray(f[key][sl], dtype=np.float32))
                t1[name] = np.stack(parts, axis=-1)
            return t0, t1
        parts = []
        want = (T, *(len(c) for c in lay.coords.values()), len(lay.t0))
        for i in idx:
            key = f"{lay.samples[i]}/data"
            g = f[lay.samples[i]]
            d = g.get("data")
            if not isinstance(d, h5py.Dataset):
                raise DataFormatError(f"{where}: group {lay.samples[i]!r}: missing dataset 'data'; it has "
                                      f"{sorted(g.keys())}")
            if d.shape != want or d.dtype.kind not in "iuf":
                raise DataFormatError(f"{where}: group {lay.samples[i]!r}: data has shape {d.shape} ({d.dtype}), "
                                      f"group {lay.samples[0]!r} has {want}")
            parts.append(np.asarray(d[()], dtype=np.float32))
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - h5py raises many kinds on a damaged file
        raise DataFormatError(f"{where}: cannot read {key} for trajectories {idx[0]}..{idx[-1]} (truncated or "
                              f"corrupted?): {type(e).__name__}: {e}") from e
    a = np.stack(parts)  # (B, T, *S, C)
    return {name: np.ascontiguousarray(a[..., c]) for name, c in lay.t0.items()}, {}


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for k in range(0, len(ids), size):
        yield ids[k:k + size]


def _open(src: Path) -> h5py.File:
    try:
        return h5py.File(src, "r")
    except OSError as e:
        raise DataFormatError(f"{src}: not a readable HDF5 file (truncated or corrupted?): {e}") from e


def import_pdebench(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    name: str | None = None,
    params: Mapping[str, float] | None = None,
    param_from: Mapping[str, str | ParamSource] | None = None,
    auto_params: bool = True,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    fields: list[str] | None = None,
    trajectories_per_file: int = 64,
    periodic: bool = False,
    progress: bool = True,
) -> Path:
    """Convert one PDEBench HDF5 file into a sciflow dataset folder; return ``out/card.yaml``.

    Args:
        src: a PDEBench ``.hdf5`` / ``.h5`` file in one of the layouts of the module docstring.
        out: dataset folder to write (``out/data/{train,valid,test}/*.hdf5``, ``out/card.yaml``).
        name: dataset name (default: the file's stem).
        params: operating parameters the file name carries (``{"beta": 0.1}``), stored as shared
            scalars of every trajectory.
        param_from: parameter name -> where it lives in the file, e.g. ``{"k": "attr:k"}``,
            ``{"k": "attr:config:sim.k"}`` or ``{"k": "dataset:params[:, 0]"}``; per trajectory.
        auto_params: also use what the file carries that looks like a parameter (numeric
            attributes of the sample groups or the root, datasets of one number per trajectory).
            Either way every candidate is listed in the card's ``imported_from.parameters``.
        split: train / valid / test fractions, by trajectory, reproducible from ``seed``.
        fields: output field names: the tensor layout's one field; the per-field layout's subset
            of ``density, pressure, velocity``; the per-sample layout's channel names, in order.
        trajectories_per_file: trajectories per output file (and per read, which bounds memory).
        periodic: the data is periodic in every spatial axis (recorded in the card and as
            periodic boundary groups).
    """
    src, out = Path(src), Path(out)
    if not src.is_file():
        raise DataNotFoundError(f"{src}: no such file")
    check_split(split)
    if not isinstance(trajectories_per_file, int) or trajectories_per_file < 1:
        raise DataError(f"trajectories_per_file must be >= 1, got {trajectories_per_file!r}")
    constants: dict[str, float] = {}
    for k, v in dict(params or {}).items():
        if not isinstance(k, str) or not k.isidentifier():
            raise DataError(f"params: name {k!r} is not an identifier")
        try:
            constants[k] = float(v)
        except (TypeError, ValueError):
            raise DataError(f"params: {k} = {v!r} is not a number") from None
        if not np.isfinite(constants[k]):
            raise DataError(f"params: {k} = {v} is not finite")
    mapping: dict[str, ParamSource] = {}
    for k, v in dict(param_from or {}).items():
        if not isinstance(k, str) or not k.isidentifier():
            raise DataError(f"param_from: name {k!r} is not an identifier")
        mapping[k] = v if isinstance(v, ParamSource) else parse_source(str(v))
    name = name or src.stem
    with _open(src) as f:
        try:
            lay = _inspect(f, str(src), fields)
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - h5py raises many kinds on a damaged file
            raise DataFormatError(f"{src}: cannot read the file's layout (truncated or corrupted?): "
                                  f"{type(e).__name__}: {e}") from e
        if lay.n == 0:
            raise DataFormatError(f"{src}: holds no trajectories")
        T = lay.time.shape[0]
        if T < 2:
            raise DataFormatError(f"{src}: {T} time frame(s); a trajectory needs at least 2 (steady data such "
                                  f"as Darcy flow is not a trajectory)")
        try:
            reader = ParamReader(f, str(src), lay.n, lay.samples, lay.reserved)
            values, report = resolve_params(reader, constants, mapping, auto_params)
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - a damaged group or attribute
            raise DataFormatError(f"{src}: cannot read the parameters (corrupted?): {type(e).__name__}: {e}") from e
        dt = float(np.mean(np.diff(lay.time)))
        ids = [f"traj_{i:06d}" for i in range(lay.n)]
        assigned = assign_splits(ids, split, seed)
        per_split = {s: [i for i in range(lay.n) if assigned[ids[i]] == s] for s in SPLITS}
        plan: dict[str, tuple[str, list[int]]] = {}
        for s, members in per_split.items():
            for chunk in _chunks(members, trajectories_per_file):
                plan[f"{src.stem}_{s}_{chunk[0]:06d}_x{len(chunk)}.hdf5"] = (s, chunk)
        done = prepare_outputs(out, {fn: s for fn, (s, _) in plan.items()})
        boundaries = [
            BoundarySpec(f"{d}_periodic", "periodic", [d], np.ones(len(c), bool))
            for d, c in lay.coords.items()
        ] if periodic else []
        for fn, (s, chunk) in tqdm(plan.items(), desc=f"import {name}", disable=not progress):
            if done[fn]:
                continue
            t0, t1 = _read_chunk(f, lay, chunk, str(src))
            for group in (t0, t1):
                for key, a in group.items():
                    bad = int(a.size - np.isfinite(a).sum())
                    if bad:
                        raise DataFormatError(f"{src}: field {key!r} of trajectories {chunk[0]}..{chunk[-1]} "
                                              f"holds {bad} NaN/Inf values")
            write_well(
                out / "data" / s / fn,
                dataset_name=name,
                time=lay.time,
                coords=lay.coords,
                t0_fields=t0,
                t1_fields=t1,
                params={k: v[chunk] for k, v in values.items()},
                boundaries=boundaries,
                attrs={
                    "dt": dt,
                    "generator": {"importer": "sciflow.data.importers.pdebench", "source_format": "pdebench",
                                  "source": src.name, "layout": lay.kind,
                                  "sciflow_version": sciflow.__version__},
                    "cases": [{"case_id": ids[i], "source_index": i,
                               **({"source_group": lay.samples[i]} if lay.samples else {}), "split": s}
                              for i in chunk],
                },
            )
    out_fields = list(lay.t0) + list(lay.t1)
    used = [r for r in report if r.used]
    card = {
        "name": name,
        "description": (
            f"PDEBench file {src.name} ({lay.kind} layout), {lay.n} trajectories of {T} frames on a "
            f"{' x '.join(str(len(c)) for c in lay.coords.values())} grid, imported with "
            f"sciflow.data.importers.pdebench."
            + (" Times: frame k at t-coordinate[k] (the extra final coordinate PDEBench stores is dropped)."
               if lay.time_dropped else "")
            + (" Operating parameters: " + "; ".join(f"{r.name} from {r.where}" for r in used) + "."
               if used else " No operating parameters.")
        ),
        "path": ".",
        "fields": out_fields,
        "params": list(values),
        "dt": dt,
        "frames": T,
        "grid": [len(c) for c in lay.coords.values()],
        "periodic": bool(periodic),
        "split": split_card(split, seed),
        "trajectories_per_file": int(trajectories_per_file),
        "imported_from": {"format": "pdebench", "source": src.name, "layout": lay.kind,
                          "trajectories": count_splits(assigned.values()),
                          "time_coordinate_dropped": bool(lay.time_dropped),
                          "parameters": [r.record() for r in report]},
    }
    return write_card(out, card)


def parameter_report(card: Mapping[str, Any]) -> list[str]:
    """Readable lines of an imported card's parameter report: what was found, what was used."""
    out = []
    records = card.get("imported_from", {}).get("parameters", [])
    for r in sorted(records, key=lambda r: not r["used"]):  # used first, then the rest as found
        span = ""
        if "min" in r:
            span = f" = {r['min']:.6g}" if r["min"] == r["max"] else f" = {r['min']:.6g} .. {r['max']:.6g}"
        out.append(f"  {r['name']:<12} {'used' if r['used'] else 'NOT used':<9} {r['source']}{span}"
                   + (f"  ({r['note']})" if r.get("note") else ""))
    return out


__all__ = ["import_pdebench", "parameter_report"]

"""Validation of a particle dataset folder (or one split file) against ``docs/particle-format.md``.

Like the grid check it never raises on a bad dataset: it returns every problem, each naming the
file, group and key at fault with what was expected and what was found. Problems are errors;
notes are things to know that do not make the data wrong (a ``force.py`` that sciflow will not
run, missing LagrangeBench statistics that sciflow computes itself).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sciflow.data.check import Issue
from sciflow.data.particles.box import Box
from sciflow.data.particles.format import GROUP_DIGITS
from sciflow.data.particles.metadata import (
    METADATA_FILE,
    SPLITS,
    STAT_KEYS,
    ParticleFormatError,
    read_metadata,
)
from sciflow.data.particles.reader import FOREIGN_CODE, foreign_code

CHUNK = 64  # frames in memory at a time while scanning values


@dataclass
class ParticleCheck:
    """Errors (``issues``) and notes of one dataset or file."""

    issues: list[Issue] = field(default_factory=list)
    notes: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues


def is_particle_path(path: str | os.PathLike) -> bool:
    """True for a folder with ``metadata.json`` or a ``<split>.h5``, or an HDF5 file whose
    top-level groups hold ``position`` (LagrangeBench's layout rather than the Well's)."""
    p = Path(path)
    if p.is_dir():
        return (p / METADATA_FILE).is_file() or any((p / f"{s}.h5").is_file() for s in SPLITS)
    if p.is_file() and p.suffix in (".h5", ".hdf5"):
        try:
            with h5py.File(p, "r") as f:
                if "dimensions" in f or "t0_fields" in f:
                    return False
                return any(isinstance(g, h5py.Group) and "position" in g for g in f.values())
        except OSError:
            return p.name in {f"{s}.h5" for s in SPLITS} and (p.parent / METADATA_FILE).is_file()
    return False


def check_particle_path(path: str | os.PathLike, *, scan_values: bool = True) -> ParticleCheck:
    """Check a dataset folder (metadata and every split file) or one split file (with the
    ``metadata.json`` of its folder)."""
    p = Path(path)
    report = ParticleCheck()
    folder = p if p.is_dir() else p.parent
    for code in foreign_code(folder):
        report.notes.append(Issue(code.name, FOREIGN_CODE))
    meta: dict[str, Any] | None = None
    try:
        meta = read_metadata(folder)
    except ParticleFormatError as e:
        report.issues.append(Issue(METADATA_FILE, str(e)))
    if meta is not None:
        missing = [k for k in STAT_KEYS if k not in meta]
        if missing:
            report.notes.append(Issue(METADATA_FILE, f"no {missing}: LagrangeBench needs them; sciflow computes its own"))
    if p.is_dir():
        files = [(s, p / f"{s}.h5") for s in SPLITS]
    elif p.is_file():
        files = [(p.stem if p.stem in SPLITS else None, p)]
    else:
        report.issues.append(Issue(str(p), "no such file or folder"))
        return report
    for split, f in files:
        if not f.is_file():
            expected = meta.get(f"num_trajs_{split}") if meta else None
            if expected:
                report.issues.append(Issue(f.name, f"missing: metadata says num_trajs_{split} = {expected}"))
            elif split == "train":
                report.issues.append(Issue(f.name, "missing: a dataset needs a train split"))
            continue
        _check_file(f, split, meta, report.issues.append, scan_values)
    return report


def _check_file(path: Path, split: str | None, meta: Mapping[str, Any] | None,
                add: Callable[[Issue], None], scan_values: bool) -> None:
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        add(Issue(path.name, f"not a readable HDF5 file (truncated or corrupted?): {e}"))
        return
    with f:
        try:
            _check_open(f, path, split, meta, add, scan_values)
        except Exception as e:  # noqa: BLE001
            # the superblock was readable but a later read failed: report it, never raise
            add(Issue(path.name, f"cannot read the file to the end (truncated or corrupted?): {type(e).__name__}: {e}"))


def _check_open(f: h5py.File, path: Path, split: str | None, meta: Mapping[str, Any] | None,
                add: Callable[[Issue], None], scan_values: bool) -> None:
    name = path.name
    keys = sorted(f.keys())
    if not keys:
        add(Issue(name, "no trajectory groups"))
        return
    if "0" * GROUP_DIGITS not in keys:
        add(Issue(name, f"no group '{'0' * GROUP_DIGITS}': LagrangeBench reads the sequence length from it"))
    dim = meta["dim"] if meta else None
    known_types = set(meta["particle_types"]) if meta else None
    names = meta["parameter_names"] if meta else []
    box = Box.from_metadata(meta) if meta else None
    fluid_box = Box.make(meta["fluid_bounds"], meta["periodic_boundary_conditions"]) if meta and meta.get("fluid_bounds") else None
    kinematic = meta["kinematic_particle_types"] if meta else []
    frames: set[int] = set()
    for key in keys:
        where = f"{name}: {key}"
        g = f[key]
        if not isinstance(g, h5py.Group):
            add(Issue(where, "top-level item is not a trajectory group (LagrangeBench would read it as one)"))
            continue
        if len(key) != GROUP_DIGITS or not key.isdigit():
            add(Issue(where, f"group name is not {GROUP_DIGITS} digits ('00000', '00001', ...)"))
        if "position" not in g or "particle_type" not in g:
            add(Issue(where, f"missing dataset(s) {[k for k in ('position', 'particle_type') if k not in g]}"))
            continue
        pos, typ = g["position"], g["particle_type"]
        if pos.ndim != 3 or (dim is not None and pos.shape[2] != dim):
            add(Issue(f"{where}/position", f"expected shape (T, N, {dim if dim else 'D'}), found {pos.shape}"))
            continue
        if pos.dtype.kind != "f":
            add(Issue(f"{where}/position", f"expected a float dtype, found {pos.dtype}"))
        T, N, _ = pos.shape
        frames.add(T)
        if typ.shape != (N,):
            add(Issue(f"{where}/particle_type", f"expected shape ({N},) (N of position {pos.shape}), found {typ.shape}"))
            continue
        if typ.dtype.kind not in "iu":
            add(Issue(f"{where}/particle_type", f"expected an integer dtype, found {typ.dtype}"))
            continue
        types = np.asarray(typ[()])
        if known_types is not None:
            unknown = sorted(set(np.unique(types).tolist()) - known_types)
            if unknown:
                add(Issue(f"{where}/particle_type", f"unknown type id(s) {unknown}; metadata particle_types "
                                                    f"knows {sorted(known_types)}"))
        if meta and N > meta.get("num_particles_max", N):
            add(Issue(f"{where}/position", f"{N} particles, more than num_particles_max = {meta['num_particles_max']}"))
        if names:
            p = g.attrs.get("sciflow_params")
            if p is None or np.size(p) != len(names):
                add(Issue(f"{where}/@sciflow_params", f"expected {len(names)} values {names}, "
                                                      f"found {'none' if p is None else np.size(p)}"))
            elif not np.isfinite(np.asarray(p, dtype=float)).all():
                add(Issue(f"{where}/@sciflow_params", "holds NaN/Inf"))
        if scan_values and pos.dtype.kind == "f":
            moving = ~np.isin(types, kinematic)
            _scan(pos, where, box, fluid_box, moving, add)
    if split and meta:
        n = meta.get(f"num_trajs_{split}")
        if n is not None and n != len(keys):
            add(Issue(name, f"{len(keys)} trajectories, metadata num_trajs_{split} = {n}"))
        length = meta.get(f"sequence_length_{split}")
        if length is not None and frames and frames != {length + 1}:
            add(Issue(name, f"frame counts {sorted(frames)}, metadata sequence_length_{split} = {length} "
                            f"says {length + 1} frames (GNS convention: frames - 1)"))
    if len(frames) > 1:
        add(Issue(name, f"trajectories have different frame counts {sorted(frames)}; LagrangeBench reads "
                        f"every trajectory with the length of the first"))


def _scan(pos: h5py.Dataset, where: str, box: Box | None, fluid_box: Box | None, moving: np.ndarray,
          add: Callable[[Issue], None]) -> None:
    """Count NaN/Inf and out-of-box positions, chunk by chunk; report each kind once with the first
    offender."""
    first: dict[str, tuple[int, int, int, list[float]]] = {}
    counts = {"nan": 0, "out": 0, "fluid": 0}
    for s in range(0, pos.shape[0], CHUNK):
        a = np.asarray(pos[s: s + CHUNK], dtype=np.float64)
        checks = {"nan": ~np.isfinite(a).all(axis=-1)}
        if box is not None:
            checks["out"] = box.outside(a) & np.isfinite(a).all(axis=-1)
        if fluid_box is not None:
            checks["fluid"] = fluid_box.outside(a) & moving[None] & np.isfinite(a).all(axis=-1)
        for kind, bad in checks.items():
            c = int(bad.sum())
            if c and kind not in first:
                t, n = np.argwhere(bad)[0]
                first[kind] = (c, s + int(t), int(n), [float(f"{v:.6g}") for v in a[t, n]])
            counts[kind] += c
    for kind, (_, t, n, x) in first.items():
        what = {"nan": "NaN/Inf positions",
                "out": f"positions outside the bounds {[list(b) for b in box.bounds] if box else ''}",
                "fluid": f"fluid positions outside fluid_bounds {[list(b) for b in fluid_box.bounds] if fluid_box else ''}"}[kind]
        add(Issue(f"{where}/position", f"{counts[kind]} {what}; first: particle {n} at frame {t}"
                                       + (f", at {x}" if kind != "nan" else "")))


def particle_summary(path: str | os.PathLike) -> str:
    """A readable description of a particle dataset folder or split file."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    lines = [f"{p}"]
    try:
        meta = read_metadata(folder)
    except ParticleFormatError as e:
        meta = None
        lines.append(f"  metadata     unreadable: {e}")
    if meta:
        lines.append(f"  dataset      {meta.get('case', folder.name)}: {meta['dim']}D particles, bounds {meta['bounds']}, "
                     f"periodic {meta['periodic_boundary_conditions']}")
        lines.append(f"  time         dt = {meta['dt']:.4g} s x write_every {meta['write_every']} = "
                     f"{meta['frame_dt']:.4g} s per frame")
        lines.append(f"  spacing      dx = {meta['dx']:.4g}, connectivity radius {meta['default_connectivity_radius']:.4g}")
        lines.append(f"  forcing      {json.dumps(meta['external_force'])}")
        if meta.get("parameter_names"):
            lines.append(f"  parameters   {meta['parameter_names']}")
        for k in STAT_KEYS:
            if k in meta:
                lines.append(f"  {k:<12} {np.array2string(np.asarray(meta[k]), precision=4)}")
    files = [p / f"{s}.h5" for s in SPLITS] if p.is_dir() else [p]
    for f in files:
        if not f.is_file():
            continue
        try:
            with h5py.File(f, "r") as h:
                keys = sorted(h.keys())
                shapes = [h[k]["position"].shape for k in keys if isinstance(h[k], h5py.Group) and "position" in h[k]]
                types = np.unique(np.concatenate([h[k]["particle_type"][()] for k in keys[:1]])) if keys else []
                params = [np.asarray(h[k].attrs["sciflow_params"]) for k in keys if "sciflow_params" in h[k].attrs]
        except (OSError, KeyError) as e:
            lines.append(f"  {f.name:<12} unreadable: {e}")
            continue
        Ts = sorted({s[0] for s in shapes})
        Ns = sorted({s[1] for s in shapes})
        lines.append(f"  {f.name:<12} {len(keys)} trajectories, frames {Ts}, particles {Ns[0] if len(Ns) == 1 else f'{Ns[0]}..{Ns[-1]}'}"
                     f", types (first) {list(np.asarray(types).tolist())}")
        if params and meta and meta.get("parameter_names"):
            P = np.stack(params)
            for k, n in enumerate(meta["parameter_names"]):
                lo, hi = P[:, k].min(), P[:, k].max()
                lines.append(f"    {n:<10} {lo:.6g}" + (f" .. {hi:.6g}" if hi > lo else ""))
    for code in foreign_code(folder):
        lines.append(f"  note         {code.name}: Python code in the data folder, never run by sciflow")
    return "\n".join(lines)

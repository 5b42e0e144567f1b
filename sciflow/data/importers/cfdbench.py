"""Import the CFDBench release (Luo, Chen, Zhang 2023) into sciflow's format.

The release holds ``<problem>/<subset>/caseNNNN/{case.json, u.npy, v.npy}``: ``u`` and ``v`` are
``(T, ny, nx)`` arrays (rows = y, row 0 at the bottom), interpolated to 64 x 64, with no time file
and no geometry mask. Each case becomes one file ``data/<split>/<problem>_<subset>_<case>.hdf5``
with the t1 field ``velocity`` (x-first, ``(1, T, nx, ny, 2)``).

Parameter vectors (names match sciflow's own generators, so imported and generated data mix), with
the case.json key each is read from:

==========  ==================================================================================
cavity      U (vel_top), rho (density), mu (viscosity), height, width
tube        u_in (vel_in), rho, mu, diameter (height), length (width)
dam         u_in (velocity), rho, mu, barrier_height, barrier_width
cylinder    u_in (vel_in), rho, mu, diameter (2 radius), x1 (abs x_min), x2 (x_max),
            y1 (abs y_min), y2 (y_max)
==========  ==================================================================================

Frame spacing: cavity 0.1 s and cylinder 0.001 s (the CFDBench paper); tube and dam read
``dt`` / ``delta_time`` / ``time_step`` / ``frame_dt`` from case.json when present and otherwise
assume 0.1 s, the frame spacing CFDBench's own loaders use for them (the card says which).

Geometry mask: CFDBench ships none. For cylinder and dam, a cell whose u and v are exactly zero in
every frame lies inside the obstacle (the interpolation writes exact zeros there), so the mask is
``True`` where any frame moves. Cavity and tube have no obstacle and get no mask.

Coordinates are cell centres over the physical box: cavity ``[0, width] x [0, height]``, tube
``[0, length] x [0, diameter]``, dam ``[0, width] x [0, height]`` from case.json (1.5 m x 0.4 m
when absent), cylinder ``[-x1, x2] x [-y1, y2]`` (cylinder at the origin).
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

import sciflow
from sciflow.data.case import BoundarySpec
from sciflow.data.errors import DataError, DataFormatError, DataNotFoundError, DataValueError
from sciflow.data.format import write_well
from sciflow.data.importers._common import (
    assign_splits,
    check_split,
    count_splits,
    prepare_outputs,
    split_card,
    write_card,
)

PROBLEMS = ("cavity", "tube", "dam", "cylinder")
_DT = {"cavity": 0.1, "cylinder": 0.001}
_DT_ASSUMED = 0.1
_DT_KEYS = ("dt", "delta_time", "time_step", "frame_dt")

_ident: Callable[[float], float] = float

# problem -> [(our name, case.json keys tried in order, transform)]
_PARAMS: dict[str, list[tuple[str, tuple[str, ...], Callable[[float], float]]]] = {
    "cavity": [("U", ("vel_top",), _ident), ("rho", ("density",), _ident), ("mu", ("viscosity",), _ident),
               ("height", ("height",), _ident), ("width", ("width",), _ident)],
    "tube": [("u_in", ("vel_in", "velocity"), _ident), ("rho", ("density",), _ident),
             ("mu", ("viscosity",), _ident), ("diameter", ("height",), _ident), ("length", ("width",), _ident)],
    "dam": [("u_in", ("velocity", "vel_in"), _ident), ("rho", ("density",), _ident),
            ("mu", ("viscosity",), _ident), ("barrier_height", ("barrier_height",), _ident),
            ("barrier_width", ("barrier_width",), _ident)],
    "cylinder": [("u_in", ("vel_in", "velocity"), _ident), ("rho", ("density",), _ident),
                 ("mu", ("viscosity",), _ident), ("diameter", ("radius",), lambda r: 2.0 * r),
                 ("x1", ("x_min",), abs), ("x2", ("x_max",), _ident),
                 ("y1", ("y_min",), abs), ("y2", ("y_max",), _ident)],
}
_MASKED = ("cylinder", "dam")
_OBSTACLE = {"cylinder": "cylinder", "dam": "barrier"}  # wall group over the solid cells


@dataclass
class _Case:
    subset: str
    folder: Path
    meta: dict[str, Any]
    params: dict[str, float]
    dt: float
    dt_source: str

    @property
    def case_id(self) -> str:
        return f"{self.subset}/{self.folder.name}"


def _case_number(p: Path) -> tuple[int, str]:
    m = re.search(r"(\d+)$", p.name)
    return (int(m.group(1)) if m else -1, p.name)


def _find_cases(src: Path) -> list[Path]:
    """Case folders under ``src`` (a problem folder, a subset folder or one case folder)."""
    if (src / "case.json").is_file():
        return [src]
    cases = sorted((p for p in src.iterdir() if (p / "case.json").is_file()), key=_case_number)
    if cases:
        return cases
    out = []
    for sub in sorted(p for p in src.iterdir() if p.is_dir()):
        out += sorted((p for p in sub.iterdir() if (p / "case.json").is_file()), key=_case_number)
    if not out:
        raise DataNotFoundError(
            f"{src}: no CFDBench case folder (holding case.json) here, in its subfolders or one level deeper"
        )
    return out


def _detect_problem(src: Path) -> str:
    for p in [src, *src.parents][:3]:
        if p.name.lower() in PROBLEMS:
            return p.name.lower()
    raise DataError(
        f"{src}: cannot tell the CFDBench problem from the folder names "
        f"({[p.name for p in [src, *src.parents][:3]]}); pass problem= one of {PROBLEMS}"
    )


def _number(meta: dict[str, Any], keys: tuple[str, ...], where: Path) -> float:
    for k in keys:
        if k in meta:
            try:
                v = float(meta[k])
            except (TypeError, ValueError):
                raise DataFormatError(f"{where}: key {k!r} holds {meta[k]!r}, expected a number") from None
            if not math.isfinite(v):
                raise DataFormatError(f"{where}: key {k!r} holds {v}, expected a finite number")
            return v
    raise DataFormatError(f"{where}: missing key {keys[0]!r}" + (f" (or {list(keys[1:])})" if keys[1:] else "")
                   + f"; the file has {sorted(meta)}")


def _read_case(problem: str, folder: Path) -> _Case:
    path = folder / "case.json"
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise DataFormatError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise DataFormatError(f"{path}: expected a JSON object, found {type(meta).__name__}")
    params = {name: fn(_number(meta, keys, path)) for name, keys, fn in _PARAMS[problem]}
    if problem in _DT:
        dt, source = _DT[problem], "CFDBench paper"
    else:
        key = next((k for k in _DT_KEYS if k in meta), None)
        if key is not None:
            dt, source = _number(meta, (key,), path), f"case.json key {key!r}"
        else:
            dt, source = _DT_ASSUMED, "assumed (case.json has no time step; CFDBench's loaders use 0.1 s)"
    if not dt > 0:
        raise DataFormatError(f"{path}: time step {dt} is not positive")
    return _Case(folder.parent.name, folder, meta, params, float(dt), source)


def _extent(problem: str, case: _Case) -> tuple[tuple[float, float], tuple[float, float]]:
    p = case.params
    if problem == "cavity":
        return (0.0, p["width"]), (0.0, p["height"])
    if problem == "tube":
        return (0.0, p["length"]), (0.0, p["diameter"])
    if problem == "cylinder":
        return (-p["x1"], p["x2"]), (-p["y1"], p["y2"])
    where = case.folder / "case.json"
    width = _number(case.meta, ("width",), where) if "width" in case.meta else 1.5
    height = _number(case.meta, ("height",), where) if "height" in case.meta else 0.4
    return (0.0, width), (0.0, height)


def _centres(lo: float, hi: float, n: int, where: str) -> np.ndarray:
    if not hi > lo:
        raise DataFormatError(f"{where}: domain [{lo}, {hi}] is empty")
    return lo + (np.arange(n) + 0.5) * (hi - lo) / n


def _boundaries(problem: str, params: dict[str, float], nx: int, ny: int) -> list[BoundarySpec]:
    def side(name: str, kind: str, dim: str, first: bool, value: float = 0.0) -> BoundarySpec:
        m = np.zeros(nx if dim == "x" else ny, bool)
        m[0 if first else -1] = True
        return BoundarySpec(name, kind, [dim], m, ["velocity"], np.array([value]))

    if problem == "cavity":
        return [side("left", "wall", "x", True), side("right", "wall", "x", False),
                side("bottom", "wall", "y", True), side("top", "wall", "y", False, params["U"])]
    # inflow on the left (for dam only on its lower part), outflow on the right, walls top and bottom
    return [side("left", "open", "x", True, params["u_in"]), side("right", "open", "x", False),
            side("bottom", "wall", "y", True), side("top", "wall", "y", False)]


def _npy(f: Path, mmap: bool = False) -> np.ndarray:
    """One ``(T, ny, nx)`` numeric array from a .npy file; errors name the file."""
    if not f.is_file():
        raise DataNotFoundError(f"{f}: missing (a CFDBench case holds case.json, u.npy, v.npy)")
    try:
        a = np.load(f, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - numpy raises several kinds on a damaged file
        raise DataFormatError(f"{f}: not a readable .npy file (truncated or corrupted?): {type(e).__name__}: {e}") from e
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "iuf":
        raise DataFormatError(f"{f}: expected numbers, found {getattr(a, 'dtype', type(a).__name__)}")
    if a.ndim != 3 or 0 in a.shape:
        raise DataFormatError(f"{f}: expected shape (T, ny, nx), found {a.shape}")
    return a


def _load_velocity(folder: Path) -> np.ndarray:
    """``u.npy``, ``v.npy`` ``(T, ny, nx)`` -> velocity ``(T, nx, ny, 2)`` float32, x-first."""
    arrays = [_npy(folder / f"{comp}.npy") for comp in ("u", "v")]
    if arrays[0].shape != arrays[1].shape:
        raise DataFormatError(f"{folder}: u.npy has shape {arrays[0].shape}, v.npy {arrays[1].shape}")
    vel = np.stack(arrays, axis=-1).astype(np.float32)  # (T, ny, nx, 2)
    return np.ascontiguousarray(np.swapaxes(vel, 1, 2))  # rows are y: x-first is a transpose


def _shape(folder: Path) -> tuple[int, int, int]:
    """``(T, nx, ny)`` of a case, from the .npy header only."""
    shape = _npy(folder / "u.npy", mmap=True).shape
    return int(shape[0]), int(shape[2]), int(shape[1])


def import_cfdbench(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    name: str | None = None,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    progress: bool = True,
    problem: str | None = None,
) -> Path:
    """Convert CFDBench case folders into a sciflow dataset folder; return ``out/card.yaml``.

    Args:
        src: a problem folder (``cavity/``), a subset folder (``cavity/bc/``) or one case folder.
        out: dataset folder to write (``out/data/{train,valid,test}/*.hdf5`` and ``out/card.yaml``).
        name: dataset name (default ``cfdbench_<problem>``, plus ``_<subset>`` for one subset).
        split: train / valid / test fractions, by case; reproducible from ``seed``.
        problem: cavity, tube, dam or cylinder; default from the folder names.

    Resumable: a case whose output file exists is skipped. A case with NaN/Inf values is skipped
    with a warning and listed in the card under ``skipped``.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise DataNotFoundError(f"{src}: not a folder")
    check_split(split)
    folders = _find_cases(src)
    problem = (problem or _detect_problem(src)).lower()
    if problem not in PROBLEMS:
        raise DataError(f"problem {problem!r} is not one of {PROBLEMS}")
    cases = [_read_case(problem, f) for f in folders]  # every case.json is checked before writing
    dts = {c.dt for c in cases}
    if len(dts) > 1:
        a, b = cases[0], next(c for c in cases if c.dt != cases[0].dt)
        raise DataValueError(f"frame spacing differs between cases: {a.folder} has {a.dt}, {b.folder} has {b.dt}")
    dt = cases[0].dt
    subsets = list(dict.fromkeys(c.subset for c in cases))
    name = name or f"cfdbench_{problem}" + (f"_{subsets[0]}" if len(subsets) == 1 and src.name != problem else "")

    assigned = assign_splits([c.case_id for c in cases], split, seed)
    file_of = {c.case_id: f"{problem}_{c.subset}_{c.folder.name}.hdf5" for c in cases}
    done = prepare_outputs(out, {file_of[c.case_id]: assigned[c.case_id] for c in cases})

    shapes = {c.case_id: _shape(c.folder) for c in cases}
    grids = {s[1:] for s in shapes.values()}
    if len(grids) > 1:
        raise DataFormatError(f"{src}: cases have different grids {sorted(grids)}; import them separately")
    frames: list[int] = []
    skipped: list[dict[str, Any]] = []
    for c in tqdm(cases, desc=f"import {name}", disable=not progress):
        target = out / "data" / assigned[c.case_id] / file_of[c.case_id]
        if done[target.name]:
            frames.append(shapes[c.case_id][0])
            continue
        vel = _load_velocity(c.folder)
        bad = int(vel.size - np.isfinite(vel).sum())
        if bad:
            warnings.warn(f"{c.folder}: {bad} NaN/Inf values in u/v; case skipped", stacklevel=2)
            skipped.append({"case": c.case_id, "reason": f"{bad} NaN/Inf values"})
            continue
        T, nx, ny, _ = vel.shape
        (x0, x1), (y0, y1) = _extent(problem, c)
        coords = {"x": _centres(x0, x1, nx, str(c.folder)), "y": _centres(y0, y1, ny, str(c.folder))}
        mask = np.any(vel != 0, axis=(0, 3)) if problem in _MASKED else None
        write_well(
            target,
            dataset_name=name,
            time=np.arange(T) * dt,
            coords=coords,
            t1_fields={"velocity": vel[None]},
            params=c.params,
            mask=mask,
            boundaries=_boundaries(problem, c.params, nx, ny) + (
                [BoundarySpec(_OBSTACLE[problem], "wall", ["x", "y"], ~mask, ["velocity"])]
                if mask is not None else []),
            attrs={
                "dt": dt,
                "generator": {"importer": "sciflow.data.importers.cfdbench", "source_format": "cfdbench",
                              "problem": problem, "sciflow_version": sciflow.__version__},
                "cases": [{"case_id": c.case_id, "subset": c.subset, "split": assigned[c.case_id],
                           "source": f"{problem}/{c.case_id}", "case_json": c.meta}],
            },
        )
        frames.append(T)
    if not frames:
        raise DataValueError(f"{src}: no case could be imported ({len(skipped)} skipped for NaN/Inf values)")

    skipped_ids = {s["case"] for s in skipped}
    counts = count_splits(assigned[c.case_id] for c in cases if c.case_id not in skipped_ids)
    mask_text = (
        "Geometry mask derived at import: cells where u and v are exactly zero in every frame are "
        "solid (CFDBench ships no mask)." if problem in _MASKED else "No obstacle, no mask."
    )
    card = {
        "name": name,
        "description": (
            f"CFDBench {problem} (Luo, Chen, Zhang 2023), subsets {', '.join(subsets)}: {len(frames)} "
            f"cases imported with sciflow.data.importers.cfdbench from the release layout "
            f"<problem>/<subset>/caseNNNN/(case.json, u.npy, v.npy); u, v transposed from rows = y to "
            f"x-first. Frame spacing {dt} s ({cases[0].dt_source}). {mask_text} Velocity only "
            f"(the release has no pressure)."
        ),
        "path": ".",
        "fields": ["velocity"],
        "params": [p for p, _, _ in _PARAMS[problem]],
        "dt": dt,
        "frames": int(min(frames)),
        "grid": list(next(iter(grids))),
        "split": split_card(split, seed),
        "imported_from": {"format": "cfdbench", "source": src.name, "problem": problem,
                          "subsets": subsets, "cases": counts, "frames_min": int(min(frames)),
                          "frames_max": int(max(frames)), "mask": problem in _MASKED},
    }
    if skipped:
        card["skipped"] = skipped
    return write_card(out, card)

"""Validation of a file against the layout in ``docs/data-format.md``.

``check_file`` never raises on a bad file: it returns every problem it finds, each naming the
group and key at fault with what was expected and what was found, so that one run of
``sciflow data check`` lists everything to fix.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from sciflow.data.format import BC_TYPES, FIELD_GROUPS
from sciflow.data.reader import _names

REQUIRED_ROOT_ATTRS = ("dataset_name", "grid_type", "n_spatial_dims", "n_trajectories", "simulation_parameters")


@dataclass(frozen=True)
class Issue:
    """One problem in a file: where (``group/key``) and what."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def check_file(path: str | os.PathLike, *, scan_values: bool = True) -> list[Issue]:
    """Validate one HDF5 file; an empty list means it follows the layout.

    Checks root attributes, ``dimensions`` (monotonic time and coordinates), ``scalars``, every
    field's shape against its ``*_varying`` attributes, float32 dtype, NaN/Inf counts (when
    ``scan_values``), and boundary-condition groups.
    """
    path = Path(path)
    if not path.is_file():
        return [Issue(str(path), "no such file")]
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        return [Issue(str(path), f"not a readable HDF5 file (truncated or corrupted?): {e}")]
    issues: list[Issue] = []

    def add(where: str, message: str) -> None:
        issues.append(Issue(where, message))

    with f:
        try:
            _check_open(f, add, scan_values)
        except Exception as e:  # noqa: BLE001
            # the superblock was readable but a later read failed (h5py raises many kinds on a
            # damaged file, or returns None for a broken link): report it, never raise
            add(str(path), f"cannot read the file to the end (corrupted?): {type(e).__name__}: {e}")
    return issues


def _infer_trajectories(f: h5py.File) -> int:
    """Trajectory count from the first sample-varying field, when the root attribute is missing."""
    for group in FIELD_GROUPS:
        if group in f:
            for ds in f[group].values():
                if isinstance(ds, h5py.Dataset) and bool(ds.attrs.get("sample_varying", True)) and ds.ndim:
                    return int(ds.shape[0])
    return -1


def _check_open(f: h5py.File, add: Callable[[str, str], None], scan_values: bool) -> None:
    for a in REQUIRED_ROOT_ATTRS:
        if a not in f.attrs:
            add(f"/@{a}", "missing root attribute")
    if "dt" in f.attrs:
        dt = np.asarray(f.attrs["dt"])
        if dt.size != 1 or dt.dtype.kind not in "iuf" or not np.isfinite(dt).all() or not dt.reshape(-1)[0] > 0:
            add("/@dt", f"expected a positive number (seconds between frames), found {f.attrs['dt']!r}")
    try:
        if "n_spatial_dims" in f.attrs:
            D = int(f.attrs["n_spatial_dims"])
        else:  # reported above; carry on with what dimensions/ says
            D = len(_names(f["dimensions"].attrs.get("spatial_dims", []))) if "dimensions" in f else 0
        B = int(f.attrs["n_trajectories"]) if "n_trajectories" in f.attrs else _infer_trajectories(f)
    except (TypeError, ValueError) as e:
        add("/", f"n_spatial_dims / n_trajectories are not integers: {e}")
        return

    # dimensions ---------------------------------------------------------------------------
    T = -1
    S: tuple[int, ...] = ()
    if "dimensions" not in f:
        add("dimensions", "missing group")
    else:
        g = f["dimensions"]
        dims = _names(g.attrs.get("spatial_dims", []))
        if "spatial_dims" not in g.attrs:
            add("dimensions/@spatial_dims", "missing attribute")
        elif len(dims) != D:
            add("dimensions/@spatial_dims", f"expected {D} names (n_spatial_dims), found {dims}")
        if "time" not in g:
            add("dimensions/time", "missing dataset")
        else:
            t = np.asarray(g["time"][()])
            T = t.shape[0] if t.ndim == 1 else -1
            if t.ndim != 1:
                add("dimensions/time", f"expected shape (T,), found {t.shape}")
            elif T > 1 and not np.all(np.diff(t) > 0):
                add("dimensions/time", "not strictly increasing")
        sizes = []
        for d in dims:
            if d not in g:
                add(f"dimensions/{d}", "missing dataset (listed in spatial_dims)")
                continue
            c = np.asarray(g[d][()])
            per_sample = bool(g[d].attrs.get("sample_varying", False))
            if not (c.ndim == 1 or (per_sample and c.ndim == 2 and c.shape[0] == B)):
                add(f"dimensions/{d}", f"expected shape (n,), or ({B}, n) with sample_varying, found {c.shape}")
                continue
            if c.shape[-1] > 1 and not np.all(np.diff(c, axis=-1) > 0):
                add(f"dimensions/{d}", "coordinates not strictly increasing")
            sizes.append(c.shape[-1])
        S = tuple(sizes)

    # scalars / parameters -------------------------------------------------------------------
    params = _names(f.attrs.get("simulation_parameters", []))
    scal = f["scalars"] if "scalars" in f else None
    if scal is None and params:
        add("scalars", "missing group")
    for p in params:
        if scal is not None and p in scal:
            v = scal[p]
            ok = v.shape in ((), (1,)) or (bool(v.attrs.get("sample_varying", False)) and v.shape == (B,))
            if not ok:
                add(f"scalars/{p}", f"expected shape () or ({B},), found {v.shape}")
            elif scan_values and not np.all(np.isfinite(v[()])):
                add(f"scalars/{p}", "holds NaN/Inf")
        elif p not in f.attrs:
            add(f"scalars/{p}", "parameter listed in simulation_parameters is missing")

    # fields ---------------------------------------------------------------------------------
    n_fields = 0
    for order, group in enumerate(FIELD_GROUPS):
        if group not in f:
            continue
        g = f[group]
        if "field_names" not in g.attrs:
            add(f"{group}/@field_names", "missing attribute")
        listed = _names(g.attrs.get("field_names", []))
        for name in g:
            if name not in listed:
                add(f"{group}/{name}", "dataset not listed in field_names")
        for name in listed:
            where = f"{group}/{name}"
            if name not in g:
                add(where, "listed in field_names but missing")
                continue
            ds = g[name]
            sv = bool(ds.attrs.get("sample_varying", True))
            tv = bool(ds.attrs.get("time_varying", True))
            for a in ("sample_varying", "time_varying", "dim_varying"):
                if a not in ds.attrs:
                    add(f"{where}/@{a}", "missing attribute")
            dv = np.asarray(ds.attrs.get("dim_varying", np.ones(D, bool)), dtype=bool).reshape(-1)
            spatial = tuple(n for n, v in zip(S, dv) if v) if len(dv) == len(S) else S
            expected = (B,) * sv + (T,) * tv + spatial + (D,) * order
            if ds.shape != expected:
                add(where, f"expected shape {expected} (B, T, *S, D^order as the attributes say), "
                           f"found {ds.shape}")
            if ds.dtype != np.float32:
                add(where, f"expected dtype float32, found {ds.dtype}")
            n_fields += tv
            if scan_values and ds.dtype.kind == "f" and ds.shape == expected:
                bad = _count_nonfinite(ds)
                if bad:
                    add(where, f"{bad} NaN/Inf values out of {ds.size}")
    if n_fields == 0:
        add("t0_fields", "no time-varying field in t0_fields, t1_fields or t2_fields")

    # boundary conditions ----------------------------------------------------------------------
    if "boundary_conditions" in f:
        dims = _names(f["dimensions"].attrs.get("spatial_dims", [])) if "dimensions" in f else []
        for name, g in f["boundary_conditions"].items():
            where = f"boundary_conditions/{name}"
            bc = g.attrs.get("bc_type")
            bc = bc.decode() if isinstance(bc, bytes) else bc
            if bc not in BC_TYPES:
                add(f"{where}/@bc_type", f"expected one of {BC_TYPES}, found {bc!r}")
            assoc = _names(g.attrs.get("associated_dims", []))
            unknown = [d for d in assoc if d not in dims]
            if unknown:
                add(f"{where}/@associated_dims", f"{unknown} not in spatial_dims {dims}")
            if "mask" not in g:
                add(f"{where}/mask", "missing dataset")
            elif not unknown and assoc:
                want = tuple(S[dims.index(d)] for d in assoc)
                if g["mask"].shape != want:
                    add(f"{where}/mask", f"expected shape {want} (associated_dims), found {g['mask'].shape}")


def _count_nonfinite(ds: h5py.Dataset) -> int:
    """Count NaN/Inf values, reading one leading index at a time to bound memory."""
    if ds.ndim == 0 or ds.shape[0] == 0:
        return int(not np.isfinite(ds[()]).all()) if ds.ndim == 0 else 0
    total = 0
    for i in range(ds.shape[0]):
        a = ds[i]
        total += int(a.size - np.count_nonzero(np.isfinite(a)))
    return total

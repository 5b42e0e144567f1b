"""Writing sciflow's on-disk format: HDF5 in The Well's layout, plus a few sciflow attributes.

The layout is specified in ``docs/data-format.md``. In short: root attributes describe the
dataset, ``dimensions`` holds time and coordinates, ``scalars`` holds the operating parameters,
``t0_fields`` / ``t1_fields`` / ``t2_fields`` hold scalar / vector / tensor fields with x-first
axes as float32, and ``boundary_conditions`` holds one group per condition. A field's leading axes
are ``(B, T)`` minus the ones its ``sample_varying`` / ``time_varying`` attributes switch off.

Every write goes to a temporary file in the target folder and is renamed into place, so a killed
writer never leaves a half-written file under the final name.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]

from sciflow.data.case import BoundarySpec, Case
from sciflow.data.errors import DataError, DataWriteError

FORMAT_VERSION = "1"
FIELD_GROUPS = ("t0_fields", "t1_fields", "t2_fields")
BC_TYPES = ("wall", "open", "periodic")
MASK_FIELD = "mask"


TMP_SUFFIX = ".tmp"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A failed write (full disk, file-size limit, read-only folder) removes the temporary file and
    raises :class:`DataWriteError` naming ``path``; whatever was under ``path`` before is untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as e:
        raise DataWriteError(f"{path}: cannot write in {path.parent}: {e.strerror or e}") from e
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); a finished file gets the usual permissions
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException as e:
        try:
            tmp_path.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError | RuntimeError) and not isinstance(e, DataError) and _is_write_failure(e):
            raise DataWriteError(
                f"{path}: could not be written ({type(e).__name__}: {e}); nothing was left under this "
                f"name and files written before are kept"
            ) from e
        raise


def _is_write_failure(e: BaseException) -> bool:
    """An OS-level write failure (h5py reports some as RuntimeError with the errno in the text)."""
    if isinstance(e, OSError):
        return True
    text = str(e).lower()
    return any(s in text for s in ("write failed", "no space", "file too large", "unable to flush",
                                   "read-only", "errno"))


# Files up to this size are assembled in memory and reach the disk through one plain write: HDF5
# segfaults when a write fails inside it (disk full, file-size limit; h5py issues 914, 1775), so
# the library never touches a file that can fail. Larger files are written by HDF5 directly after
# a free-space check.
IN_MEMORY_MAX = 512 * 2**20
# HDF5 1.10 object headers carry checksums, and every field chunk a fletcher32 checksum, so a
# damaged file is reported as an error instead of read as other numbers (or, for damaged
# metadata of the older format, sending the HDF5 library into an endless loop). Readable by
# HDF5 >= 1.10 (2016), i.e. any current h5py.
LIBVER: tuple[str, str] | None = ("v110", "latest")
FLETCHER32 = True


def write_hdf5(path: Path, fill: Callable[[h5py.File], None], estimate: int = 0) -> None:
    """Create the HDF5 file ``path`` with ``fill(f)``. Files up to :data:`IN_MEMORY_MAX` bytes
    (``estimate``) are built in memory, so a failing disk raises a Python ``OSError`` instead of
    crashing inside HDF5; the write is flushed to disk (fsync) before it returns."""
    if estimate <= IN_MEMORY_MAX:
        buf = io.BytesIO()
        with h5py.File(buf, "w", libver=LIBVER) as f:
            fill(f)
        with open(path, "wb") as out:
            out.write(buf.getbuffer())
            out.flush()
            os.fsync(out.fileno())
        return
    room = shutil.disk_usage(path.parent).free
    if resource is not None:
        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        room = room if soft == resource.RLIM_INFINITY else min(room, soft)
    if estimate * 1.05 + 2**20 > room:
        raise DataWriteError(f"{path}: needs about {estimate / 2**20:.0f} MiB, only {room / 2**20:.0f} MiB can be "
                             f"written there")
    with h5py.File(path, "w", libver=LIBVER) as f:
        fill(f)
        f.flush()


def remove_debris(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed writer left in ``folder`` (``.<name>.<random>.tmp``);
    return them. Only for a folder no other writer is using at the same time."""
    folder = Path(folder)
    removed = []
    for p in folder.glob(f".*{TMP_SUFFIX}") if folder.is_dir() else []:
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
    return removed


def _str_list(values: Sequence[str]) -> np.ndarray:
    # h5py stores a numpy array of Python str as variable-length UTF-8 strings.
    return np.array(list(values), dtype=h5py.string_dtype())


def _field_attrs(ds: h5py.Dataset, n_dims: int, sample_varying: bool, time_varying: bool) -> None:
    ds.attrs["dim_varying"] = np.ones(n_dims, dtype=bool)
    ds.attrs["sample_varying"] = sample_varying
    ds.attrs["time_varying"] = time_varying


def write_well(
    path: str | os.PathLike,
    *,
    dataset_name: str,
    time: np.ndarray,
    coords: Mapping[str, np.ndarray],
    t0_fields: Mapping[str, np.ndarray] | None = None,
    t1_fields: Mapping[str, np.ndarray] | None = None,
    t2_fields: Mapping[str, np.ndarray] | None = None,
    params: Mapping[str, np.ndarray | float] | None = None,
    mask: np.ndarray | None = None,
    boundaries: Sequence[BoundarySpec] = (),
    attrs: Mapping[str, Any] | None = None,
    grid_type: str = "cartesian",
    compression: str | None = None,
) -> Path:
    """Write one HDF5 file of ``B`` trajectories in The Well's layout, atomically.

    Args:
        time: ``(T,)`` frame times.
        coords: axis name -> ``(n,)`` coordinates, x first.
        t0_fields: name -> ``(B, T, *S)`` scalar fields.
        t1_fields: name -> ``(B, T, *S, D)`` vector fields.
        t2_fields: name -> ``(B, T, *S, D, D)`` tensor fields.
        params: operating parameters, name -> ``(B,)`` array or one float shared by all
            trajectories; written to ``scalars`` (and as root attributes when shared).
        mask: fluid mask ``(*S)`` (shared) or ``(B, *S)``; stored as the constant t0 field
            ``mask`` (float32 0/1), which the layout allows.
        boundaries: boundary conditions, one group each.
        attrs: extra root attributes (non-strings are stored as JSON under ``sciflow_<key>``).
    Returns:
        The final path.
    """
    t0_fields, t1_fields, t2_fields = dict(t0_fields or {}), dict(t1_fields or {}), dict(t2_fields or {})
    params = dict(params or {})
    dims = list(coords)
    # a coordinate is (n,), or (B, n) when it varies between trajectories (e.g. domain length)
    S = tuple(int(np.shape(coords[d])[-1]) for d in dims)
    D = len(dims)
    T = int(np.shape(time)[0])
    all_fields = {**t0_fields, **t1_fields, **t2_fields}
    if not all_fields:
        raise DataError(f"{path}: nothing to write, no fields given")
    B = int(next(iter(all_fields.values())).shape[0])
    for group, fields, tail in (
        ("t0_fields", t0_fields, ()),
        ("t1_fields", t1_fields, (D,)),
        ("t2_fields", t2_fields, (D, D)),
    ):
        for name, a in fields.items():
            if a.shape != (B, T, *S, *tail):
                raise DataError(
                    f"{path}: {group}/{name}: expected shape {(B, T, *S, *tail)}, found {a.shape}"
                )
    if mask is not None and np.shape(mask) not in (S, (B, *S)):
        raise DataError(f"{path}: mask: expected shape {S} or {(B, *S)}, found {np.shape(mask)}")

    def fill(f: h5py.File) -> None:
        f.attrs["dataset_name"] = dataset_name
        f.attrs["grid_type"] = grid_type
        f.attrs["n_spatial_dims"] = D
        f.attrs["n_trajectories"] = B
        f.attrs["simulation_parameters"] = _str_list(params)
        f.attrs["sciflow_format_version"] = FORMAT_VERSION
        for name, v in params.items():
            v = np.asarray(v, dtype=np.float64)
            if v.ndim == 0 or np.all(v == v.flat[0]):
                f.attrs[name] = float(v.flat[0])
        for key, value in (attrs or {}).items():
            if isinstance(value, str | int | float | bool | np.number):
                f.attrs[key] = value
            else:
                f.attrs[f"sciflow_{key}"] = json.dumps(value, default=_json_default)

        g = f.create_group("dimensions")
        g.attrs["spatial_dims"] = _str_list(dims)
        ds = g.create_dataset("time", data=np.asarray(time, dtype=np.float32))
        ds.attrs["sample_varying"] = False
        ds.attrs["time_varying"] = True
        for d in dims:
            c = np.asarray(coords[d], dtype=np.float32)
            if c.ndim == 2 and c.shape[0] != B:
                raise DataError(f"{path}: dimensions/{d}: expected shape ({S[dims.index(d)]},) or ({B}, ...), found {c.shape}")
            ds = g.create_dataset(d, data=c)
            ds.attrs["sample_varying"] = c.ndim == 2
            ds.attrs["time_varying"] = False

        g = f.create_group("scalars")
        g.attrs["field_names"] = _str_list(params)
        for name, v in params.items():
            v = np.asarray(v, dtype=np.float32)
            varying = v.ndim > 0 and v.shape[0] == B and not np.all(v == v.flat[0])
            if v.ndim > 0 and v.shape != (B,):
                raise DataError(f"{path}: scalars/{name}: expected shape () or {(B,)}, found {v.shape}")
            ds = g.create_dataset(name, data=v if varying else np.float32(v.flat[0]))
            ds.attrs["sample_varying"] = bool(varying)
            ds.attrs["time_varying"] = False

        opts = {"compression": compression} if compression else {}
        for group, fields in (("t0_fields", t0_fields), ("t1_fields", t1_fields), ("t2_fields", t2_fields)):
            g = f.create_group(group)
            names = list(fields)
            if group == "t0_fields" and mask is not None:
                names.append(MASK_FIELD)
            g.attrs["field_names"] = _str_list(names)
            for name, a in fields.items():
                # one frame per chunk: windows read a few consecutive frames of one trajectory
                chunks = (1, 1, *a.shape[2:])
                ds = g.create_dataset(name, data=np.asarray(a, dtype=np.float32), chunks=chunks,
                                      fletcher32=FLETCHER32, **opts)
                _field_attrs(ds, D, sample_varying=True, time_varying=True)
                if group == "t2_fields":
                    ds.attrs["symmetric"] = False
                    ds.attrs["antisymmetric"] = False
            if group == "t0_fields" and mask is not None:
                m = np.asarray(mask, dtype=np.float32)
                ds = g.create_dataset(MASK_FIELD, data=m)
                _field_attrs(ds, D, sample_varying=m.ndim == D + 1, time_varying=False)
                ds.attrs["sciflow_role"] = "mask"

        g = f.create_group("boundary_conditions")
        for bc in boundaries:
            if bc.bc_type not in BC_TYPES:
                raise DataError(f"{path}: boundary {bc.name!r}: bc_type {bc.bc_type!r} not in {BC_TYPES}")
            h = g.create_group(bc.name)
            h.attrs["bc_type"] = bc.bc_type
            h.attrs["associated_dims"] = _str_list(bc.associated_dims)
            h.attrs["associated_fields"] = _str_list(bc.associated_fields)
            h.attrs["sample_varying"] = False
            h.attrs["time_varying"] = False
            bmask = np.asarray(bc.mask, dtype=bool)
            h.create_dataset("mask", data=bmask)
            values = np.zeros(int(bmask.sum()), np.float32) if bc.values is None else bc.values
            h.create_dataset("values", data=np.asarray(values, dtype=np.float32))

    est = 4 * (sum(np.size(a) for a in all_fields.values()) + (0 if mask is None else np.size(mask)))
    with atomic_path(path) as tmp:
        write_hdf5(tmp, fill, est)
    return Path(path)


def write_cases(
    path: str | os.PathLike,
    cases: Sequence[Case],
    *,
    dataset_name: str,
    attrs: Mapping[str, Any] | None = None,
    compression: str | None = None,
) -> Path:
    """Write solver cases (same grid, frames and fields) as the trajectories of one file.

    Per-case provenance (``Case.attrs``) goes to the root attribute ``sciflow_cases`` as JSON.
    """
    if not cases:
        raise DataError(f"{path}: no cases to write")
    first = cases[0]
    for k, c in enumerate(cases):
        c.validate()
        if c.spatial_shape != first.spatial_shape or c.n_frames != first.n_frames:
            raise DataError(
                f"{path}: case {k} has grid {c.spatial_shape} x {c.n_frames} frames, "
                f"case 0 has {first.spatial_shape} x {first.n_frames}"
            )
        if list(c.params) != list(first.params):
            raise DataError(f"{path}: case {k} parameters {list(c.params)} != {list(first.params)}")

    def stack(get: Any) -> dict[str, np.ndarray]:
        return {n: np.stack([get(c)[n] for c in cases]) for n in get(first)}

    masks = [c.mask for c in cases]
    if masks[0] is None:
        mask = None
    elif all(np.array_equal(m, masks[0]) for m in masks):
        mask = masks[0]
    else:
        mask = np.stack(masks)
    coords = {}
    for d, c0 in first.coords.items():
        same = all(np.array_equal(c.coords[d], c0) for c in cases)
        coords[d] = c0 if same else np.stack([c.coords[d] for c in cases])
    merged = dict(attrs or {})
    merged["cases"] = [c.attrs for c in cases]
    return write_well(
        path,
        dataset_name=dataset_name,
        time=first.time,
        coords=coords,
        t0_fields=stack(lambda c: c.scalar_fields),
        t1_fields=stack(lambda c: c.vector_fields),
        params={n: np.array([c.params[n] for c in cases]) for n in first.params},
        mask=mask,
        boundaries=first.boundaries,
        attrs=merged,
        compression=compression,
    )


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot store {type(o).__name__} as JSON")

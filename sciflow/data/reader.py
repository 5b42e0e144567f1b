"""Lazy reading of Well-layout HDF5 files.

A :class:`WellFile` reads metadata once and opens the HDF5 handle lazily, per process: the handle
is dropped when the object is pickled (DataLoader workers, DDP spawn) and reopened after a fork,
so several processes never share one h5py handle.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sciflow.data.errors import DataFormatError, DataNotFoundError
from sciflow.data.format import FIELD_GROUPS, MASK_FIELD
from sciflow.data.sniff import foreign_hint

__all__ = ["DataFormatError", "FieldInfo", "WellFile", "field_groups"]


def _names(value: Any) -> list[str]:
    if isinstance(value, str | bytes):
        value = [value]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(value)]


def field_groups(channels: list[str], spatial_dims: list[str]) -> dict[str, list[int]]:
    """Group channel indices by the stored field they come from, using the channel naming of
    :class:`WellFile` (``velocity_x``, ``velocity_y`` -> ``velocity``; ``s_xx``... -> ``s``).

    A suffix counts only when every component of the vector (or tensor) is present, so a scalar
    field that happens to end in ``_x`` stays its own group.
    """
    suffixes = {1: list(spatial_dims), 2: [a + b for a in spatial_dims for b in spatial_dims]}
    groups: dict[str, list[int]] = {}
    taken: set[int] = set()
    for order in (2, 1):
        for i, c in enumerate(channels):
            base, _, suffix = c.rpartition("_")
            if i in taken or not base or suffix != suffixes[order][0]:
                continue
            members = [f"{base}_{s}" for s in suffixes[order]]
            if all(m in channels for m in members):
                idx = [channels.index(m) for m in members]
                groups[base] = idx
                taken.update(idx)
    for i, c in enumerate(channels):
        if i not in taken:
            groups[c] = [i]
    return dict(sorted(groups.items(), key=lambda kv: kv[1][0]))


@dataclass(frozen=True)
class FieldInfo:
    """One stored field: ``group/name`` with tensor order (0, 1, 2) and its channel names."""

    group: str
    name: str
    order: int
    sample_varying: bool
    time_varying: bool
    channels: tuple[str, ...]


class WellFile:
    """Read-only, lazily opened view of one HDF5 file in the Well layout.

    Channels: a scalar field ``p`` gives one channel ``p``; a vector field ``velocity`` in 2D gives
    ``velocity_x``, ``velocity_y`` (suffixes are the spatial dimension names); a tensor field
    ``s`` gives ``s_xx, s_xy, ...``. The constant field ``mask`` is not a channel.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataNotFoundError(f"{self.path}: no such file")
        self._handle: h5py.File | None = None
        self._pid: int | None = None
        try:
            self._load_metadata()
        except Exception as e:  # noqa: BLE001 - h5py and numpy raise many kinds on a bad file
            hint = foreign_hint(self.path)
            if hint is not None:
                raise DataFormatError(hint) from e
            if isinstance(e, DataFormatError) and str(self.path) in str(e):
                raise
            raise DataFormatError(
                f"{self.path}: cannot read as an HDF5 file in the Well layout (truncated or corrupted?): "
                f"{type(e).__name__}: {e}"
            ) from e

    # -- handle management -------------------------------------------------------------------
    @property
    def h5(self) -> h5py.File:
        if self._handle is None or self._pid != os.getpid():
            if not self.path.is_file():
                raise DataNotFoundError(f"{self.path}: no such file (it was there when the dataset was opened)")
            try:
                self._handle = h5py.File(self.path, "r")
            except OSError as e:
                raise DataFormatError(f"{self.path}: cannot open as HDF5 (truncated or corrupted?): {e}") from e
            self._pid = os.getpid()
        return self._handle

    def close(self) -> None:
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_pid"] = None
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- metadata ----------------------------------------------------------------------------
    def _require(self, f: h5py.File, key: str) -> Any:
        if key not in f:
            raise DataFormatError(f"{self.path}: missing group or dataset {key!r}")
        return f[key]

    def _dataset(self, f: h5py.File, key: str) -> h5py.Dataset:
        ds = self._require(f, key)
        if not isinstance(ds, h5py.Dataset):
            raise DataFormatError(f"{self.path}: {key} is a group, expected a dataset")
        return ds

    def _int_attr(self, f: h5py.File, attr: str, lo: int, hi: int) -> int:
        if attr not in f.attrs:
            raise DataFormatError(f"{self.path}: missing root attribute {attr!r}")
        v = np.asarray(f.attrs[attr])
        if v.size != 1 or v.dtype.kind not in "iuf" or not np.isfinite(v).all() or float(v.flat[0]) % 1:
            raise DataFormatError(f"{self.path}: root attribute {attr!r} = {f.attrs[attr]!r}, expected an integer")
        n = int(v.flat[0])
        if not lo <= n <= hi:
            raise DataFormatError(f"{self.path}: root attribute {attr!r} = {n}, expected {lo}..{hi}")
        return n

    def _axis(self, f: h5py.File, key: str, B: int) -> np.ndarray:
        """A time or coordinate axis: finite, strictly increasing, ``(n,)`` (or ``(B, n)``)."""
        a = self._dataset(f, key)
        if a.dtype.kind not in "iuf":
            raise DataFormatError(f"{self.path}: {key}: expected numbers, found dtype {a.dtype}")
        v = np.asarray(a[()], dtype=np.float64)
        if not (v.ndim == 1 or (key != "dimensions/time" and v.ndim == 2 and v.shape[0] == B)) or v.shape[-1] < 1:
            want = "(T,)" if key == "dimensions/time" else f"(n,) or ({B}, n)"
            raise DataFormatError(f"{self.path}: {key}: expected shape {want}, found {v.shape}")
        if not np.isfinite(v).all():
            raise DataFormatError(f"{self.path}: {key}: holds NaN/Inf")
        if v.shape[-1] > 1 and not np.all(np.diff(v, axis=-1) > 0):
            raise DataFormatError(f"{self.path}: {key}: not strictly increasing")
        return v

    def _load_metadata(self) -> None:
        with h5py.File(self.path, "r") as f:
            D = self._int_attr(f, "n_spatial_dims", 1, 3)
            B = self._int_attr(f, "n_trajectories", 1, 2**40)
            self.dataset_name = str(_decode_attr(f.attrs.get("dataset_name", self.path.stem)))
            self.n_trajectories = B
            dims = self._require(f, "dimensions")
            self.spatial_dims = _names(dims.attrs.get("spatial_dims", []))
            if len(self.spatial_dims) != D or len(set(self.spatial_dims)) != D:
                raise DataFormatError(
                    f"{self.path}: dimensions.attrs['spatial_dims'] = {self.spatial_dims} but "
                    f"n_spatial_dims = {D}"
                )
            self.time = self._axis(f, "dimensions/time", B)
            # per-trajectory coordinates (B, n) are allowed; `coords` holds trajectory 0's
            self._coords = {d: self._axis(f, f"dimensions/{d}", B) for d in self.spatial_dims}
            self.coords = {d: c if c.ndim == 1 else c[0] for d, c in self._coords.items()}
            S = tuple(len(c) for c in self.coords.values())
            T = self.time.shape[0]
            self.fields: list[FieldInfo] = []
            self.mask_info: FieldInfo | None = None
            for order, group in enumerate(FIELD_GROUPS):
                if group not in f:
                    continue
                for name in _names(f[group].attrs.get("field_names", [])):
                    key = f"{group}/{name}"
                    ds = self._dataset(f, key)
                    if order == 0:
                        channels: tuple[str, ...] = (name,)
                    elif order == 1:
                        channels = tuple(f"{name}_{d}" for d in self.spatial_dims)
                    else:
                        channels = tuple(f"{name}_{a}{b}" for a in self.spatial_dims for b in self.spatial_dims)
                    info = FieldInfo(
                        group, name, order,
                        _flag(ds.attrs.get("sample_varying", True)),
                        _flag(ds.attrs.get("time_varying", True)),
                        channels,
                    )
                    # shapes are checked here, from metadata, so that a bad file fails when it is
                    # opened and names itself, not later inside a batch
                    expected = (B,) * info.sample_varying + (T,) * info.time_varying + S + (D,) * order
                    if ds.shape != expected:
                        raise DataFormatError(
                            f"{self.path}: {key}: expected shape {expected} (B, T, *S, D^{order} as its "
                            f"sample_varying / time_varying attributes say), found {ds.shape}"
                        )
                    if ds.dtype.kind not in "iufb":
                        raise DataFormatError(f"{self.path}: {key}: expected float32, found dtype {ds.dtype}")
                    if name == MASK_FIELD and order == 0:
                        if info.time_varying:
                            raise DataFormatError(f"{self.path}: {key}: the mask must not be time_varying")
                        self.mask_info = info
                    elif info.time_varying:
                        # constant fields other than the mask are metadata, not channels
                        if name in {i.name for i in self.fields}:
                            raise DataFormatError(f"{self.path}: {key}: field name {name!r} used twice")
                        self.fields.append(info)
            scal = f["scalars"] if "scalars" in f else None
            self.param_names = _names(f.attrs.get("simulation_parameters", []))
            if len(set(self.param_names)) != len(self.param_names):
                raise DataFormatError(f"{self.path}: simulation_parameters {self.param_names} repeats a name")
            self._params = np.zeros((self.n_trajectories, len(self.param_names)), np.float64)
            for k, p in enumerate(self.param_names):
                if scal is not None and p in scal:
                    v = np.asarray(self._dataset(scal, p)[()])
                    if v.dtype.kind not in "iufb" or v.shape not in ((), (1,), (B,)):
                        raise DataFormatError(
                            f"{self.path}: scalars/{p}: expected a number of shape () or ({B},), "
                            f"found {v.dtype} {v.shape}"
                        )
                    self._params[:, k] = v.astype(np.float64).reshape(-1)
                elif p in f.attrs:
                    v = np.asarray(f.attrs[p])
                    if v.dtype.kind not in "iufb" or v.size != 1:
                        raise DataFormatError(f"{self.path}: root attribute {p!r} = {f.attrs[p]!r}, expected a number")
                    self._params[:, k] = float(v.flat[0])
                else:
                    raise DataFormatError(
                        f"{self.path}: parameter {p!r} listed in simulation_parameters but found "
                        f"neither in scalars/ nor as a root attribute"
                    )
            self.attrs = {k: _decode_attr(v) for k, v in f.attrs.items()}
            if "dt" in self.attrs:
                dt = np.asarray(self.attrs["dt"])
                if dt.size != 1 or dt.dtype.kind not in "iuf" or not np.isfinite(dt).all() or not dt.flat[0] > 0:
                    raise DataFormatError(f"{self.path}: root attribute 'dt' = {self.attrs['dt']!r}, "
                                          f"expected a positive number (seconds between frames)")
            if self.mask_info is not None:
                self._mask = np.asarray(f[f"t0_fields/{MASK_FIELD}"][()]) > 0.5
            else:
                self._mask = None
            self.boundaries = {
                name: {k: _decode_attr(v) for k, v in g.attrs.items()}
                for name, g in (f["boundary_conditions"].items() if "boundary_conditions" in f else [])
            }
        if not self.fields:
            raise DataFormatError(f"{self.path}: no time-varying field in t0_fields, t1_fields or t2_fields")

    @property
    def n_steps(self) -> int:
        return int(self.time.shape[0])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(len(self.coords[d]) for d in self.spatial_dims)

    @cached_property
    def channel_names(self) -> list[str]:
        return [c for info in self.fields for c in info.channels]

    @property
    def dt(self) -> float:
        """Frame spacing in seconds: the root attribute ``dt`` when written (exact), else the mean
        spacing of the float32 time axis."""
        if "dt" in self.attrs:
            return float(self.attrs["dt"])
        return float(np.diff(self.time).mean()) if self.n_steps > 1 else float("nan")

    def params(self, traj: int) -> np.ndarray:
        """Operating parameters of trajectory ``traj``: ``(P,)`` float64."""
        return self._params[traj]

    def coords_of(self, traj: int) -> dict[str, np.ndarray]:
        """Coordinates of trajectory ``traj``: axis name -> ``(n,)``."""
        return {d: c if c.ndim == 1 else c[traj] for d, c in self._coords.items()}

    def mask(self, traj: int) -> np.ndarray | None:
        """Fluid mask ``(*S)`` bool of trajectory ``traj``, or None when the file has none."""
        if self._mask is None:
            return None
        return self._mask[traj] if self._mask.ndim == len(self.spatial_dims) + 1 else self._mask

    def read(self, traj: int, start: int = 0, stop: int | None = None, step: int = 1,
             fields: list[str] | None = None) -> np.ndarray:
        """Frames ``start:stop:step`` of trajectory ``traj`` as ``(t, C, *S)`` float32.

        ``fields`` selects stored field names (e.g. ``["velocity", "pressure"]``) in that order;
        None reads every time-varying field in file order.
        """
        if not 0 <= traj < self.n_trajectories:
            raise IndexError(f"{self.path}: trajectory {traj} out of range [0, {self.n_trajectories})")
        infos = self.select(fields)
        D = len(self.spatial_dims)
        h5 = self.h5
        out = []
        for info in infos:
            key = f"{info.group}/{info.name}"
            index: tuple[Any, ...] = ((traj,) if info.sample_varying else ()) + (slice(start, stop, step),)
            try:
                a = np.asarray(h5[key][index], dtype=np.float32)  # (t, *S, [D, [D]])
            except Exception as e:  # noqa: BLE001 - h5py raises many kinds on a damaged chunk
                raise DataFormatError(
                    f"{self.path}: cannot read {key}, trajectory {traj}, frames {start}:{stop}:{step} "
                    f"(truncated or corrupted?): {type(e).__name__}: {e}"
                ) from e
            if a.shape[1: 1 + D] != self.spatial_shape:
                # the file changed since it was opened
                raise DataFormatError(f"{self.path}: {key}: spatial shape {a.shape[1: 1 + D]}, the file's "
                                      f"coordinates say {self.spatial_shape}")
            if info.order == 0:
                out.append(a[:, None])
            else:
                a = a.reshape(*a.shape[: 1 + D], -1)
                out.append(np.moveaxis(a, -1, 1))
        return np.concatenate(out, axis=1)

    def select(self, fields: list[str] | None) -> list[FieldInfo]:
        """The FieldInfo of each requested field name, in order (all when None)."""
        if fields is None:
            return list(self.fields)
        by_name = {i.name: i for i in self.fields}
        missing = [n for n in fields if n not in by_name]
        if missing:
            raise DataFormatError(
                f"{self.path}: field(s) {missing} not found; the file has {sorted(by_name)}"
            )
        return [by_name[n] for n in fields]

    def summary(self) -> str:
        """A readable description: fields, shapes, parameters, time span, value ranges."""
        lines = [
            f"{self.path}",
            f"  dataset      {self.dataset_name} ({self.attrs.get('grid_type', '?')} grid, "
            f"{len(self.spatial_dims)}D)",
            f"  trajectories {self.n_trajectories}",
            f"  time         {self.n_steps} frames, t = {self.time[0]:.4g} .. {self.time[-1]:.4g}"
            f" (dt = {self.dt:.4g})",
            "  grid         " + ", ".join(
                f"{d}: {len(c)} points in [{c[0]:.4g}, {c[-1]:.4g}]" for d, c in self.coords.items()
            ),
            "  fields",
        ]
        h5 = self.h5
        for info in self.fields:
            ds = h5[f"{info.group}/{info.name}"]
            a = self.read(0, fields=[info.name])
            finite = a[np.isfinite(a)]
            span = f"[{finite.min():.4g}, {finite.max():.4g}]" if finite.size else "[no finite value]"
            bad = a.size - finite.size
            lines.append(
                f"    {info.group}/{info.name:<12} shape {ds.shape} {ds.dtype} channels "
                f"{list(info.channels)} range(traj 0) {span}" + (f", {bad} NaN/Inf" if bad else "")
            )
        if self._mask is not None:
            lines.append(f"    mask         {self._mask.shape}, fluid fraction {self._mask.mean():.3f}")
        if self.param_names:
            lines.append("  parameters")
            for k, p in enumerate(self.param_names):
                v = self._params[:, k]
                lines.append(f"    {p:<12} " + (f"{v[0]:.6g}" if np.all(v == v[0]) else
                                              f"{v.min():.6g} .. {v.max():.6g} (varies)"))
        if self.boundaries:
            lines.append("  boundary conditions")
            for name, a in self.boundaries.items():
                lines.append(f"    {name:<12} {a.get('bc_type')} on {a.get('associated_dims')}")
        return "\n".join(lines)


def _flag(v: Any) -> bool:
    """A boolean attribute (bool, 0/1, or a one-element array of them)."""
    a = np.asarray(v)
    if a.size != 1 or a.dtype.kind not in "biu":
        raise DataFormatError(f"expected a boolean attribute, found {v!r}")
    return bool(a.flat[0])


def _decode_attr(v: Any) -> Any:
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    if isinstance(v, np.ndarray):
        return [_decode_attr(x) for x in v.tolist()] if v.dtype.kind in "OSU" else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v

"""Where the results collector puts its per-step arrays: in memory, or streamed into a netCDF file.

Both stores start from a *skeleton* (an ``xarray.Dataset`` with the coordinates, the small
per-trajectory variables and the attributes) and a set of large per-step variables that are
filled slice by slice (``write(name, index, value)``).

:class:`NetCDFStore` writes the skeleton with xarray into ``<path>.partial``, adds the large
variables with h5netcdf (chunked one step of one trajectory at a time, gzip for fields, NaN /
False where nothing was written yet) and writes every slice as it arrives, so memory does not
grow with the number of steps. Nothing is ever written at ``path`` itself until the whole result
is there: :meth:`NetCDFStore.finish` renames the finished file into place, so a killed rollout
never leaves a half-written result at ``path`` and an older result there stays intact until the
new one is whole. Trajectories marked complete are recorded in the partial file (flushed), and a
rerun with the same ``run_key`` reopens it and continues; a partial file of another run, or one
that a kill left unreadable, is started over.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5netcdf
import h5py
import numpy as np
import xarray as xr

from sciflow.results.files import encode_attrs

_RUN_KEY = "sciflow_run_key"
_DONE = "sciflow_complete_trajectories"


@dataclass(frozen=True)
class Variable:
    """A large per-step variable: its dims, dtype (float32, float64 or bool) and attributes;
    ``compress``: gzip it (fields)."""

    dims: tuple[str, ...]
    dtype: Any
    attrs: Mapping[str, Any] = field(default_factory=dict)
    compress: bool = False


def _fill(dtype: Any) -> Any:
    return False if np.dtype(dtype).kind == "b" else np.nan


class MemoryStore:
    """Numpy arrays in memory; :meth:`dataset` builds the ``xarray.Dataset``."""

    def __init__(self, skeleton: xr.Dataset, variables: Mapping[str, Variable]):
        self.skeleton, self.variables = skeleton, dict(variables)
        sizes = dict(skeleton.sizes)
        self.arrays = {
            name: np.full([sizes[d] for d in v.dims], _fill(v.dtype), dtype=v.dtype)
            for name, v in self.variables.items()
        }
        self.complete = np.zeros(sizes["trajectory"], bool)

    def write(self, name: str, index: tuple, value: np.ndarray) -> None:
        self.arrays[name][index] = value

    def mark_complete(self, positions: np.ndarray) -> None:
        self.complete[positions] = True

    def dataset(self) -> xr.Dataset:
        data = {name: (v.dims, self.arrays[name], dict(v.attrs)) for name, v in self.variables.items()}
        return self.skeleton.assign(data)

    def close(self) -> None:
        pass


class NetCDFStore:
    """Streams the variables into ``<path>.partial``; :meth:`finish` renames it to ``path``.

    Args:
        path: the result file.
        skeleton, variables: the layout (see the module docstring).
        run_key: identifies the run (its inputs); a partial file with the same key is continued.
    """

    def __init__(self, path: str | os.PathLike, skeleton: xr.Dataset, variables: Mapping[str, Variable],
                 run_key: str):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.variables = dict(variables)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self._resume(run_key)
        if self.file is None:
            self._create(skeleton, run_key)
            self.file = self._open_partial()
        self._open = True
        self.complete = np.zeros(skeleton.sizes["trajectory"], bool)
        self.complete[json.loads(self.file.attrs.get(_DONE, "[]"))] = True

    def _resume(self, run_key: str) -> h5netcdf.File | None:
        if not self.partial.exists():
            return None
        try:
            f = self._open_partial()
        except Exception:  # a kill mid-write can leave HDF5 unreadable: start over
            self.partial.unlink()
            return None
        if f.attrs.get(_RUN_KEY) == run_key and set(self.variables) <= set(f.variables):
            return f
        f.close()
        self._h5.close()
        self.partial.unlink()
        return None

    def _open_partial(self) -> h5netcdf.File:
        # h5netcdf's own flush does not reach the disk; keep the h5py handle to flush it for real
        self._h5 = h5py.File(self.partial, "a")
        try:
            return h5netcdf.File(self._h5, "a")
        except Exception:
            self._h5.close()
            raise

    def _create(self, skeleton: xr.Dataset, run_key: str) -> None:
        out = skeleton.copy()
        out.attrs = {**encode_attrs(skeleton.attrs), _RUN_KEY: run_key, _DONE: "[]"}
        self.partial.unlink(missing_ok=True)
        out.to_netcdf(self.partial, engine="h5netcdf")
        sizes = dict(skeleton.sizes)
        with h5netcdf.File(self.partial, "a") as f:
            for name, v in self.variables.items():
                dtype = np.dtype(v.dtype)
                kw: dict[str, Any] = {}
                if v.compress:
                    # one chunk per (trajectory, time) slice: every step writes whole chunks
                    kw = {"chunks": tuple(1 if d in ("member", "trajectory", "time") else sizes[d]
                                          for d in v.dims), "compression": "gzip", "compression_opts": 4}
                if dtype.kind == "b":  # netCDF has no bool: int8 flagged the way xarray decodes it
                    var = f.create_variable(name, v.dims, "i1", fillvalue=np.int8(0), **kw)
                    var.attrs["dtype"] = "bool"
                else:
                    var = f.create_variable(name, v.dims, dtype, fillvalue=dtype.type(np.nan), **kw)
                for k, val in v.attrs.items():
                    var.attrs[k] = val

    def write(self, name: str, index: tuple, value: np.ndarray) -> None:
        value = np.asarray(value)
        if value.dtype.kind == "b":
            value = value.astype(np.int8)
        self.file.variables[name][index] = value

    def mark_complete(self, positions: np.ndarray) -> None:
        """Record trajectories as finished, after what was written for them is on disk."""
        self.file.flush()
        self._h5.flush()
        self.complete[positions] = True
        self.file.attrs[_DONE] = json.dumps(np.flatnonzero(self.complete).tolist())
        self._h5.flush()

    def finish(self) -> Path:
        """Close the file and move it into place; returns ``path``."""
        del self.file.attrs[_RUN_KEY]
        del self.file.attrs[_DONE]
        self.close()
        os.replace(self.partial, self.path)
        return self.path

    def close(self) -> None:
        """Close without finishing (the partial file stays for a rerun)."""
        if self._open:
            self.file.close()
            self._h5.close()
            self._open = False


__all__ = ["MemoryStore", "NetCDFStore", "Variable"]

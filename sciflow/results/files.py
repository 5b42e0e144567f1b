"""Rollout results on disk: netCDF (engine h5netcdf) written atomically, read back whole or lazily.

Attributes netCDF cannot hold as they are (lists, dicts, booleans, None) travel as JSON strings,
listed in the ``sciflow_json_attrs`` attribute, and are decoded by :func:`read_results` and
:func:`open_results`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from sciflow.data.format import atomic_path

# attributes netCDF cannot hold as they are (lists, dicts, booleans, None) travel as JSON
_JSON_ATTRS = "sciflow_json_attrs"


def encode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes as netCDF can store them (see the module docstring)."""
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


def decode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`encode_attrs`."""
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
    out.attrs = encode_attrs(ds.attrs)
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
    ds.attrs = decode_attrs(ds.attrs)
    return ds


def open_results(path: str | os.PathLike) -> xr.Dataset:
    """Open a results file lazily (arrays are read when used; the file stays open until
    ``ds.close()``), with the attributes decoded. For rollouts too large to load whole."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such results file")
    ds = xr.open_dataset(path, engine="h5netcdf")
    ds.attrs = decode_attrs(ds.attrs)
    return ds


__all__ = ["decode_attrs", "encode_attrs", "open_results", "read_results", "write_results"]

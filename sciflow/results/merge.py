"""Merge rollout results of disjoint trajectory sets (one file per rank) into one file.

A distributed rollout (:mod:`sciflow.distributed`) has each rank write the results of its own
trajectories; rank 0 then joins them along ``trajectory`` in the order given. Every variable
without a ``trajectory`` dimension (coordinates, member labels) and every attribute must agree
between the parts: parts of different runs are refused, naming the first difference.

Memory: the first part is written whole, then each further part is appended one variable at a
time, so the peak is one variable of one part, not the merged rollout. The output is written
beside its final path and renamed into place only when complete.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5netcdf
import numpy as np
import xarray as xr

from sciflow.data.format import atomic_path
from sciflow.results.files import encode_attrs, open_results

DIM = "trajectory"


class MergeError(ValueError):
    """Parts that cannot form one results file; the message names the part and what differs."""


def _check_compatible(first: xr.Dataset, other: xr.Dataset, name: str, first_name: str) -> None:
    a, b = encode_attrs(first.attrs), encode_attrs(other.attrs)
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            raise MergeError(f"{name}: attribute {key!r} is {b.get(key)!r}, {first_name} has {a.get(key)!r}")
    for v in sorted(set(first.variables) | set(other.variables)):
        if v not in first.variables or v not in other.variables:
            raise MergeError(f"{name}: variable {v!r} is in only one of it and {first_name}")
        x, y = first[v], other[v]
        if x.dims != y.dims:
            raise MergeError(f"{name}: variable {v!r} has dims {y.dims}, {first_name} {x.dims}")
        if DIM not in x.dims and not x.equals(y):
            raise MergeError(f"{name}: variable {v!r} differs from {first_name}'s")
        shape = {d: n for d, n in zip(x.dims, x.shape) if d != DIM}
        if shape != {d: n for d, n in zip(y.dims, y.shape) if d != DIM}:
            raise MergeError(f"{name}: variable {v!r} has shape {y.shape}, {first_name} {x.shape} (besides {DIM})")


def merge_results(parts: Sequence[str | os.PathLike], out: str | os.PathLike, *, compress: bool = True) -> Path:
    """Join results files of disjoint trajectories into ``out``, in the order of ``parts``.

    Args:
        parts: finished results files (``sciflow.results.write_results`` or a streamed rollout).
        out: the merged file (written atomically).
        compress: gzip the field variables, as :func:`~sciflow.results.write_results` does.
    """
    if not parts:
        raise MergeError("merge_results: no parts given")
    paths = [Path(p) for p in parts]
    for p in paths:
        if not p.is_file():
            raise MergeError(f"{p}: no such results file (a rank did not finish?)")
    opened = [open_results(p) for p in paths]
    try:
        first = opened[0]
        for p, ds in zip(paths[1:], opened[1:]):
            _check_compatible(first, ds, str(p), str(paths[0]))
        with atomic_path(out) as tmp:
            base = first.copy()
            base.attrs = encode_attrs(first.attrs)
            for var in base.variables.values():
                var.encoding = {}  # the source's chunking does not fit an unlimited dimension
            encoding = {}
            for name, var in base.data_vars.items():
                if compress and var.ndim >= 3 and var.dtype.kind == "f":
                    encoding[name] = {"compression": "gzip", "compression_opts": 4}
            base.to_netcdf(tmp, engine="h5netcdf", encoding=encoding, unlimited_dims=[DIM])
            with h5netcdf.File(tmp, "a") as f:
                for ds in opened[1:]:
                    start = f.dimensions[DIM].size
                    stop = start + ds.sizes[DIM]
                    f.resize_dimension(DIM, stop)
                    for name, var in ds.variables.items():
                        if DIM not in var.dims:
                            continue
                        target = f.variables[name]
                        values = np.asarray(var.values)
                        if values.dtype == bool:
                            values = values.astype(target.dtype)
                        index = tuple(slice(start, stop) if d == DIM else slice(None) for d in var.dims)
                        target[index] = values
    finally:
        for ds in opened:
            ds.close()
    return Path(out)


__all__ = ["MergeError", "merge_results"]

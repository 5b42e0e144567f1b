"""Lazy reading of particle split files, and the rule that code in a data folder is never run.

A :class:`ParticleFile` reads the structure of one split file (groups, shapes, types, parameters)
once, and opens the HDF5 handle lazily per process: the handle is dropped when the object is
pickled (DataLoader workers, DDP spawn) and reopened after a fork. Frames are checked when read
(finite, inside the box), so a bad value is reported with the file, group, frame and particle
the moment anything touches it.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sciflow.data.particles.box import Box
from sciflow.data.particles.metadata import ParticleFormatError
from sciflow.data.reader import _names


class ForeignCodeWarning(UserWarning):
    """A data folder holds Python code (e.g. LagrangeBench's ``force.py``); sciflow does not run it."""


def foreign_code(root: str | os.PathLike) -> list[Path]:
    """Python files in a dataset folder (``force.py`` and any other ``*.py``), sorted. Never imported."""
    root = Path(root)
    return sorted(root.glob("*.py")) if root.is_dir() else []


FOREIGN_CODE = ("Python code in a data folder is never imported or run by sciflow; declare the forcing "
                "as data instead (metadata.json 'external_force', e.g. "
                '{"law": "gravity", "vector": [0, -9.81]}; docs/particle-format.md)')


def warn_foreign_code(root: str | os.PathLike) -> list[Path]:
    """Warn once per Python file found in ``root``; returns the files."""
    found = foreign_code(root)
    for p in found:
        warnings.warn(f"{p}: {FOREIGN_CODE}", ForeignCodeWarning, stacklevel=3)
    return found


class ParticleFile:
    """Read-only, lazily opened view of one split file (``train.h5`` ...).

    Args:
        path: the HDF5 file.
        parameter_names: the dataset's parameter names (metadata ``parameter_names``); every
            trajectory must then carry a ``sciflow_params`` attribute of that length.
        box: when given, frames read are checked to lie inside it.
    """

    def __init__(self, path: str | os.PathLike, parameter_names: Sequence[str] = (), box: Box | None = None):
        self.path = Path(path)
        self.parameter_names = list(parameter_names)
        self.box = box
        if not self.path.is_file():
            raise ParticleFormatError(f"{self.path}: no such file")
        self._handle: h5py.File | None = None
        self._pid: int | None = None
        try:
            with h5py.File(self.path, "r") as f:
                self._load_structure(f)
        except ParticleFormatError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
            raise ParticleFormatError(f"{self.path}: not a readable HDF5 file (truncated or corrupted?): {e}") from e

    def _load_structure(self, f: h5py.File) -> None:
        self.keys = sorted(f.keys())  # LagrangeBench's order: h5py lists names sorted
        self.shapes: list[tuple[int, int, int]] = []
        self._types: list[np.ndarray] = []
        self._params: list[np.ndarray] = []
        self._attrs: list[dict[str, Any]] = []
        self._case_meta: list[dict[str, Any]] = []
        P = len(self.parameter_names)
        for key in self.keys:
            g = f[key]
            where = f"{self.path}: group {key!r}"
            if not isinstance(g, h5py.Group):
                raise ParticleFormatError(f"{where}: every top-level item must be a trajectory group, found a dataset")
            for name in ("position", "particle_type"):
                if name not in g:
                    raise ParticleFormatError(f"{where}: missing dataset {name!r}")
            pos, typ = g["position"], g["particle_type"]
            if pos.ndim != 3:
                raise ParticleFormatError(f"{where}/position: expected shape (T, N, D), found {pos.shape}")
            if pos.dtype.kind != "f":
                raise ParticleFormatError(f"{where}/position: expected a float dtype, found {pos.dtype}")
            if typ.shape != (pos.shape[1],):
                raise ParticleFormatError(
                    f"{where}/particle_type: expected shape ({pos.shape[1]},) (N of position {pos.shape}), found {typ.shape}")
            if typ.dtype.kind not in "iu":
                raise ParticleFormatError(f"{where}/particle_type: expected an integer dtype, found {typ.dtype}")
            self.shapes.append(tuple(int(s) for s in pos.shape))
            self._types.append(np.asarray(typ[()], dtype=np.int64))
            raw = g.attrs.get("sciflow_params")
            if P and raw is None:
                raise ParticleFormatError(
                    f"{where}: no attribute 'sciflow_params', but metadata names {P} parameters {self.parameter_names}")
            p = np.asarray(raw, dtype=np.float64).reshape(-1) if P else np.zeros(0)
            if p.shape != (P,):
                raise ParticleFormatError(f"{where}/@sciflow_params: expected {P} values {self.parameter_names}, found {p.size}")
            self._params.append(p)
            self._attrs.append(_json_attr(g.attrs.get("sciflow_case")))
            self._case_meta.append(_json_attr(g.attrs.get("sciflow_metadata")))
        self.root_attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        self.stored_parameter_names = _names(f.attrs.get("sciflow_parameter_names", []))

    # -- handle management -------------------------------------------------------------------
    @property
    def h5(self) -> h5py.File:
        if self._handle is None or self._pid != os.getpid():
            self._handle = h5py.File(self.path, "r")
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

    # -- access --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.keys)

    def _check(self, i: int) -> None:
        if not 0 <= i < len(self.keys):
            raise IndexError(f"{self.path}: trajectory {i} out of range [0, {len(self.keys)})")

    def n_frames(self, i: int) -> int:
        return self.shapes[i][0]

    def n_particles(self, i: int) -> int:
        return self.shapes[i][1]

    def particle_type(self, i: int) -> np.ndarray:
        """``(N,)`` int64 type ids of trajectory ``i``."""
        self._check(i)
        return self._types[i]

    def params(self, i: int) -> np.ndarray:
        """``(P,)`` float64 parameter vector of trajectory ``i``."""
        self._check(i)
        return self._params[i]

    def case_attrs(self, i: int) -> dict[str, Any]:
        """Provenance of trajectory ``i`` (``sciflow_case``; empty for foreign files)."""
        self._check(i)
        return self._attrs[i]

    def case_metadata(self, i: int) -> dict[str, Any]:
        """Solver settings trajectory ``i`` was simulated with (``sciflow_metadata``; may be empty)."""
        self._check(i)
        return self._case_meta[i]

    def read(self, i: int, start: int = 0, stop: int | None = None, step: int = 1) -> np.ndarray:
        """Frames ``start:stop:step`` of trajectory ``i`` as ``(t, N, D)`` float32, checked to be
        finite (and inside the box when one was given)."""
        self._check(i)
        key = self.keys[i]
        try:
            a = np.asarray(self.h5[key]["position"][start:stop:step], dtype=np.float32)
        except (OSError, KeyError, RuntimeError) as e:
            raise ParticleFormatError(f"{self.path}: group {key!r}/position: cannot read frames "
                                      f"{start}:{stop}:{step} (truncated or corrupted?): {e}") from e
        t0 = range(self.shapes[i][0])[start:stop:step]
        bad = ~np.isfinite(a).all(axis=-1)
        if bad.any():
            t, n = np.argwhere(bad)[0]
            raise ParticleFormatError(f"{self.path}: group {key!r}/position: {int(bad.sum())} NaN/Inf positions, "
                                      f"first particle {n} at frame {t0[t]}")
        if self.box is not None:
            out = self.box.outside(a)
            if out.any():
                t, n = np.argwhere(out)[0]
                raise ParticleFormatError(
                    f"{self.path}: group {key!r}/position: {int(out.sum())} positions outside the bounds "
                    f"{[list(b) for b in self.box.bounds]}, first particle {n} at frame {t0[t]}: {a[t, n].tolist()}")
        return a


def _json_attr(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, bytes):
        value = value.decode()
    try:
        out = json.loads(value)
    except (TypeError, json.JSONDecodeError):
        return {}
    return out if isinstance(out, dict) else {}

"""Writing particle trajectories in LagrangeBench's HDF5 layout (spec: ``docs/particle-format.md``).

A split file (``train.h5``, ``valid.h5``, ``test.h5``) holds one group per trajectory, named
``"00000"``, ``"00001"``, ... in order, each with ``position (T, N, D)`` float32 and
``particle_type (N,)`` int32. LagrangeBench's reader lists the file's top-level keys as
trajectories and reads only those two datasets, so sciflow's additions go where it does not look:
group attributes ``sciflow_params`` (the parameter vector, float64 ``(P,)``), ``sciflow_case``
(provenance, JSON) and ``sciflow_metadata`` (the solver settings of that trajectory, JSON), and
root attributes. Every write is atomic (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sciflow.data.format import _json_default, _str_list, atomic_path
from sciflow.data.particles.box import Box
from sciflow.data.particles.metadata import FORMAT_VERSION

GROUP_DIGITS = 5


def group_name(i: int) -> str:
    """Trajectory ``i``'s group name: ``"00000"``, ``"00001"``, ..."""
    return f"{i:0{GROUP_DIGITS}d}"


@dataclass
class ParticleCase:
    """One simulated particle trajectory, ready to be written.

    Attributes:
        position: ``(T, N, D)`` positions of every particle (walls included) at each frame.
        particle_type: ``(N,)`` integer type ids (LagrangeBench's: 0 fluid, 1 wall, 2 moving wall).
        params: operating parameters, name -> value, in the order of the parameter vector.
        metadata: the dataset-level settings this trajectory was simulated with, under
            LagrangeBench's metadata keys (``bounds``, ``periodic_boundary_conditions``, ``dim``,
            ``dx``, ``dt``, ``write_every``, ``default_connectivity_radius``, ``viscosity``,
            ``external_force``, ...); the dataset's ``metadata.json`` is assembled from these.
        attrs: provenance and diagnostics (solver, wall time, mass error, ...).
    """

    position: np.ndarray
    particle_type: np.ndarray
    params: dict[str, float]
    metadata: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ValueError naming the array or particle that breaks the contract."""
        pos, typ = np.asarray(self.position), np.asarray(self.particle_type)
        if pos.ndim != 3:
            raise ValueError(f"position: expected shape (T, N, D), found {pos.shape}")
        if typ.shape != (pos.shape[1],):
            raise ValueError(f"particle_type: expected shape ({pos.shape[1]},) (N of position), found {typ.shape}")
        if typ.dtype.kind not in "iu":
            raise ValueError(f"particle_type: expected an integer dtype, found {typ.dtype}")
        bad = int(pos.size - np.isfinite(pos).sum())
        if bad:
            raise ValueError(f"position holds {bad} NaN/Inf values")
        if "bounds" in self.metadata:
            box = Box.make(self.metadata["bounds"], self.metadata.get("periodic_boundary_conditions", False))
            out = box.outside(pos)
            if out.any():
                t, n = np.argwhere(out)[0]
                raise ValueError(f"position: {int(out.sum())} particle positions outside the bounds "
                                 f"{self.metadata['bounds']}, first particle {n} at frame {t}: {pos[t, n].tolist()}")


def write_split(
    path: str | os.PathLike,
    cases: Sequence[ParticleCase],
    *,
    parameter_names: Sequence[str] | None = None,
    dataset_name: str = "",
    attrs: Mapping[str, Any] | None = None,
    dtype: type = np.float32,
    compression: str | None = None,
) -> Path:
    """Write trajectories as groups ``00000, 00001, ...`` of one HDF5 file, atomically.

    Args:
        cases: the trajectories, in group order (frames and particle counts may differ).
        parameter_names: order of the stored parameter vector; default the first case's.
        attrs: extra root attributes (non-scalars stored as JSON under ``sciflow_<key>``).
        dtype: position dtype on disk (LagrangeBench's files are float32).
    """
    names = list(parameter_names if parameter_names is not None else (cases[0].params if cases else []))
    for k, c in enumerate(cases):
        try:
            c.validate()
        except ValueError as e:
            raise ValueError(f"{path}: trajectory {group_name(k)}: {e}") from None
        if sorted(c.params) != sorted(names):
            raise ValueError(f"{path}: trajectory {group_name(k)}: parameters {list(c.params)} != {names}")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["sciflow_format_version"] = FORMAT_VERSION
        f.attrs["sciflow_parameter_names"] = _str_list(names)
        if dataset_name:
            f.attrs["dataset_name"] = dataset_name
        for key, value in (attrs or {}).items():
            if isinstance(value, str | int | float | bool | np.number):
                f.attrs[key] = value
            else:
                f.attrs[f"sciflow_{key}"] = json.dumps(value, default=_json_default)
        opts = {"compression": compression} if compression else {}
        for k, c in enumerate(cases):
            g = f.create_group(group_name(k))
            pos = np.asarray(c.position, dtype=dtype)
            # one frame per chunk: windows read a few consecutive frames of one trajectory
            g.create_dataset("position", data=pos, chunks=(1, *pos.shape[1:]) if pos.size else None, **opts)
            g.create_dataset("particle_type", data=np.asarray(c.particle_type, dtype=np.int32))
            g.attrs["sciflow_params"] = np.array([c.params[n] for n in names], dtype=np.float64)
            g.attrs["sciflow_case"] = json.dumps(c.attrs, default=_json_default)
            g.attrs["sciflow_metadata"] = json.dumps(c.metadata, default=_json_default)
    return Path(path)

"""``metadata.json`` of a particle dataset: LagrangeBench's keys plus sciflow's additions.

LagrangeBench's tools read ``bounds``, ``periodic_boundary_conditions``, ``dim``, ``dx``, ``dt``,
``write_every``, ``default_connectivity_radius``, ``num_particles_max`` and ``vel_mean / vel_std /
acc_mean / acc_std``; its generator also writes solver settings (``viscosity``,
``g_ext_magnitude``, ...), ``sequence_length_<split>`` (frames - 1) and ``num_trajs_<split>``.
sciflow writes all of them, and adds keys LagrangeBench ignores:

- ``parameter_names``: names of the per-trajectory parameter vector (values live in each
  trajectory group, attribute ``sciflow_params``);
- ``external_force``: the declared body-force law (:mod:`sciflow.data.particles.forcing`);
- ``particle_types``: type id -> name; ``kinematic_particle_types``: ids whose positions are
  prescribed (walls), which statistics and losses leave out;
- ``fluid_bounds``: the box fluid particles must stay inside when the dataset has walls (a fluid
  particle beyond it went through a wall);
- ``frame_dt``: seconds between stored frames (``dt * write_every``);
- ``sciflow``: provenance (format version, card and its hash, generator, sciflow version).

Only the six keys in :data:`REQUIRED` are needed to read a dataset: the rest have defaults
(``write_every`` 1, LagrangeBench's particle types, no forcing) or are computed from the data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sciflow.data.format import atomic_path
from sciflow.data.particles.forcing import validate_force

METADATA_FILE = "metadata.json"
FORMAT_VERSION = "1"
SPLITS = ("train", "valid", "test")
REQUIRED = ("bounds", "periodic_boundary_conditions", "dim", "dt", "dx", "default_connectivity_radius")
# LagrangeBench's NodeType: 0 fluid, 1 solid wall, 2 moving wall, 3 rigid body (-1 pads batches)
FLUID, SOLID_WALL, MOVING_WALL, RIGID_BODY = 0, 1, 2, 3
DEFAULT_PARTICLE_TYPES = {FLUID: "fluid", SOLID_WALL: "solid_wall", MOVING_WALL: "moving_wall", RIGID_BODY: "rigid_body"}
DEFAULT_KINEMATIC_TYPES = (SOLID_WALL, MOVING_WALL)
STAT_KEYS = ("vel_mean", "vel_std", "acc_mean", "acc_std")


class ParticleFormatError(ValueError):
    """A particle dataset does not follow the layout; the message names the file, key or group."""


def _bounds(value: Any, dim: int, where: str) -> list[list[float]]:
    b = np.asarray(value, dtype=float) if not isinstance(value, str) else None
    if b is None or b.shape != (dim, 2):
        raise ParticleFormatError(f"{where}: expected {dim} [lo, hi] pairs (dim = {dim}), found {value!r}")
    if not (np.isfinite(b).all() and (b[:, 1] > b[:, 0]).all()):
        raise ParticleFormatError(f"{where}: every pair must be finite with hi > lo, found {value!r}")
    return b.tolist()


def validate_metadata(meta: Mapping[str, Any], where: str = METADATA_FILE) -> dict[str, Any]:
    """Check ``meta`` and return a copy with defaults filled in; errors name ``where`` and the key."""
    if not isinstance(meta, Mapping):
        raise ParticleFormatError(f"{where}: expected a JSON object, found {type(meta).__name__}")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise ParticleFormatError(f"{where}: missing key(s) {missing} (required: {list(REQUIRED)})")
    out = dict(meta)
    try:
        dim = int(meta["dim"])
    except (TypeError, ValueError):
        raise ParticleFormatError(f"{where}: dim: expected an integer, found {meta['dim']!r}") from None
    if dim not in (1, 2, 3):
        raise ParticleFormatError(f"{where}: dim: expected 1, 2 or 3, found {dim}")
    out["dim"] = dim
    out["bounds"] = _bounds(meta["bounds"], dim, f"{where}: bounds")
    pbc = meta["periodic_boundary_conditions"]
    if not isinstance(pbc, list | tuple) or len(pbc) != dim or not all(isinstance(p, bool | int) for p in pbc):
        raise ParticleFormatError(f"{where}: periodic_boundary_conditions: expected {dim} booleans, found {pbc!r}")
    out["periodic_boundary_conditions"] = [bool(p) for p in pbc]
    for key in ("dt", "dx", "default_connectivity_radius"):
        v = meta[key]
        if not isinstance(v, int | float) or isinstance(v, bool) or not np.isfinite(v) or v <= 0:
            raise ParticleFormatError(f"{where}: {key}: expected a positive number, found {v!r}")
    we = meta.get("write_every", 1)
    if not isinstance(we, int) or isinstance(we, bool) or we < 1:
        raise ParticleFormatError(f"{where}: write_every: expected a positive integer, found {we!r}")
    out["write_every"] = we
    for key in STAT_KEYS:
        if key in meta and np.shape(meta[key]) != (dim,):
            raise ParticleFormatError(f"{where}: {key}: expected {dim} values (one per dimension), found {meta[key]!r}")
    try:
        out["external_force"] = validate_force(meta.get("external_force"), dim, f"{where}: external_force")
    except ValueError as e:
        raise ParticleFormatError(str(e)) from None
    types = meta.get("particle_types", DEFAULT_PARTICLE_TYPES)
    try:
        out["particle_types"] = {int(k): str(v) for k, v in dict(types).items()}
    except (TypeError, ValueError):
        raise ParticleFormatError(f"{where}: particle_types: expected a mapping id -> name, found {types!r}") from None
    kin = meta.get("kinematic_particle_types", list(DEFAULT_KINEMATIC_TYPES))
    if not isinstance(kin, list | tuple) or not all(isinstance(k, int) for k in kin):
        raise ParticleFormatError(f"{where}: kinematic_particle_types: expected a list of integers, found {kin!r}")
    out["kinematic_particle_types"] = [int(k) for k in kin]
    names = meta.get("parameter_names", [])
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise ParticleFormatError(f"{where}: parameter_names: expected a list of strings, found {names!r}")
    out["parameter_names"] = list(names)
    if meta.get("fluid_bounds") is not None:
        out["fluid_bounds"] = _bounds(meta["fluid_bounds"], dim, f"{where}: fluid_bounds")
    out["frame_dt"] = float(meta["dt"]) * we
    return out


def read_metadata(root: str | os.PathLike) -> dict[str, Any]:
    """Read and validate ``<root>/metadata.json`` (defaults filled in)."""
    path = Path(root) / METADATA_FILE
    if not path.is_file():
        raise ParticleFormatError(
            f"{path}: missing: a particle dataset folder needs a metadata.json beside its "
            f"train.h5 / valid.h5 / test.h5 (LagrangeBench layout, docs/particle-format.md)"
        )
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ParticleFormatError(f"{path}: not valid JSON: {e}") from None
    return validate_metadata(meta, str(path))


def to_json(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata as LagrangeBench expects it on disk (JSON keys are strings)."""
    out = dict(meta)
    if "particle_types" in out:
        out["particle_types"] = {str(k): v for k, v in out["particle_types"].items()}
    return out


def write_metadata(root: str | os.PathLike, meta: Mapping[str, Any]) -> Path:
    """Validate and write ``<root>/metadata.json`` atomically."""
    validate_metadata(meta, f"{Path(root) / METADATA_FILE} (being written)")
    path = Path(root) / METADATA_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(to_json(meta), indent=1, default=_plain) + "\n")
    return path


def _plain(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"cannot store {type(o).__name__} in metadata.json")

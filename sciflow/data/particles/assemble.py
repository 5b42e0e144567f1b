"""Putting a particle dataset folder together: split files, statistics, then ``metadata.json``.

``write_particle_dataset`` writes trajectories held in memory; ``assemble_dataset`` gathers
one-trajectory part files (what a resumable, parallel sweep writes, one per case) into the split
files. Both end with :func:`finalize_metadata`, which counts trajectories and frames, computes the
velocity / acceleration statistics over the train split and writes ``metadata.json`` last and
atomically: a folder whose ``metadata.json`` exists is complete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py

from sciflow.data.format import _str_list, atomic_path
from sciflow.data.particles.format import ParticleCase, group_name, write_split
from sciflow.data.particles.metadata import (
    FORMAT_VERSION,
    SPLITS,
    ParticleFormatError,
    validate_metadata,
    write_metadata,
)
from sciflow.data.particles.reader import ParticleFile
from sciflow.data.particles.stats import load_or_compute_particle_stats
from sciflow.data.particles.trajectories import ParticleTrajectories, split_path

# settings every trajectory of a dataset must share (LagrangeBench keeps them once, per dataset)
SHARED_KEYS = ("dim", "bounds", "periodic_boundary_conditions", "dx", "dt", "write_every",
               "default_connectivity_radius", "external_force", "fluid_bounds", "particle_types",
               "kinematic_particle_types")


def merge_case_metadata(items: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """Dataset metadata from per-trajectory settings ``(where, metadata)``.

    Keys in :data:`SHARED_KEYS` must agree (the error names both trajectories); other keys that
    differ between trajectories (a swept viscosity) are written as null and listed under
    ``sciflow.varying``: their per-trajectory values are parameters.
    """
    if not items:
        return {}
    ref_where, ref = items[0]
    merged = dict(ref)
    varying: set[str] = set()
    for where, meta in items[1:]:
        for key in set(ref) | set(meta):
            a, b = ref.get(key), meta.get(key)
            if a == b:
                continue
            if key in SHARED_KEYS:
                raise ParticleFormatError(f"{where}: {key} = {b!r} differs from {ref_where}'s {a!r}; "
                                          f"every trajectory of a dataset must share it")
            varying.add(key)
    for key in varying:
        merged[key] = None
    if varying:
        merged.setdefault("sciflow", {})["varying"] = sorted(varying)
    return merged


def finalize_metadata(root: str | os.PathLike, metadata: Mapping[str, Any], *, progress: bool = True) -> dict[str, Any]:
    """Fill in counts, lengths, ``num_particles_max`` and the train statistics; write ``metadata.json``.

    The split files must already be in ``root``. Statistics are cached in ``stats.yaml`` too.
    """
    root = Path(root)
    meta = dict(metadata)
    n_max = 0
    for split in SPLITS:
        path = split_path(root, split)
        if not path.is_file():
            meta[f"num_trajs_{split}"], meta[f"sequence_length_{split}"] = 0, 0
            continue
        f = ParticleFile(path, meta.get("parameter_names", []))
        frames = sorted({s[0] for s in f.shapes})
        if len(frames) > 1:
            # LagrangeBench reads every trajectory of a split with the length of its first
            raise ParticleFormatError(f"{path}: trajectories have different frame counts {frames}; "
                                      f"every trajectory of a split must have the same")
        meta[f"num_trajs_{split}"] = len(f)
        meta[f"sequence_length_{split}"] = frames[0] - 1 if frames else 0  # GNS: frames - 1
        n_max = max([n_max, *(s[1] for s in f.shapes)])
    if not meta["num_trajs_train"]:
        raise ParticleFormatError(f"{root}: no train trajectories: the statistics come from the train split")
    meta["num_particles_max"] = n_max
    meta = validate_metadata(meta, f"{root} (metadata being written)")
    train = ParticleTrajectories(root, "train", metadata=meta)
    stats = load_or_compute_particle_stats(root / "stats.yaml", train, 1, progress=progress)
    meta.update(stats.lagrangebench())
    meta.setdefault("sciflow", {})["format_version"] = FORMAT_VERSION
    write_metadata(root, meta)
    return meta


def write_particle_dataset(root: str | os.PathLike, splits: Mapping[str, Sequence[ParticleCase]],
                           metadata: Mapping[str, Any], *, dataset_name: str = "",
                           progress: bool = False) -> dict[str, Any]:
    """Write ``<root>/{train,valid,test}.h5`` from in-memory trajectories and then ``metadata.json``.

    ``metadata`` holds the dataset-level keys (``bounds``, ``dt``, ...; see
    :mod:`sciflow.data.particles.metadata`); counts and statistics are filled in. Returns the
    metadata written.
    """
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ValueError(f"write_particle_dataset: unknown split(s) {sorted(unknown)}; expected {SPLITS}")
    names = list(metadata.get("parameter_names", []))
    for split, cases in splits.items():
        if cases:
            write_split(split_path(root, split), cases, parameter_names=names, dataset_name=dataset_name)
    return finalize_metadata(root, metadata, progress=progress)


def _sources(parts: Sequence[Path]) -> list[list[Any]]:
    return [[p.name, p.stat().st_size] for p in parts]


def assemble_split(path: Path, parts: Sequence[Path], *, dataset_name: str = "") -> bool:
    """Copy every trajectory of ``parts`` (in order) into ``path`` as groups 00000, 00001, ...

    Skipped (returns False) when ``path`` already holds exactly these parts.
    """
    sources = _sources(parts)
    if path.is_file():
        try:
            with h5py.File(path, "r") as f:
                if json.loads(f.attrs.get("sciflow_sources", "null")) == sources:
                    return False
        except (OSError, json.JSONDecodeError, TypeError):
            pass  # unreadable or foreign: rewrite
    k = 0
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as out:
        names: list[str] | None = None
        for part in parts:
            with h5py.File(part, "r") as f:
                mine = [n.decode() if isinstance(n, bytes) else str(n) for n in f.attrs.get("sciflow_parameter_names", [])]
                if names is None:
                    names = mine
                elif mine != names:
                    raise ParticleFormatError(f"{part}: parameters {mine} differ from the other parts' {names}")
                for key in sorted(f.keys()):
                    f.copy(f[key], out, name=group_name(k))
                    k += 1
        out.attrs["sciflow_format_version"] = FORMAT_VERSION
        out.attrs["sciflow_parameter_names"] = _str_list(names or [])
        out.attrs["sciflow_sources"] = json.dumps(sources)
        if dataset_name:
            out.attrs["dataset_name"] = dataset_name
    return True


def assemble_dataset(root: str | os.PathLike, parts: Mapping[str, Sequence[Path]],
                     metadata: Mapping[str, Any] | None = None, *, dataset_name: str = "",
                     progress: bool = True) -> dict[str, Any]:
    """Build the split files from one-trajectory part files and write ``metadata.json``.

    ``metadata`` adds keys (provenance, parameter names) to those merged from the parts' own
    settings (:func:`merge_case_metadata`). Split files that already hold exactly their parts are
    kept; a split with no parts gets no file (its ``num_trajs`` is 0).
    """
    root = Path(root)
    items = []
    for split in SPLITS:
        for part in parts.get(split, []):
            f = ParticleFile(part)
            items += [(f"{part}: group {key!r}", f.case_metadata(i)) for i, key in enumerate(f.keys)]
    meta = merge_case_metadata(items)
    extra = dict(metadata or {})
    meta.setdefault("sciflow", {}).update(extra.pop("sciflow", {}))
    meta.update(extra)
    changed = False
    for split in SPLITS:
        path = split_path(root, split)
        if parts.get(split):
            changed |= assemble_split(path, parts[split], dataset_name=dataset_name)
        elif path.exists():
            path.unlink()  # a split that lost its cases (a smaller sweep) must not keep old ones
            changed = True
    if not changed and (root / "metadata.json").is_file():
        return json.loads((root / "metadata.json").read_text())
    return finalize_metadata(root, meta, progress=progress)

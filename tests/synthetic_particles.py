"""A small synthetic particle dataset in LagrangeBench's layout, for tests that need particle data
but not the SPH solver.

Two kinds: ``walls=True`` puts a disc of fluid particles rotating rigidly (angular speed ``omega``)
inside a closed box lined with static wall particles; ``walls=False`` drifts a lattice through a
periodic unit box (velocity ``(drift, drift / 2)`` plus a wobble of amplitude ``wobble``), so
particles cross the periodic faces. Parameters per trajectory: ``[omega, drift]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sciflow.data.particles import FLUID, SOLID_WALL, ParticleCase, write_particle_dataset

FRAME_DT = 0.05


def rotating_disc(omega: float, frames: int, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Fluid disc rotating about (0.5, 0.5) in a walled unit box: ``(T, N, 2)``, ``(N,)``."""
    g = (np.arange(n) + 0.5) / n
    X, Y = np.meshgrid(g, g, indexing="ij")
    p = np.stack([X.ravel(), Y.ravel()], -1)
    r = p - 0.5
    fluid = r[np.hypot(r[:, 0], r[:, 1]) < 0.3]
    wall_1d = (np.arange(n + 2) - 0.5) / n  # one layer just outside the fluid area
    walls = np.concatenate([
        np.stack([wall_1d, np.full(n + 2, wall_1d[0])], -1), np.stack([wall_1d, np.full(n + 2, wall_1d[-1])], -1),
        np.stack([np.full(n, wall_1d[0]), g], -1), np.stack([np.full(n, wall_1d[-1]), g], -1),
    ])
    t = np.arange(frames) * FRAME_DT
    c, s = np.cos(omega * t)[:, None], np.sin(omega * t)[:, None]
    rot = np.stack([0.5 + c * fluid[:, 0] - s * fluid[:, 1], 0.5 + s * fluid[:, 0] + c * fluid[:, 1]], -1)
    pos = np.concatenate([rot, np.broadcast_to(walls, (frames, *walls.shape))], axis=1)
    types = np.r_[np.full(len(fluid), FLUID), np.full(len(walls), SOLID_WALL)]
    return pos, types


def drifting_lattice(drift: float, wobble: float, frames: int, n: int = 6) -> np.ndarray:
    """A lattice drifting through the periodic unit box, wrapped: ``(T, N, 2)``."""
    g = (np.arange(n) + 0.5) / n
    X, Y = np.meshgrid(g, g, indexing="ij")
    p = np.stack([X.ravel(), Y.ravel()], -1)
    t = np.arange(frames)[:, None, None] * FRAME_DT
    shift = np.concatenate([drift * t, 0.5 * drift * t], -1) + wobble * np.sin(2 * np.pi * (p[None] + t))
    return np.mod(p[None] + shift, 1.0)


def make_particle_dataset(root: Path, *, walls: bool = True, n: tuple[int, int, int] = (4, 2, 2),
                          frames: tuple[int, int, int] = (16, 20, 20), seed: int = 0) -> Path:
    """Write ``<root>/{train,valid,test}.h5`` and ``metadata.json``; return ``root``."""
    rng = np.random.default_rng(seed)
    splits = {}
    for split, count, T in zip(("train", "valid", "test"), n, frames):
        cases = []
        for k in range(count):
            omega, drift = rng.uniform(0.5, 2.0), rng.uniform(0.2, 1.0)
            if walls:
                pos, types = rotating_disc(omega, T, n=8 + k % 2)  # particle counts differ
            else:
                pos = drifting_lattice(drift, 0.01 * omega, T)
                types = np.full(pos.shape[1], FLUID)
            cases.append(ParticleCase(pos, types, {"omega": omega, "drift": drift},
                                      attrs={"case_id": f"{split}_{k}"}))
        splits[split] = cases
    bounds = [[-1 / 8, 1 + 1 / 8]] * 2 if walls else [[0.0, 1.0]] * 2
    metadata = {
        "case": "SYNTHETIC", "dim": 2, "dx": 1 / 8, "dt": FRAME_DT / 10, "write_every": 10,
        "bounds": bounds, "periodic_boundary_conditions": [not walls] * 2,
        "default_connectivity_radius": 0.2, "parameter_names": ["omega", "drift"],
        "external_force": {"law": "none"},
    }
    if walls:
        metadata["fluid_bounds"] = [[0.0, 1.0], [0.0, 1.0]]
    write_particle_dataset(root, splits, metadata, dataset_name="synthetic")
    return root

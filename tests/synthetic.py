"""A small synthetic dataset in the Well layout, for tests that need data but not a solver.

Each trajectory is a travelling, decaying wave pattern whose speed and decay depend on the two
parameters, so a model has something learnable (and parameter-dependent) to fit; a rectangular
obstacle gives a non-trivial mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from sciflow.data.case import BoundarySpec
from sciflow.data.format import write_well


def make_dataset(root: Path, *, n: tuple[int, int, int] = (6, 2, 2), shape: tuple[int, int] = (16, 16),
                 frames: int = 12, seed: int = 0, with_mask: bool = True) -> Path:
    """Write ``<root>/data/{train,valid,test}/*.hdf5`` and ``<root>/card.yaml``; return the card path."""
    rng = np.random.default_rng(seed)
    nx, ny = shape
    x = (np.arange(nx) + 0.5) / nx
    y = (np.arange(ny) + 0.5) / ny
    X, Y = np.meshgrid(x, y, indexing="ij")
    t = np.arange(frames) * 0.1
    mask = np.ones(shape, bool)
    if with_mask:
        mask[nx // 3: nx // 2, ny // 3: ny // 2] = False
    k = 0
    for split, count in zip(("train", "valid", "test"), n):
        for _ in range(count):
            speed, decay = rng.uniform(0.5, 2.0), rng.uniform(0.1, 1.0)
            phase = 2 * np.pi * (X[None] - speed * t[:, None, None])
            amp = np.exp(-decay * t)[:, None, None]
            u = amp * np.sin(phase) * np.cos(2 * np.pi * Y[None])
            v = amp * np.cos(phase) * np.sin(2 * np.pi * Y[None]) * 0.5
            p = amp * np.cos(phase + Y[None])
            vel = np.stack([u, v], -1) * mask[None, :, :, None]
            write_well(
                root / "data" / split / f"case_{k:04d}.hdf5",
                dataset_name="synthetic", time=t, coords={"x": x, "y": y},
                t0_fields={"pressure": (p * mask)[None]}, t1_fields={"velocity": vel[None]},
                params={"speed": speed, "decay": decay}, mask=mask if with_mask else None,
                boundaries=[BoundarySpec("x_periodic", "periodic", ["x"], np.ones(nx, bool))],
                attrs={"dt": 0.1},
            )
            k += 1
    card = {
        "name": "synthetic", "path": str(root), "fields": ["velocity", "pressure"],
        "params": ["speed", "decay"], "dt": 0.1, "frames": frames,
    }
    path = root / "card.yaml"
    path.write_text(yaml.safe_dump(card))
    return path

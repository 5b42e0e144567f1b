"""The case/boundary contract: what a data-generating solver hands to the data layer.

A :class:`Case` is one simulated trajectory as plain numpy arrays (x-first axes) and a
:class:`BoundarySpec` one boundary condition in The Well's vocabulary. They live in the data layer
because the writer (:mod:`sciflow.data.format`) and the importers consume them; solvers import them
from here, and the data layer never imports a solver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class BoundarySpec:
    """One boundary condition in The Well's vocabulary.

    ``mask`` is a boolean array over the associated dimension(s) marking where the condition
    holds; ``values`` (optional) are the prescribed values at the masked points.
    """

    name: str
    bc_type: str  # "wall" | "open" | "periodic"
    associated_dims: list[str]
    mask: np.ndarray
    associated_fields: list[str] = field(default_factory=list)
    values: np.ndarray | None = None


@dataclass
class Case:
    """One simulated trajectory, ready to be written.

    Attributes:
        scalar_fields: name -> float array ``(T, *S)`` (x-first spatial axes).
        vector_fields: name -> float array ``(T, *S, D)`` (component last, x then y).
        time: ``(T,)`` frame times in seconds, starting at 0.
        coords: axis name -> ``(n,)`` cell-centre coordinates, in axis order (``x`` first).
        params: operating parameters, name -> value, in the order of the parameter vector.
        mask: ``(*S)`` bool, True where the cell is fluid (None when every cell is).
        boundaries: boundary conditions of the case.
        attrs: provenance and diagnostics (solver name, resolution, wall time, divergence...).
    """

    scalar_fields: dict[str, np.ndarray]
    vector_fields: dict[str, np.ndarray]
    time: np.ndarray
    coords: dict[str, np.ndarray]
    params: dict[str, float]
    mask: np.ndarray | None = None
    boundaries: list[BoundarySpec] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.time.shape[0])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(int(len(c)) for c in self.coords.values())

    def validate(self) -> None:
        """Raise ValueError naming the array whose shape disagrees with time and coords."""
        S = self.spatial_shape
        T = self.n_frames
        for name, a in self.scalar_fields.items():
            if a.shape != (T, *S):
                raise ValueError(
                    f"scalar field {name!r}: expected shape {(T, *S)}, found {a.shape}"
                )
        for name, a in self.vector_fields.items():
            if a.shape != (T, *S, len(S)):
                raise ValueError(
                    f"vector field {name!r}: expected shape {(T, *S, len(S))}, found {a.shape}"
                )
        if self.mask is not None and self.mask.shape != S:
            raise ValueError(f"mask: expected shape {S}, found {self.mask.shape}")
        for name, a in {**self.scalar_fields, **self.vector_fields}.items():
            bad = int(np.size(a) - np.isfinite(a).sum())
            if bad:
                raise ValueError(f"field {name!r} holds {bad} NaN/Inf values")

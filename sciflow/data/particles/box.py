"""The simulation box of a particle dataset: bounds, periodicity, minimum-image displacements.

Works on numpy arrays and torch tensors alike (the data layer uses numpy, operators torch), with
positions of shape ``(..., N, D)``. A periodic box's axis runs over ``[lo, hi)``; LagrangeBench's
tools assume ``lo = 0`` on periodic axes, which :func:`Box.from_metadata` does not require.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

Array = TypeVar("Array")  # a numpy array or a torch tensor


def _torch(x: object):
    """The torch module when ``x`` is a tensor, else None (numpy callers never import torch)."""
    torch = sys.modules.get("torch")
    return torch if torch is not None and isinstance(x, torch.Tensor) else None


@dataclass(frozen=True)
class Box:
    """An axis-aligned box ``bounds (D, 2)`` with per-axis periodicity ``periodic (D,)``."""

    bounds: tuple[tuple[float, float], ...]
    periodic: tuple[bool, ...]

    def __post_init__(self) -> None:
        if len(self.bounds) != len(self.periodic):
            raise ValueError(f"Box: {len(self.bounds)} bounds but {len(self.periodic)} periodic flags")
        for d, (lo, hi) in enumerate(self.bounds):
            if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
                raise ValueError(f"Box: bounds[{d}] = [{lo}, {hi}] is not an interval with hi > lo")

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Box:
        """From LagrangeBench metadata keys ``bounds`` and ``periodic_boundary_conditions``."""
        return cls.make(metadata["bounds"], metadata["periodic_boundary_conditions"])

    @classmethod
    def make(cls, bounds: Sequence[Sequence[float]], periodic: Sequence[bool] | bool) -> Box:
        b = tuple((float(lo), float(hi)) for lo, hi in bounds)
        p = (bool(periodic),) * len(b) if isinstance(periodic, bool) else tuple(bool(x) for x in periodic)
        return cls(b, p)

    @property
    def dim(self) -> int:
        return len(self.bounds)

    @property
    def lower(self) -> np.ndarray:
        return np.array([lo for lo, _ in self.bounds])

    @property
    def size(self) -> np.ndarray:
        """Edge lengths ``(D,)``."""
        return np.array([hi - lo for lo, hi in self.bounds])

    def _consts(self, like: Array) -> tuple[Array, Array, Array]:
        lo, size, per = self.lower, self.size, np.array(self.periodic, dtype=bool)
        torch = _torch(like)
        if torch is not None:
            return (torch.as_tensor(lo, dtype=like.dtype, device=like.device),
                    torch.as_tensor(size, dtype=like.dtype, device=like.device),
                    torch.as_tensor(per, device=like.device))
        return lo.astype(like.dtype, copy=False), size.astype(like.dtype, copy=False), per

    def displacement(self, a: Array, b: Array) -> Array:
        """``a - b`` per particle, ``(..., N, D)``; on periodic axes the minimum image."""
        d = a - b
        if not any(self.periodic):
            return d
        _, size, per = self._consts(d)
        xp = _torch(d) or np
        wrapped = d - size * xp.round(d / size)
        return xp.where(per, wrapped, d)

    def wrap(self, x: Array) -> Array:
        """Positions ``(..., N, D)`` folded into ``[lo, hi)`` on periodic axes (others unchanged)."""
        if not any(self.periodic):
            return x
        lo, size, per = self._consts(x)
        torch = _torch(x)
        if torch is not None:
            return torch.where(per, lo + torch.remainder(x - lo, size), x)
        return np.where(per, lo + np.mod(x - lo, size), x)

    def store(self, x: np.ndarray, dtype: type = np.float32) -> np.ndarray:
        """Positions ``(..., N, D)`` as written to disk: cast to ``dtype`` with periodic axes kept in
        ``[lo, hi)``. A coordinate just below ``hi`` can round up to ``hi`` in float32; on a periodic
        axis that point is ``lo``."""
        out = np.asarray(self.wrap(np.asarray(x, dtype=np.float64))).astype(dtype)
        lo = np.asarray(self.lower, dtype=dtype)
        hi = np.asarray(np.asarray(self.lower) + np.asarray(self.size), dtype=dtype)
        return np.where(np.array(self.periodic) & (out >= hi), lo, out).astype(dtype)

    def outside(self, x: np.ndarray) -> np.ndarray:
        """Bool ``(..., N)``: the particle lies outside the box (outside ``[lo, hi]`` on a wall axis,
        outside ``[lo, hi)`` on a periodic one, or is not finite)."""
        x = np.asarray(x)
        lo = self.lower
        hi = lo + self.size
        per = np.array(self.periodic)
        out = (x < lo) | (x > hi) | ((x == hi) & per) | ~np.isfinite(x)
        return out.any(axis=-1)

    def to_metadata(self) -> dict[str, Any]:
        return {"bounds": [list(b) for b in self.bounds], "periodic_boundary_conditions": list(self.periodic)}

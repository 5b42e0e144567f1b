"""The Wendland C2 kernel and Verlet neighbour lists for the SPH solver.

Wendland C2 in 2D (support ``2h``), with ``q = r / h``:
``W = 7 / (4 pi h^2) (1 + 2q) (1 - q/2)^4`` and ``dW/dr = 7 / (4 pi h^2) (-5 q / h) (1 - q/2)^3``.

Neighbour pairs come from ``scipy.spatial.cKDTree`` (periodic axes through ``boxsize``) within
``2h + skin``, and are reused until some particle has moved ``skin / 2`` since the last build, so
a list serves many steps while no pair within ``2h`` can be missed.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from sciflow.data.particles.box import Box


class WendlandC2:
    """Wendland C2 kernel of smoothing length ``h`` in ``dim`` dimensions (2 supported)."""

    def __init__(self, h: float, dim: int = 2):
        if dim != 2:
            raise ValueError(f"WendlandC2: only 2D is implemented, got dim = {dim}")
        if h <= 0:
            raise ValueError(f"WendlandC2: h must be positive, got {h}")
        self.h = float(h)
        self.norm = 7.0 / (4.0 * np.pi * h * h)

    @property
    def support(self) -> float:
        return 2.0 * self.h

    def w(self, r: np.ndarray) -> np.ndarray:
        """Kernel values at distances ``r`` (any shape); zero beyond ``2h``."""
        q = r / self.h
        s = np.maximum(1.0 - 0.5 * q, 0.0)
        return self.norm * (1.0 + 2.0 * q) * s**4

    def dw(self, r: np.ndarray) -> np.ndarray:
        """Radial derivative ``dW/dr`` at ``r`` (<= 0); zero beyond ``2h``."""
        q = r / self.h
        s = np.maximum(1.0 - 0.5 * q, 0.0)
        return self.norm * (-5.0 * q / self.h) * s**3


class NeighborList:
    """Candidate pairs ``(i, j)``, ``i < j``, within ``cutoff + skin``, rebuilt only when needed.

    Args:
        box: the simulation box (periodic axes wrap; positions on them must lie in ``[lo, hi)``).
        cutoff: the interaction range (the kernel support).
        skin: extra range that lets a list serve several steps.
        keep: optional ``(N,)`` bool; pairs where neither particle is kept are dropped (wall-wall).
    """

    def __init__(self, box: Box, cutoff: float, skin: float, keep: np.ndarray | None = None):
        self.box = box
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.keep = keep
        self.pairs = np.zeros((0, 2), dtype=np.int64)
        self._ref: np.ndarray | None = None
        self.builds = 0

    def update(self, x: np.ndarray) -> bool:
        """Rebuild if a particle moved more than ``skin / 2`` since the last build; True if rebuilt."""
        if self._ref is not None and x.shape == self._ref.shape:
            moved = self.box.displacement(x, self._ref)
            if np.max(np.einsum("nd,nd->n", moved, moved)) < (0.5 * self.skin) ** 2:
                return False
        self._build(x)
        return True

    def _build(self, x: np.ndarray) -> None:
        lo = self.box.lower
        size = self.box.size
        boxsize = np.where(self.box.periodic, size, 0.0)  # 0: not periodic along that axis
        y = x - lo
        if any(self.box.periodic):
            # cKDTree wants periodic coordinates in [0, L); the wrap can round onto L itself
            y = np.where(self.box.periodic, np.mod(y, size), y)
            y = np.where(self.box.periodic & (y >= size), 0.0, y)
            tree = cKDTree(y, boxsize=boxsize)
        else:
            tree = cKDTree(y)
        pairs = tree.query_pairs(self.cutoff + self.skin, output_type="ndarray")
        if self.keep is not None:
            pairs = pairs[self.keep[pairs[:, 0]] | self.keep[pairs[:, 1]]]
        self.pairs = pairs.astype(np.int64)
        self._ref = x.copy()
        self.builds += 1

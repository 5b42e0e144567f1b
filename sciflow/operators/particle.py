"""The particle operator contract and the GNS input features every particle operator shares.

A particle operator maps the current particle cloud to a normalised acceleration per particle::

    forward(position (N, D), velocity (N, h, D), particle_type (N,), batch (N,), cond (B, P) | None)
        -> (N, D)

- ``position``: current positions in the data's units (graphs are built from them with the
  connectivity ``radius``; minimum images on periodic axes);
- ``velocity``: the last ``h`` velocities (oldest first) in frame units, already normalised with
  the data's statistics by the stepper;
- ``particle_type``: integer type ids (LagrangeBench's: 0 fluid, 1 solid wall, ...);
- ``batch``: sorted sample index of each particle (samples are concatenated along ``N``);
- ``cond``: normalised parameters of each sample (viscosity, Re, ...), or None.

Sizes and geometry that come from the data are injected by :func:`build_particle_operator`:
``dim``, ``history``, ``cond_dim``, ``bounds``, ``periodic``, ``radius``, ``dx``; configs give
only hyperparameters.

Node features (GNS, LagrangeBench): the flattened normalised velocities, the distances to the
lower and upper bounds of every non-periodic axis divided by ``radius`` and clipped to [-1, 1],
a learned particle-type embedding (16-d) and the sample's parameters. Edge features: the relative
displacement ``x_j - x_i`` divided by ``radius`` and its norm.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sciflow.nn.neighbors import Domain

N_PARTICLE_TYPES = 9  # LagrangeBench's NodeType.SIZE: ids 0..8


class ParticleOperator(nn.Module):
    """Base class: input checks and the shared node / edge features (see the module docstring).

    Args:
        dim, history, cond_dim: coordinates per particle, input velocities, parameters.
        bounds: ``[[lo, hi]] * dim`` the box; periodic: per axis.
        radius: connectivity radius; dx: the data's particle spacing.
        n_particle_types: size of the type embedding table; type_embedding: its width.
    """

    def __init__(self, dim: int, history: int, cond_dim: int = 0, *, bounds: Sequence[Sequence[float]],
                 periodic: Sequence[bool] | bool, radius: float, dx: float | None = None,
                 n_particle_types: int = N_PARTICLE_TYPES, type_embedding: int = 16):
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"{type(self).__name__}: dim must be 2 or 3, got {dim}")
        if history < 1:
            raise ValueError(f"{type(self).__name__}: history must be >= 1, got {history}")
        if not radius > 0:
            raise ValueError(f"{type(self).__name__}: radius must be > 0, got {radius}")
        self.dim, self.history, self.cond_dim = int(dim), int(history), int(cond_dim)
        self.domain = Domain.from_bounds(bounds, periodic)
        if self.domain.dim != dim:
            raise ValueError(f"{type(self).__name__}: bounds have {self.domain.dim} axes, dim is {dim}")
        self.radius = float(radius)
        self.dx = float(dx) if dx is not None else self.radius / 1.45  # LagrangeBench: R about 1.45 dx
        self.n_particle_types = int(n_particle_types)
        self.open_axes = [d for d, p in enumerate(self.domain.periodic) if not p]
        self.type_embed = nn.Embedding(self.n_particle_types, type_embedding)

    @property
    def node_features(self) -> int:
        """Width of :meth:`node_inputs`."""
        return self.history * self.dim + 2 * len(self.open_axes) + self.type_embed.embedding_dim + self.cond_dim

    @property
    def edge_features(self) -> int:
        return self.dim + 1

    def check_inputs(self, position: Tensor, velocity: Tensor, particle_type: Tensor, batch: Tensor,
                     cond: Tensor | None) -> None:
        """Shape and range checks with messages that name the tensor at fault."""
        name = type(self).__name__
        if position.ndim != 2 or position.shape[1] != self.dim:
            raise ValueError(f"{name}: position must be (N, D={self.dim}), got {tuple(position.shape)}")
        N = position.shape[0]
        if tuple(velocity.shape) != (N, self.history, self.dim):
            raise ValueError(f"{name}: velocity must be (N={N}, h={self.history}, D={self.dim}), got {tuple(velocity.shape)}")
        if tuple(particle_type.shape) != (N,) or particle_type.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"{name}: particle_type must be integer (N={N},), got {particle_type.dtype} {tuple(particle_type.shape)}")
        if N and (int(particle_type.min()) < 0 or int(particle_type.max()) >= self.n_particle_types):
            raise ValueError(f"{name}: particle types must be in [0, {self.n_particle_types}), got "
                             f"[{int(particle_type.min())}, {int(particle_type.max())}]")
        if tuple(batch.shape) != (N,):
            raise ValueError(f"{name}: batch must be (N={N},), got {tuple(batch.shape)}")
        B = int(batch.max()) + 1 if N else 0
        if self.cond_dim:
            if cond is None or cond.ndim != 2 or cond.shape[1] != self.cond_dim or cond.shape[0] < B:
                raise ValueError(f"{name}: cond must be (B={B}, P={self.cond_dim}), got "
                                 f"{None if cond is None else tuple(cond.shape)}")

    def wall_features(self, position: Tensor) -> Tensor:
        """Distances to both bounds of each open axis / radius, clipped to [-1, 1]: ``(N, 2 n_open)``."""
        if not self.open_axes:
            return position.new_zeros(position.shape[0], 0)
        lo, size, _ = self.domain.tensors(position)
        ax = self.open_axes
        x = position[:, ax]
        d = torch.cat([x - lo[ax], lo[ax] + size[ax] - x], dim=1)
        return torch.clamp(d / self.radius, -1.0, 1.0)

    def node_inputs(self, position: Tensor, velocity: Tensor, particle_type: Tensor, batch: Tensor,
                    cond: Tensor | None) -> Tensor:
        """``(N, node_features)``: velocities, wall distances, type embedding, parameters."""
        parts = [velocity.reshape(velocity.shape[0], -1), self.wall_features(position),
                 self.type_embed(particle_type.long())]
        if self.cond_dim:
            parts.append(cond[batch])
        return torch.cat(parts, dim=-1)

    def edge_inputs(self, position: Tensor, edge_index: Tensor, radius: float | None = None) -> Tensor:
        """``(E, D + 1)``: ``(x_j - x_i) / radius`` (minimum image) and its norm."""
        r = self.radius if radius is None else radius
        d = self.domain.displacement(position[edge_index[0]], position[edge_index[1]]) / r
        return torch.cat([d, d.norm(dim=-1, keepdim=True)], dim=-1)

    def forward(self, position: Tensor, velocity: Tensor, particle_type: Tensor, batch: Tensor,
                cond: Tensor | None = None) -> Tensor:
        raise NotImplementedError


__all__ = ["N_PARTICLE_TYPES", "ParticleOperator"]

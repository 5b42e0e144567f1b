"""GNS: the Graph Network-based Simulator (Sanchez-Gonzalez et al. 2020), encode-process-decode
on a radius graph of all particles.

Encoder: MLPs embed the node features (normalised velocities, wall distances, type embedding,
parameters; :class:`~sciflow.operators.particle.ParticleOperator`) and the edge features
(displacement / R and its norm) to ``width``. Processor: ``message_passing_steps`` interaction
networks with residual connections (no weight sharing). Decoder: an MLP without LayerNorm to
the normalised acceleration. Defaults are the paper's and LagrangeBench's: 10 steps, width 128,
MLPs with 2 hidden layers.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from sciflow.nn.graph import InteractionNetwork, mlp
from sciflow.nn.neighbors import radius_graph
from sciflow.operators.particle import N_PARTICLE_TYPES, ParticleOperator


class GNS(ParticleOperator):
    """Encode-process-decode graph network on all particles.

    Args:
        dim, history, cond_dim, bounds, periodic, radius, dx: injected from the data.
        width: latent size of nodes and edges.
        message_passing_steps: processor blocks ``M``.
        mlp_layers: hidden layers of every MLP.
        n_particle_types, type_embedding: the type embedding table.

    Shapes: see :mod:`sciflow.operators.particle`; returns ``(N, dim)``.
    """

    def __init__(self, dim: int, history: int, cond_dim: int = 0, *, bounds: Sequence[Sequence[float]],
                 periodic: Sequence[bool] | bool, radius: float, dx: float | None = None,
                 width: int = 128, message_passing_steps: int = 10, mlp_layers: int = 2,
                 n_particle_types: int = N_PARTICLE_TYPES, type_embedding: int = 16):
        super().__init__(dim, history, cond_dim, bounds=bounds, periodic=periodic, radius=radius, dx=dx,
                         n_particle_types=n_particle_types, type_embedding=type_embedding)
        if message_passing_steps < 0 or width < 1:
            raise ValueError(f"GNS: need width >= 1 and message_passing_steps >= 0, got {width}, {message_passing_steps}")
        self.node_encoder = mlp(self.node_features, width, width, mlp_layers)
        self.edge_encoder = mlp(self.edge_features, width, width, mlp_layers)
        self.processor = nn.ModuleList(InteractionNetwork(width, mlp_layers) for _ in range(message_passing_steps))
        self.decoder = mlp(width, width, dim, mlp_layers, layer_norm=False)

    def graph(self, position: Tensor, batch: Tensor) -> Tensor:
        """The radius graph ``edge_index (2, E)`` of the particles (no self-edges)."""
        return radius_graph(position, self.radius, batch, domain=self.domain)

    def forward(self, position: Tensor, velocity: Tensor, particle_type: Tensor, batch: Tensor,
                cond: Tensor | None = None, edge_index: Tensor | None = None) -> Tensor:
        """``edge_index``: a precomputed graph (default: built from ``position``)."""
        self.check_inputs(position, velocity, particle_type, batch, cond)
        if edge_index is None:
            edge_index = self.graph(position, batch)
        h = self.node_encoder(self.node_inputs(position, velocity, particle_type, batch, cond))
        e = self.edge_encoder(self.edge_inputs(position, edge_index))
        for block in self.processor:
            h, e = block(h, edge_index, e)
        return self.decoder(h)


__all__ = ["GNS"]

"""A GIOROM-style reduced-order particle operator: a network on a sparse sub-sample of the particles
whose acceleration field is evaluated at every dense particle by a learned kernel interpolation.

After Viswanath et al. (GIOROM): sub-sample the cloud (farthest-point or random, ratio 5-30 %),
run a short graph network on the sparse radius graph, map its node latents onto a regular latent
grid with a graph neural operator (a kernel integral over the particles near each grid node),
run a grid operator there (our FNO, or any registered grid operator), map back to the sparse
particles with a second kernel integral, run a second short graph network and decode a
normalised acceleration per sparse particle. A learned, normalised kernel average over the ``k``
nearest sparse particles then evaluates that acceleration at every dense particle, so the whole
dense cloud advances from the sparse evaluation.

Training sees random sub-samples of the dense training clouds (a new one every call) and is
scored at every dense particle; in evaluation the sub-sample is deterministic (farthest-point
from each sample's first particle, or a fixed-seed random subset, which picks the same particle
indices every step).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from sciflow.nn.graph import GraphIntegral, InteractionNetwork, KernelInterpolation, mlp
from sciflow.nn.neighbors import knn_bipartite, radius_bipartite, radius_graph
from sciflow.nn.sampling import SAMPLING_METHODS, sparse_spacing, subsample
from sciflow.operators.particle import N_PARTICLE_TYPES, ParticleOperator

DEFAULT_GRID_OPERATOR = {"class_path": "fno", "init_args": {"width": 32, "modes": 12, "n_layers": 4}}


class ReducedOrder(ParticleOperator):
    """Sparse graph network + latent-grid neural operator + dense kernel interpolation.

    Args:
        dim, history, cond_dim, bounds, periodic, radius, dx: injected from the data (2D only:
            the latent grid operators are 1D/2D).
        ratio: fraction of the particles kept (per sample).
        sampling: ``"fps"`` (farthest point) or ``"random"``.
        sparse_radius: radius of the sparse graph; default ``radius / ratio^(1/dim)``, which keeps
            about the dense graph's neighbour count.
        width: latent size of the graph networks.
        gnn_layers: interaction networks before and after the latent grid (each).
        mlp_layers: hidden layers of every MLP.
        latent_grid: latent grid cells per axis (int or one per axis) over ``bounds``.
        latent_channels: channels on the latent grid.
        gno_radius: reach of the particle <-> grid kernel integrals in grid cells (the largest
            cell edge); default the larger of 1.5 cells and 2 sparse particle spacings, so that
            every grid node near the particles has a few sparse particles in reach.
        grid_operator: spec of the grid operator (``fno``, ``unet``, ``factformer``, ...).
        interpolation_neighbors: sparse particles each dense particle interpolates from.
        seed: seed of the evaluation sub-sample when ``sampling="random"``.

    Shapes: see :mod:`sciflow.operators.particle`; returns ``(N, dim)`` at every particle.
    """

    def __init__(self, dim: int, history: int, cond_dim: int = 0, *, bounds: Sequence[Sequence[float]],
                 periodic: Sequence[bool] | bool, radius: float, dx: float | None = None,
                 ratio: float = 0.25, sampling: str = "fps", sparse_radius: float | None = None,
                 width: int = 64, gnn_layers: int = 2, mlp_layers: int = 2,
                 latent_grid: int | Sequence[int] = 32, latent_channels: int = 32, gno_radius: float | None = None,
                 grid_operator: Mapping[str, Any] | None = None, interpolation_neighbors: int = 8,
                 seed: int = 0, n_particle_types: int = N_PARTICLE_TYPES, type_embedding: int = 16):
        super().__init__(dim, history, cond_dim, bounds=bounds, periodic=periodic, radius=radius, dx=dx,
                         n_particle_types=n_particle_types, type_embedding=type_embedding)
        from sciflow.operators import build_operator  # the registry imports this module lazily

        if dim != 2:
            raise ValueError(f"ReducedOrder: the latent grid operators are 2D; got dim {dim}")
        if not 0 < ratio <= 1:
            raise ValueError(f"ReducedOrder: ratio must be in (0, 1], got {ratio}")
        if sampling not in SAMPLING_METHODS:
            raise ValueError(f"ReducedOrder: sampling must be one of {SAMPLING_METHODS}, got {sampling!r}")
        if interpolation_neighbors < 1:
            raise ValueError(f"ReducedOrder: interpolation_neighbors must be >= 1, got {interpolation_neighbors}")
        self.ratio, self.sampling, self.seed = float(ratio), sampling, int(seed)
        self.sparse_radius = float(sparse_radius) if sparse_radius else self.radius / math.pow(self.ratio, 1.0 / dim)
        self.spacing = sparse_spacing(self.dx, self.ratio, dim)
        self.k = int(interpolation_neighbors)
        cells = [int(latent_grid)] * dim if isinstance(latent_grid, int) else [int(c) for c in latent_grid]
        if len(cells) != dim or min(cells) < 2:
            raise ValueError(f"ReducedOrder: latent_grid must be an int or {dim} ints >= 2, got {latent_grid}")
        self.grid_shape = tuple(cells)
        lo, size = torch.tensor(self.domain.lower), torch.tensor(self.domain.size)
        axes = [lo[d] + (torch.arange(n, dtype=torch.float64) + 0.5) * size[d] / n for d, n in enumerate(cells)]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, dim)  # x-first
        self.register_buffer("grid_points", grid.float(), persistent=False)
        cell = float(max(s / n for s, n in zip(self.domain.size, cells)))
        self.gno_radius = float(gno_radius) * cell if gno_radius is not None else max(1.5 * cell, 2 * self.spacing)

        self.node_encoder = mlp(self.node_features, width, width, mlp_layers)
        self.edge_encoder = mlp(self.edge_features, width, width, mlp_layers)
        self.gnn_in = nn.ModuleList(InteractionNetwork(width, mlp_layers) for _ in range(gnn_layers))
        self.to_grid = GraphIntegral(width, latent_channels, dim, hidden=width, hidden_layers=mlp_layers)
        spec = dict(grid_operator or DEFAULT_GRID_OPERATOR)
        init = dict(spec.get("init_args") or {})
        init.setdefault("periodic", all(self.domain.periodic))  # a grid operator wraps only a periodic box
        self.grid_operator = build_operator({"class_path": spec["class_path"], "init_args": init},
                                            in_channels=latent_channels, out_channels=latent_channels,
                                            n_dims=dim, cond_dim=cond_dim)
        self.from_grid = GraphIntegral(latent_channels, width, dim, hidden=width, hidden_layers=mlp_layers)
        self.merge = mlp(2 * width, width, width, mlp_layers)
        self.gnn_out = nn.ModuleList(InteractionNetwork(width, mlp_layers) for _ in range(gnn_layers))
        self.decoder = mlp(width, width, dim, mlp_layers, layer_norm=False)
        self.interpolation = KernelInterpolation()

    # -- pieces --------------------------------------------------------------------------------------
    def sample(self, position: Tensor, batch: Tensor) -> Tensor:
        """Indices of the sparse particles: random in training, deterministic in evaluation."""
        if self.training:
            return subsample(position, batch, self.ratio, self.sampling, domain=self.domain, random_start=True)
        gen = torch.Generator().manual_seed(self.seed) if self.sampling == "random" else None
        return subsample(position, batch, self.ratio, self.sampling, domain=self.domain, generator=gen)

    def sparse_forward(self, position: Tensor, velocity: Tensor, particle_type: Tensor, batch: Tensor,
                       cond: Tensor | None, n_samples: int) -> Tensor:
        """The normalised acceleration ``(n, dim)`` of the sparse particles given to it."""
        edges = radius_graph(position, self.sparse_radius, batch, domain=self.domain)
        h = self.node_encoder(self.node_inputs(position, velocity, particle_type, batch, cond))
        e = self.edge_encoder(self.edge_inputs(position, edges, self.sparse_radius))
        for block in self.gnn_in:
            h, e = block(h, edges, e)

        G = self.grid_points.shape[0]
        grid = self.grid_points.to(position.dtype).repeat(n_samples, 1)
        grid_batch = torch.arange(n_samples, device=position.device).repeat_interleave(G)
        p2g = radius_bipartite(position, grid, self.gno_radius, source_batch=batch, target_batch=grid_batch,
                               domain=self.domain)
        d = self.domain.displacement(position[p2g[0]], grid[p2g[1]]) / self.gno_radius
        u = self.to_grid(h, p2g, d, n_samples * G)  # (B G, C)
        u = u.reshape(n_samples, *self.grid_shape, -1).movedim(-1, 1)  # (B, C, nx, ny)
        u = self.grid_operator(u, cond[:n_samples] if self.cond_dim else None)
        u = u.movedim(1, -1).reshape(n_samples * G, -1)
        back = self.from_grid(u, p2g.flip(0), -d, position.shape[0])
        h = h + self.merge(torch.cat([h, back], dim=-1))
        for block in self.gnn_out:
            h, e = block(h, edges, e)
        return self.decoder(h)

    def interpolate(self, acc: Tensor, sparse_pos: Tensor, sparse_batch: Tensor, position: Tensor,
                    batch: Tensor) -> Tensor:
        """Evaluate the sparse accelerations ``(n, dim)`` at every particle ``position (N, dim)``."""
        edges = knn_bipartite(sparse_pos, position, self.k, source_batch=sparse_batch, target_batch=batch,
                              domain=self.domain)
        d = self.domain.displacement(sparse_pos[edges[0]], position[edges[1]])
        return self.interpolation(acc, edges, d, position.shape[0], self.spacing)

    def forward(self, position: Tensor, velocity: Tensor, particle_type: Tensor, batch: Tensor,
                cond: Tensor | None = None, sparse: Tensor | None = None) -> Tensor:
        """``sparse``: indices of the particles to evaluate the network on (default :meth:`sample`)."""
        self.check_inputs(position, velocity, particle_type, batch, cond)
        n_samples = int(batch.max()) + 1 if batch.numel() else 0
        keep = self.sample(position, batch) if sparse is None else sparse
        acc = self.sparse_forward(position[keep], velocity[keep], particle_type[keep], batch[keep], cond, n_samples)
        return self.interpolate(acc, position[keep], batch[keep], position, batch)


__all__ = ["ReducedOrder"]

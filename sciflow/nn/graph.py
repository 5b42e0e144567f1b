"""Graph layers for particle operators, on torch-geometric's ``MessagePassing``.

- :func:`mlp`: the MLP of GNS (hidden layers with ReLU, optional LayerNorm on the output).
- :class:`InteractionNetwork`: one GNS processor block: edges updated from (sender, receiver,
  edge), nodes from (node, sum of incoming edges), both with residual connections.
- :class:`GraphIntegral`: a graph kernel integral between two point sets (the graph neural
  operator of GINO / GIOROM): ``u(y) = mean_{x in A(y)} k(x - y, f(x))``, used to go from
  particles to a latent grid and back.
- :class:`KernelInterpolation`: a learned, normalised radial kernel average ``sum_s w(|q - x_s|)
  f_s / sum_s w`` over the ``k`` nearest sources of each query point (sparse particles to dense
  ones).

Edge convention: ``edge_index[0]`` sends (``j``), ``edge_index[1]`` receives (``i``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter


def mlp(in_features: int, hidden: int, out_features: int, hidden_layers: int = 2,
        layer_norm: bool = True) -> nn.Sequential:
    """``hidden_layers`` Linear+ReLU layers of width ``hidden``, a Linear to ``out_features`` and
    (``layer_norm``) a LayerNorm on the output, as in GNS."""
    if hidden_layers < 0:
        raise ValueError(f"mlp: hidden_layers must be >= 0, got {hidden_layers}")
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(hidden_layers):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, out_features))
    if layer_norm:
        layers.append(nn.LayerNorm(out_features))
    return nn.Sequential(*layers)


class InteractionNetwork(MessagePassing):
    """One message-passing block of GNS's processor (latent width ``width``).

    ``e' = e + f_e([v_j, v_i, e])``, ``v' = v + f_v([v, sum_{j -> i} f_e(...)])``.
    Shapes: ``x (N, width)``, ``edge_attr (E, width)``, ``edge_index (2, E)`` -> the updated
    ``(x, edge_attr)``.
    """

    def __init__(self, width: int, hidden_layers: int = 2):
        super().__init__(aggr="sum")
        self.edge_fn = mlp(3 * width, width, width, hidden_layers)
        self.node_fn = mlp(2 * width, width, width, hidden_layers)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> tuple[Tensor, Tensor]:
        e = self.edge_updater(edge_index, x=x, edge_attr=edge_attr)
        agg = self.propagate(edge_index, e=e, size=(x.shape[0], x.shape[0]))
        return x + self.node_fn(torch.cat([x, agg], dim=-1)), edge_attr + e

    def edge_update(self, x_j: Tensor, x_i: Tensor, edge_attr: Tensor) -> Tensor:
        return self.edge_fn(torch.cat([x_j, x_i, edge_attr], dim=-1))

    def message(self, e: Tensor) -> Tensor:
        return e


class GraphIntegral(MessagePassing):
    """Kernel integral from source points to target points (graph neural operator).

    ``u_i = mean_{j -> i} k([d_ij / r, |d_ij| / r, f_j])`` with ``d_ij = x_j - y_i`` (minimum
    images are the caller's business: pass ``displacement``) and ``k`` an MLP. Targets with no
    source in reach get 0.

    Shapes: ``f (N_src, in_features)``, ``displacement (E, D)`` (already divided by the radius),
    ``edge_index (2, E)``, ``n_targets`` -> ``(n_targets, out_features)``.
    """

    def __init__(self, in_features: int, out_features: int, dim: int, hidden: int = 64,
                 hidden_layers: int = 2):
        super().__init__(aggr="mean")
        self.kernel = mlp(dim + 1 + in_features, hidden, out_features, hidden_layers, layer_norm=False)

    def forward(self, f: Tensor, edge_index: Tensor, displacement: Tensor, n_targets: int) -> Tensor:
        return self.propagate(edge_index, f=f, d=displacement, size=(f.shape[0], n_targets))

    def message(self, f_j: Tensor, d: Tensor) -> Tensor:
        return self.kernel(torch.cat([d, d.norm(dim=-1, keepdim=True), f_j], dim=-1))


class KernelInterpolation(nn.Module):
    """Evaluate a field known at source points at query points by a learned kernel average.

    ``f(q) = sum_s w(|q - x_s| / h) f_s / sum_s w`` over the given edges (e.g. the ``k`` nearest
    sources of each query), with a learned positive radial profile ``w``: piecewise linear in
    ``r = |d| / h`` on ``n_knots`` knots over ``[0, r_max]`` (constant beyond), initialised to
    ``exp(-r^2)``; ``h`` is a length scale given per call (e.g. the sparse particle spacing).
    The weights form a partition of unity, so a constant field is reproduced exactly whatever
    the learned profile. The cost is a gather and a lerp per edge: a dense cloud of 1e5
    particles with 8 sources each costs far less than the network on the sparse particles.

    Shapes: ``f (N_src, C)``, ``edge_index (2, E)`` (row 0 sources, row 1 queries; every query
    must have at least one edge), ``displacement (E, D)`` = ``x_s - q`` (minimum images),
    ``n_queries``, ``scale`` -> ``(n_queries, C)``.
    """

    def __init__(self, n_knots: int = 16, r_max: float = 3.0):
        super().__init__()
        if n_knots < 2 or not r_max > 0:
            raise ValueError(f"KernelInterpolation: need n_knots >= 2 and r_max > 0, got {n_knots}, {r_max}")
        self.r_max = float(r_max)
        r = torch.linspace(0.0, r_max, n_knots)
        w0 = torch.exp(-(r**2)).clamp_min(1e-4)
        self.profile = nn.Parameter(torch.log(torch.expm1(w0)))  # softplus^-1: starts at exp(-r^2)

    def weights(self, displacement: Tensor, scale: float) -> Tensor:
        """``(E,)`` positive weights of the edges."""
        r = (displacement.norm(dim=-1) / scale).clamp(max=self.r_max)
        x = r * ((self.profile.numel() - 1) / self.r_max)
        lo = x.floor().long().clamp(max=self.profile.numel() - 2)
        t = x - lo
        w = nn.functional.softplus(self.profile)
        return w[lo] * (1 - t) + w[lo + 1] * t

    def forward(self, f: Tensor, edge_index: Tensor, displacement: Tensor, n_queries: int,
                scale: float) -> Tensor:
        w = self.weights(displacement, scale) + 1e-12
        src, dst = edge_index
        num = scatter(w[:, None] * f[src], dst, dim=0, dim_size=n_queries, reduce="sum")
        den = scatter(w, dst, dim=0, dim_size=n_queries, reduce="sum")
        return num / den[:, None]


__all__ = ["GraphIntegral", "InteractionNetwork", "KernelInterpolation", "mlp"]

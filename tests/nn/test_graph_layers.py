"""Graph layers and sub-sampling: permutation equivariance, partition of unity, sampling counts."""

import numpy as np
import pytest
import torch

from sciflow.nn.graph import GraphIntegral, InteractionNetwork, KernelInterpolation
from sciflow.nn.neighbors import Domain, knn_bipartite, radius_graph
from sciflow.nn.sampling import farthest_point_sample, sample_counts, subsample


def test_interaction_network_is_permutation_equivariant():
    torch.manual_seed(0)
    pos = torch.rand(60, 2)
    edges = radius_graph(pos, 0.25)
    x, e = torch.randn(60, 16), torch.randn(edges.shape[1], 16)
    layer = InteractionNetwork(16)
    y, f = layer(x, edges, e)
    perm = torch.randperm(60)
    inv = torch.argsort(perm)  # new index of old particle i is inv[i]
    # relabel the nodes and shuffle the edge order as well
    eperm = torch.randperm(edges.shape[1])
    y2, f2 = layer(x[perm], inv[edges][:, eperm], e[eperm])
    assert torch.allclose(y2, y[perm], atol=1e-5)
    assert torch.allclose(f2, f[eperm], atol=1e-5)
    # messages are summed: a node with no edge only sees itself
    lonely = torch.ones(60, dtype=torch.bool)
    lonely[edges[1]] = False
    if lonely.any():
        assert torch.allclose(y[lonely], x[lonely] + layer.node_fn(torch.cat([x, torch.zeros_like(x)], -1))[lonely])


def test_graph_integral_is_a_mean_over_sources():
    torch.manual_seed(0)
    layer = GraphIntegral(3, 4, dim=2)
    f = torch.randn(5, 3)
    d = torch.randn(5, 2)
    edges = torch.tensor([[0, 1, 2, 3, 4], [0, 0, 1, 1, 1]])
    out = layer(f, edges, d, n_targets=3)
    k = layer.kernel(torch.cat([d, d.norm(dim=-1, keepdim=True), f], -1))
    assert torch.allclose(out[0], k[:2].mean(0), atol=1e-6)
    assert torch.allclose(out[1], k[2:].mean(0), atol=1e-6)
    assert torch.equal(out[2], torch.zeros(4))  # no source in reach


def test_kernel_interpolation_reproduces_constants_and_is_local():
    torch.manual_seed(0)
    interp = KernelInterpolation()
    with torch.no_grad():
        interp.profile.add_(torch.randn(interp.profile.shape))  # any learned profile
    src, qry = torch.rand(40, 2), torch.rand(300, 2)
    edges = knn_bipartite(src, qry, 6)
    d = src[edges[0]] - qry[edges[1]]
    const = torch.tensor([[0.3, -2.0]]).expand(40, 2)
    out = interp(const, edges, d, 300, scale=0.1)
    assert torch.allclose(out, const[:1].expand(300, 2), atol=1e-5)  # partition of unity
    f = torch.randn(40, 3)
    out = interp(f, edges, d, 300, scale=0.1)
    # a convex combination of the neighbours' values
    lo = torch.full((300, 3), float("inf")).scatter_reduce(0, edges[1][:, None].expand(-1, 3), f[edges[0]], "amin")
    hi = torch.full((300, 3), -float("inf")).scatter_reduce(0, edges[1][:, None].expand(-1, 3), f[edges[0]], "amax")
    assert ((out >= lo - 1e-5) & (out <= hi + 1e-5)).all()
    # the profile is what it says: piecewise linear in |d| / h, constant beyond r_max
    w = interp.weights(torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.05], [10.0, 0.0]]), scale=0.1)
    knots = torch.nn.functional.softplus(interp.profile)
    step = 3.0 / (knots.numel() - 1)
    assert torch.allclose(w[0], knots[0]) and torch.allclose(w[3], knots[-1])
    assert torch.allclose(w[1], knots[int(1 / step)] * (1 - (1 / step) % 1) + knots[int(1 / step) + 1] * ((1 / step) % 1))


def test_farthest_point_sample_against_reference():
    rng = np.random.default_rng(0)
    x = rng.random((200, 2))
    dom = Domain.from_bounds([[0, 1], [0, 1]], True)
    got = farthest_point_sample(torch.from_numpy(x), 20, domain=dom).tolist()
    # reference: a plain loop over minimum-image distances
    chosen, best = [0], np.full(200, np.inf)
    for _ in range(19):
        d = x - x[chosen[-1]]
        d -= np.round(d)
        best = np.minimum(best, (d**2).sum(1))
        chosen.append(int(np.argmax(best)))
    assert got == chosen
    assert len(set(got)) == 20


@pytest.mark.parametrize("method", ["fps", "random"])
def test_subsample_counts_per_sample(method):
    pos = torch.rand(130, 2)
    batch = torch.tensor([0] * 100 + [1] * 30)
    idx = subsample(pos, batch, 0.1, method, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.bincount(batch[idx]), torch.tensor([10, 3]))
    assert len(set(idx.tolist())) == 13 and (idx[1:] > idx[:-1]).all()
    again = subsample(pos, batch, 0.1, method, generator=torch.Generator().manual_seed(0))
    assert torch.equal(idx, again)  # deterministic for a fixed generator / start
    with pytest.raises(ValueError, match="ratio must be in"):
        sample_counts(torch.tensor([10]), 0.0)
    with pytest.raises(ValueError, match="unknown sampling method"):
        subsample(pos, batch, 0.1, "voronoi")

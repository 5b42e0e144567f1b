"""Neighbour search against a brute-force reference, in open, periodic and mixed boxes."""

import numpy as np
import pytest
import torch

from sciflow.nn.neighbors import Domain, radius_bipartite, radius_graph


def brute_pairs(src, dst, r, domain, same=False):
    """Set of (i_src, j_dst) with minimum-image distance <= r (brute force, float64)."""
    d = src[:, None, :] - dst[None, :, :]
    size, per = np.array(domain.size), np.array(domain.periodic)
    d = np.where(per, d - size * np.round(d / size), d)
    dist = np.sqrt((d**2).sum(-1))
    i, j = np.nonzero(dist <= r)
    return {(a, b) for a, b in zip(i.tolist(), j.tolist()) if not (same and a == b)}


def as_set(edge_index):
    return set(map(tuple, edge_index.T.tolist()))


DOMAINS = {
    "open": Domain.from_bounds([[0.0, 1.0], [-0.5, 0.5]], False),
    "periodic": Domain.from_bounds([[0.0, 1.0], [-0.5, 0.5]], True),
    "mixed": Domain.from_bounds([[0.0, 1.0], [-0.5, 0.5]], [True, False]),
    "periodic3d": Domain.from_bounds([[0.0, 1.0], [0.0, 2.0], [1.0, 1.5]], True),
}


def points(domain, n, rng):
    lo, size = np.array(domain.lower), np.array(domain.size)
    return lo + rng.random((n, domain.dim)) * size


@pytest.mark.parametrize("name", list(DOMAINS))
def test_radius_graph_matches_brute_force(name):
    rng = np.random.default_rng(0)
    dom = DOMAINS[name]
    x = points(dom, 300, rng)
    r = 0.11
    e = radius_graph(torch.from_numpy(x), r, domain=dom)
    assert as_set(e) == brute_pairs(x, x, r, dom, same=True)
    # receivers sorted, each edge once, both directions present
    assert (e[1][1:] >= e[1][:-1]).all() and len(as_set(e)) == e.shape[1]
    if name != "open":
        # the periodic images really are used: some edge crosses a periodic face
        d = np.abs(x[e[0]] - x[e[1]])
        assert (d[:, np.array(dom.periodic)] > r).any()


def test_radius_graph_self_loops_and_batches():
    rng = np.random.default_rng(1)
    dom = DOMAINS["periodic"]
    x = points(dom, 120, rng)
    batch = torch.tensor([0] * 50 + [1] * 70)
    e = radius_graph(torch.from_numpy(x), 0.15, batch, domain=dom, loop=True)
    expect = {(a, b) for a, b in brute_pairs(x[:50], x[:50], 0.15, dom)}
    expect |= {(a + 50, b + 50) for a, b in brute_pairs(x[50:], x[50:], 0.15, dom)}
    assert as_set(e) == expect  # self-loops included, never across samples


def test_points_on_the_periodic_face_wrap():
    dom = DOMAINS["periodic"]
    # 1.0 is the same place as 0.0; -1e-17 rounds to 1.0 in float64 modulo arithmetic
    x = torch.tensor([[1.0, 0.0], [0.0, 0.0], [-1e-17, 0.0], [0.98, -0.5]], dtype=torch.float64)
    e = radius_graph(x, 0.05, domain=dom)
    assert as_set(e) == brute_pairs(x.numpy(), x.numpy(), 0.05, dom, same=True)


@pytest.mark.parametrize("name", ["open", "periodic", "mixed"])
def test_bipartite_matches_brute_force(name):
    rng = np.random.default_rng(2)
    dom = DOMAINS[name]
    src, dst = points(dom, 200, rng), points(dom, 90, rng)
    dst[:5] = src[:5]  # coincident points (distance 0) must be joined too
    e = radius_bipartite(torch.from_numpy(src), torch.from_numpy(dst), 0.1, domain=dom)
    assert as_set(e) == brute_pairs(src, dst, 0.1, dom)
    assert (e[1][1:] >= e[1][:-1]).all()


def test_bipartite_batches_and_shared_side():
    rng = np.random.default_rng(3)
    dom = DOMAINS["open"]
    src = points(dom, 100, rng)
    grid = points(dom, 30, rng)
    sb = torch.tensor([0] * 40 + [1] * 60)
    e = radius_bipartite(torch.from_numpy(src), torch.from_numpy(np.concatenate([grid, grid])), 0.2,
                         source_batch=sb, target_batch=torch.tensor([0] * 30 + [1] * 30), domain=dom)
    expect = brute_pairs(src[:40], grid, 0.2, dom) | {(a + 40, b + 30) for a, b in brute_pairs(src[40:], grid, 0.2, dom)}
    assert as_set(e) == expect
    # the same grid shared by both samples, given once
    shared = radius_bipartite(torch.from_numpy(src), torch.from_numpy(grid), 0.2, source_batch=sb, domain=dom)
    assert as_set(shared) == brute_pairs(src, grid, 0.2, dom)


def test_bad_input_is_named():
    x = torch.rand(10, 2)
    with pytest.raises(ValueError, match="radius must be > 0"):
        radius_graph(x, 0.0)
    with pytest.raises(ValueError, match=r"expected positions \(N, D\)"):
        radius_graph(torch.rand(10), 0.1)
    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf .particle 3"):
        radius_graph(x, 0.1)
    with pytest.raises(ValueError, match="must be sorted"):
        radius_graph(torch.rand(4, 2), 0.1, torch.tensor([1, 0, 0, 1]))
    with pytest.raises(ValueError, match="coordinates"):
        radius_bipartite(torch.rand(4, 2), torch.rand(4, 3), 0.1)
    with pytest.raises(ValueError, match="hi > lo"):
        Domain.from_bounds([[0, 1], [1, 1]], False)


def test_domain_displacement_and_wrap():
    dom = DOMAINS["mixed"]
    a = torch.tensor([[0.95, 0.45]])
    b = torch.tensor([[0.05, -0.45]])
    d = dom.displacement(a, b)
    assert torch.allclose(d, torch.tensor([[-0.1, 0.9]]))  # wraps on x only
    assert torch.allclose(dom.wrap(torch.tensor([[1.25, 0.7]])), torch.tensor([[0.25, 0.7]]))


@pytest.mark.parametrize("name", ["open", "periodic", "mixed"])
def test_knn_matches_brute_force(name):
    from sciflow.nn.neighbors import knn_bipartite

    rng = np.random.default_rng(4)
    dom = DOMAINS[name]
    src, dst = points(dom, 150, rng), points(dom, 60, rng)
    e = knn_bipartite(torch.from_numpy(src), torch.from_numpy(dst), 5, domain=dom)
    d = src[:, None, :] - dst[None, :, :]
    size, per = np.array(dom.size), np.array(dom.periodic)
    dist = np.sqrt((np.where(per, d - size * np.round(d / size), d) ** 2).sum(-1))  # (150, 60)
    expect = {(int(s), q) for q in range(60) for s in np.argsort(dist[:, q])[:5]}
    assert as_set(e) == expect
    # fewer sources than k in a sample: all of them
    e2 = knn_bipartite(torch.from_numpy(src[:3]), torch.from_numpy(dst), 5, domain=dom)
    assert e2.shape[1] == 3 * 60

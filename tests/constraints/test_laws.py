"""The laws' operators: adjoints, supports, the vertex divergence of MAC data, the DST solve."""

from __future__ import annotations

import pytest
import torch

from sciflow.constraints import CrossSectionFlux, Integral, LawSet, VertexDivergence, solve_normal
from sciflow.constraints.divergence import dst1
from tests.constraints.helpers import mac_field


def _laws(mask=None):
    g = torch.Generator().manual_seed(0)
    B, C, nx, ny = 2, 3, 8, 6
    w = torch.rand(B, nx, ny, generator=g, dtype=torch.float64)
    h = torch.tensor([[0.1, 0.2], [0.3, 0.05]], dtype=torch.float64)
    return [
        Integral(w, 2, C),
        CrossSectionFlux(w, 0, C, axis=0),
        CrossSectionFlux(w, 1, C, axis=1),
        VertexDivergence(h, (0, 1), C, (nx, ny), mask),
        LawSet([Integral(w, 2, C), VertexDivergence(h, (0, 1), C, (nx, ny), mask)]),
    ]


def _mask():
    m = torch.ones(2, 8, 6, dtype=torch.bool)
    m[1, 3:5, 2:4] = False
    return m


@pytest.mark.parametrize("masked", [False, True])
def test_adjoint_and_support(masked):
    g = torch.Generator().manual_seed(1)
    for law in _laws(_mask() if masked else None):
        u = torch.randn(4, 2, 3, 8, 6, generator=g, dtype=torch.float64)
        lam = torch.randn(4, 2, law.n_constraints, generator=g, dtype=torch.float64)
        if law.active is not None:
            lam = lam * law.active
        lhs, rhs = (law.apply(u) * lam).sum(), (u * law.adjoint(lam)).sum()
        assert abs(float(lhs - rhs)) < 1e-11 * float(lhs.abs() + rhs.abs() + 1), law.name
        # entries off the support do not change G u
        assert torch.allclose(law.apply(u * law.support()), law.apply(u), rtol=1e-12, atol=1e-12), law.name
        assert bool((law.magnitude(u) >= law.apply(u).abs() - 1e-12).all()), law.name


def test_take_selects_batch_elements():
    g = torch.Generator().manual_seed(2)
    u = torch.randn(2, 3, 8, 6, generator=g, dtype=torch.float64)
    idx = torch.tensor([1, 1, 0])
    for law in _laws(_mask()):
        torch.testing.assert_close(law.take(idx).apply(u[idx]), law.apply(u)[idx])


def test_vertex_divergence_of_mac_cell_averages_is_zero():
    """Cell-centred averages of an exactly divergence-free staggered field satisfy the vertex
    divergence to round-off; the central difference over two cells does not."""
    g = torch.Generator().manual_seed(3)
    hx, hy = 0.1, 0.07
    uv = mac_field(2, 16, 12, hx, hy, g)
    law = VertexDivergence(torch.tensor([[hx, hy]] * 2, dtype=torch.float64), (0, 1), 2, (16, 12))
    rel = law.apply(uv).abs().max() / law.magnitude(uv).max()
    assert rel < 1e-14
    U, V = uv[:, 0], uv[:, 1]
    central = (U[:, 2:, 1:-1] - U[:, :-2, 1:-1]) / (2 * hx) + (V[:, 1:-1, 2:] - V[:, 1:-1, :-2]) / (2 * hy)
    assert central.abs().max() / law.magnitude(uv).max() > 1e-2


def test_dst_is_its_own_inverse_and_preconditioner_is_exact():
    x = torch.randn(3, 7, dtype=torch.float64)
    torch.testing.assert_close(dst1(dst1(x)) * 2 / 8, x)
    ref = torch.stack([torch.sin(torch.pi * k * torch.arange(1, 8, dtype=torch.float64) / 8) for k in range(1, 8)])
    torch.testing.assert_close(dst1(x), x @ ref.T)
    law = VertexDivergence(torch.tensor([[0.1, 0.3]], dtype=torch.float64), (0, 1), 2, (16, 12))
    sigma = torch.full((1, 2, 16, 12), 2.5, dtype=torch.float64)
    sigma[:, 1] = 0.5  # constant per component: still diagonal in the sine basis
    r = law.apply(torch.randn(1, 2, 16, 12, dtype=torch.float64))
    lam = law.preconditioner(sigma, 0.1)(r)
    assert (law.normal(lam, sigma, 0.1) - r).norm() < 1e-12 * r.norm()


def test_cg_converges_with_a_varying_weight_and_a_mask():
    g = torch.Generator().manual_seed(4)
    m = torch.ones(1, 16, 12, dtype=torch.bool)
    m[0, 5:9, 4:7] = False
    law = VertexDivergence(torch.tensor([[0.1, 0.1]], dtype=torch.float64), (0, 1), 2, (16, 12), m)
    sigma = torch.rand(1, 2, 16, 12, generator=g, dtype=torch.float64) * 10 + 0.1
    r = law.apply(torch.randn(3, 1, 2, 16, 12, generator=g, dtype=torch.float64))
    lam = solve_normal(law, r, sigma)
    assert ((law.normal(lam, sigma, 0.0) - r).norm(dim=-1) <= 1e-12 * r.norm(dim=-1)).all()
    assert (lam * ~law.active).abs().max() == 0  # nothing on vertices next to the obstacle


def test_bad_geometry_is_refused():
    with pytest.raises(ValueError, match="all-zero weights"):
        Integral(torch.zeros(1, 4), 0, 1)
    with pytest.raises(ValueError, match="no section"):
        CrossSectionFlux(torch.zeros(1, 4, 4), 0, 2)
    with pytest.raises(ValueError, match="no vertex"):
        VertexDivergence(torch.ones(1, 2), (0, 1), 2, (4, 4), torch.eye(4, dtype=torch.bool)[None])
    with pytest.raises(ValueError, match="spacing"):
        VertexDivergence(torch.tensor([[0.1, -1.0]]), (0, 1), 2, (4, 4))

"""The ProbConserv update against closed forms, its sigma_G -> 0 limit, HardC, the per-member
projection and stopped members."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sciflow.constraints import (
    CrossSectionFlux,
    Integral,
    VertexDivergence,
    ensemble_moments,
    probconserv_update,
    project,
    project_members,
    weights_from_variance,
)


def _two_cells():
    g = torch.tensor([[0.3, 1.7]], dtype=torch.float64)  # G = [g1, g2] on a 2-cell grid
    return Integral(g, 0, 1)


@pytest.mark.parametrize("sigma_g", [0.0, 0.4])
def test_update_matches_the_closed_form_for_two_variables(sigma_g):
    """mu'_i = mu_i - s_i^2 g_i (g.mu - b) / (sum_j g_j^2 s_j^2 + sigma_G^2),
    var'_i = s_i^2 - (s_i^2 g_i)^2 / (sum_j g_j^2 s_j^2 + sigma_G^2)."""
    law = _two_cells()
    g1, g2 = 0.3, 1.7
    mu = torch.tensor([[[1.2, -0.4]]], dtype=torch.float64)
    var = torch.tensor([[[0.5, 2.0]]], dtype=torch.float64)
    b = torch.tensor([[0.9]], dtype=torch.float64)
    new_mu, new_var = probconserv_update(law, mu, var, b, sigma_g)
    denom = g1**2 * 0.5 + g2**2 * 2.0 + sigma_g**2
    resid = g1 * 1.2 + g2 * -0.4 - 0.9
    want_mu = [1.2 - 0.5 * g1 * resid / denom, -0.4 - 2.0 * g2 * resid / denom]
    want_var = [0.5 - (0.5 * g1) ** 2 / denom, 2.0 - (2.0 * g2) ** 2 / denom]
    np.testing.assert_allclose(new_mu.flatten().numpy(), want_mu, rtol=1e-14)
    np.testing.assert_allclose(new_var.flatten().numpy(), want_var, rtol=1e-13)
    # the full 2 x 2 posterior covariance has this diagonal (Schur complement)
    S = np.diag([0.5, 2.0])
    G = np.array([[g1, g2]])
    post = S - S @ G.T @ np.linalg.inv(sigma_g**2 + G @ S @ G.T) @ G @ S
    np.testing.assert_allclose(new_var.flatten().numpy(), np.diag(post), rtol=1e-13)


def test_sigma_g_to_zero_makes_the_law_exact():
    law = _two_cells()
    mu = torch.tensor([[[1.2, -0.4]]], dtype=torch.float64)
    var = torch.tensor([[[0.5, 2.0]]], dtype=torch.float64)
    b = torch.tensor([[0.9]], dtype=torch.float64)
    resid = abs(0.3 * 1.2 - 1.7 * 0.4 - 0.9)
    gsg = 0.3**2 * 0.5 + 1.7**2 * 2.0
    for s in (1e-1, 1e-2, 1e-3, 1e-4):
        m, _ = probconserv_update(law, mu, var, b, s)
        # what is left of the residual: sigma_G^2 / (sigma_G^2 + g Sigma g), falling as sigma_G^2
        assert float((law.apply(m) - b).abs()) == pytest.approx(resid * s**2 / (s**2 + gsg), rel=1e-9)
    exact, exact_var = probconserv_update(law, mu, var, b, 0.0)
    assert float((law.apply(exact) - b).abs()) < 1e-15
    near, near_var = probconserv_update(law, mu, var, b, 1e-7)
    torch.testing.assert_close(near, exact, rtol=0, atol=1e-12)
    torch.testing.assert_close(near_var, exact_var, rtol=0, atol=1e-12)


def test_hardc_is_the_euclidean_projection():
    g = torch.Generator().manual_seed(0)
    w = torch.rand(1, 5, 4, generator=g, dtype=torch.float64)
    law = CrossSectionFlux(w, 0, 2, axis=0)
    u = torch.randn(1, 2, 5, 4, generator=g, dtype=torch.float64)
    b = torch.rand(1, 5, generator=g, dtype=torch.float64)
    out = project(law, u, b, weights_from_variance(law, None))
    G = law.matrix().flatten(2)[0].numpy()  # (K, N)
    x = u.flatten().numpy()
    want = x - G.T @ np.linalg.solve(G @ G.T, G @ x - b[0].numpy())
    np.testing.assert_allclose(out.flatten().numpy(), want, rtol=1e-12, atol=1e-14)


def test_correction_goes_where_the_variance_is():
    law = Integral(torch.ones(1, 4, dtype=torch.float64), 0, 1)
    mu = torch.zeros(1, 1, 4, dtype=torch.float64)
    var = torch.tensor([[[1.0, 1e-3, 1e-3, 3.0]]], dtype=torch.float64)
    m, v = probconserv_update(law, mu, var, torch.ones(1, 1, dtype=torch.float64))
    np.testing.assert_allclose(m.flatten().numpy(), np.array([1.0, 1e-3, 1e-3, 3.0]) / 4.002, rtol=1e-12)
    # below the floor (1e-4 of the mean variance) a cell is weighted as if at the floor
    tiny = torch.tensor([[[1.0, 0.0, 1e-9, 3.0]]], dtype=torch.float64)
    m, _ = probconserv_update(law, mu, tiny, torch.ones(1, 1, dtype=torch.float64))
    floor = 1e-4 * 4.000000001 / 4
    np.testing.assert_allclose(m.flatten().numpy(), np.array([1.0, floor, floor, 3.0]) / (4 + 2 * floor), rtol=1e-9)
    assert float(law.apply(m) - 1) == pytest.approx(0.0, abs=1e-15)
    assert bool((v <= var).all())


def test_every_member_conserves_and_weights_follow_the_spread():
    g = torch.Generator().manual_seed(1)
    law = Integral(torch.full((2, 16), 1 / 16, dtype=torch.float64), 0, 1)
    spread = torch.linspace(0.01, 1.0, 16, dtype=torch.float64)
    members = torch.randn(5, 2, 1, 16, generator=g, dtype=torch.float64) * spread
    b = torch.tensor([[0.3], [-0.2]], dtype=torch.float64)
    for weighted in (True, False):
        out = project_members(law, members, b, weighted=weighted)
        assert (law.apply(out) - b).abs().max() < 1e-15
    out = project_members(law, members, b, weighted=True)
    change = (out - members).abs().mean((0, 1, 2))
    assert change[-1] > 20 * change[0]  # the most uncertain cells take most of the correction


def test_a_stopped_member_does_not_change_the_others():
    g = torch.Generator().manual_seed(2)
    h = torch.tensor([[0.1, 0.2]], dtype=torch.float64)
    law = VertexDivergence(h, (0, 1), 2, (8, 6))
    members = torch.randn(3, 1, 2, 8, 6, generator=g, dtype=torch.float64)
    blown = torch.full((1, 1, 2, 8, 6), float("nan"), dtype=torch.float64)
    blown[..., 0, 0] = 1e30
    b = torch.zeros(1, law.n_constraints, dtype=torch.float64)
    ref = project_members(law, members, b)
    both = project_members(law, torch.cat([members[:2], blown, members[2:]]), b)
    torch.testing.assert_close(both[[0, 1, 3]], ref, rtol=0, atol=1e-13)
    assert torch.equal(torch.isnan(both[2]), torch.isnan(blown[0]))
    mean, var, alive = ensemble_moments(torch.cat([members, blown]))
    assert alive[:, 0].tolist() == [True, True, True, False]
    torch.testing.assert_close(mean, members.mean(0))
    torch.testing.assert_close(var, members.var(0))


def test_single_member_falls_back_to_hardc():
    law = Integral(torch.ones(1, 4, dtype=torch.float64), 0, 1)
    one = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]], dtype=torch.float64)
    out = project_members(law, one, torch.zeros(1, 1, dtype=torch.float64), weighted=True)
    torch.testing.assert_close(out, one - 2.5)


def test_hutchinson_variance_of_a_matrix_free_law():
    """The estimated posterior variance of the divergence law matches the exact one (formed
    with the dense matrix on a tiny grid) within the estimator's noise."""
    g = torch.Generator().manual_seed(3)
    h = torch.tensor([[0.5, 0.4]], dtype=torch.float64)
    law = VertexDivergence(h, (0, 1), 2, (5, 4))
    var = torch.rand(1, 2, 5, 4, generator=g, dtype=torch.float64) + 0.5
    mean = torch.randn(1, 2, 5, 4, generator=g, dtype=torch.float64)
    b = torch.zeros(1, law.n_constraints, dtype=torch.float64)
    _, est = probconserv_update(law, mean, var, b, probes=4000, generator=g)
    G = law.matrix().flatten(2)[0]
    S = torch.diag(var.flatten())
    exact = torch.diag(S - S @ G.T @ torch.linalg.solve(G @ S @ G.T, G @ S)).reshape(var.shape)
    assert (est - exact).abs().max() < 0.08
    assert (est - exact).abs().mean() < 0.02

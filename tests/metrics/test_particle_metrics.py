"""Particle metrics against closed forms: position MSE, Sinkhorn divergence, kinetic energy, spread."""

import math

import pytest
import torch

from sciflow.metrics.particles import (
    ensemble_spread,
    horizon_means,
    kinetic_energy,
    kinetic_energy_error,
    position_mse,
    rollout_scores,
)
from sciflow.metrics.sinkhorn import entropic_ot, sinkhorn_divergence, squared_cost
from sciflow.nn.neighbors import Domain

PERIODIC = Domain.from_bounds([[0.0, 1.0], [0.0, 1.0]], True)


def test_position_mse_and_horizons():
    truth = torch.zeros(30, 10, 2)
    pred = truth + torch.arange(30.0)[:, None, None] * torch.tensor([0.1, 0.0])  # error grows linearly
    per_step = position_mse(pred, truth)
    assert torch.allclose(per_step, (0.1 * torch.arange(30.0, dtype=torch.float64)) ** 2 / 2)
    h = horizon_means(per_step)
    assert h["mse5"] == pytest.approx(float(per_step[:5].mean()))
    assert h["mse20"] == pytest.approx(float(per_step[:20].mean()))
    assert h["mse"] == pytest.approx(float(per_step.mean()))
    assert "mse20" not in horizon_means(per_step[:10])
    # minimum images: 0.99 and 0.01 are 0.02 apart in a periodic box
    a, b = torch.tensor([[[0.99, 0.5]]]), torch.tensor([[[0.01, 0.5]]])
    assert position_mse(a, b, PERIODIC).item() == pytest.approx(0.02**2 / 2)


def test_sinkhorn_closed_forms():
    torch.manual_seed(0)
    x = torch.rand(80, 2)
    assert sinkhorn_divergence(x, x).item() == pytest.approx(0.0, abs=1e-8)
    # single points: nothing to spread, the divergence is the squared distance
    p, q = torch.tensor([[0.1, 0.2]]), torch.tensor([[0.4, 0.6]])
    assert sinkhorn_divergence(p, q).item() == pytest.approx(0.25, rel=1e-6)
    # a translate by d: |d|^2 exactly, whatever the entropic regularisation
    d = torch.tensor([0.03, -0.04])
    for eps in (None, 0.02, 0.1):
        assert sinkhorn_divergence(x, x + d, epsilon=eps, threshold=1e-9).item() == pytest.approx(0.0025, rel=1e-5)
    # symmetric, positive for different clouds, and sees minimum images
    y = torch.rand(60, 2)
    assert sinkhorn_divergence(x, y).item() == pytest.approx(sinkhorn_divergence(y, x).item(), rel=1e-4)
    assert sinkhorn_divergence(x, y).item() > 0
    edge = torch.tensor([[0.995, 0.5]])
    assert sinkhorn_divergence(edge, torch.tensor([[0.005, 0.5]]), domain=PERIODIC).item() == pytest.approx(1e-4)


def test_entropic_ot_tends_to_the_assignment_cost():
    # two points each side: the optimal plan pairs them; the entropic value is within O(eps log N)
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([[0.1, 0.0], [1.2, 0.0]], dtype=torch.float64)
    ot = entropic_ot(squared_cost(x, y), 1e-4, threshold=1e-12)
    assert ot.item() == pytest.approx((0.1**2 + 0.2**2) / 2, abs=2e-4)


def test_entropic_ot_kernel_and_log_domain_agree():
    """The kernel form (matrix-vector products) and the log domain iterate the same fixed point;
    an epsilon so small that the kernel underflows falls back to the log domain."""
    from sciflow.metrics import sinkhorn as sk

    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 2, generator=g, dtype=torch.float64)
    y = 1.1 * torch.rand(180, 2, generator=g, dtype=torch.float64) + 0.3
    c = squared_cost(x, y)
    for eps in (0.05, 0.01, 0.003):
        log = sk._entropic_ot_log(c, eps, threshold=1e-11, max_iter=50_000)
        ker = sk._entropic_ot_kernel(c, eps, threshold=1e-11, max_iter=50_000)
        assert ker is not None
        assert float(ker) == pytest.approx(float(log), rel=1e-9, abs=1e-12)
        assert float(entropic_ot(c, eps, threshold=1e-11, max_iter=50_000)) == pytest.approx(float(log), rel=1e-9)
    tiny = float(c.max()) / 1000  # C / eps spans 1000 > the kernel's range
    assert float(entropic_ot(c, tiny, threshold=1e-6, max_iter=20_000)) == pytest.approx(
        float(sk._entropic_ot_log(c, tiny, threshold=1e-6, max_iter=20_000)), rel=1e-12)


def test_sinkhorn_bad_input():
    with pytest.raises(ValueError, match="need clouds"):
        sinkhorn_divergence(torch.rand(4, 2), torch.rand(4, 3))
    with pytest.raises(ValueError, match="NaN or Inf"):
        sinkhorn_divergence(torch.tensor([[float("nan"), 0.0]]), torch.rand(4, 2))


def test_kinetic_energy_uniform_motion():
    T, N, dt, dx = 12, 7, 0.5, 0.1
    v = torch.tensor([0.3, -0.4])  # speed 0.5 per second
    x = torch.rand(N, 2) + torch.arange(T, dtype=torch.float32)[:, None, None] * v * dt
    e = kinetic_energy(x, dt, dx)
    assert torch.allclose(e, torch.full((T - 1,), N * 0.25 * dx**2, dtype=torch.float64), rtol=1e-5)
    err = kinetic_energy_error(x * 1.0, x, dt, dx, stride=5)
    assert err["predicted"].shape == (3,) and err["mse"].item() == pytest.approx(0.0, abs=1e-12)
    slow = x[0] + (x - x[0]) * 0.5  # half the speed: a quarter of the energy
    err = kinetic_energy_error(slow, x, dt, dx, stride=5)
    assert err["mse"].item() == pytest.approx((0.75 * N * 0.25 * dx**2) ** 2, rel=1e-4)


def test_rollout_scores_keys_and_sinkhorn_frames():
    torch.manual_seed(0)
    truth = torch.rand(25, 30, 2).cumsum(0) * 0.01
    pred = truth + 0.01
    s = rollout_scores(pred, truth, frame_dt=0.1, dx=0.05)
    assert {"mse5", "mse10", "mse20", "mse", "sinkhorn", "e_kin_mse"} <= set(s)
    assert s["mse20"] == pytest.approx(1e-4, rel=1e-4)
    assert s["sinkhorn"] == pytest.approx(2e-4, rel=1e-3)  # a translate by (0.01, 0.01)
    assert s["e_kin_mse"] == pytest.approx(0.0, abs=1e-12)
    assert s["e_kin_pred"].shape == (24,)


@pytest.mark.parametrize("M", [2, 3, 5, 10])
def test_ensemble_spread_is_one_for_a_calibrated_ensemble(M):
    g = torch.Generator().manual_seed(M)
    centre = torch.rand(200, 50, 2, generator=g)
    # truth and members drawn from the same distribution around each particle's centre
    truth = centre + 0.01 * torch.randn(centre.shape, generator=g)
    members = centre + 0.01 * torch.randn(M, *centre.shape, generator=g)
    s = ensemble_spread(members, truth)
    ratio = math.sqrt((s["spread"] ** 2).mean() / (s["skill"] ** 2).mean())
    assert ratio == pytest.approx(1.0, abs=0.03)
    assert s["spread"].shape == (200,)
    # an ensemble whose spread is half the truth's scatter reads below 1
    narrow = centre + 0.005 * torch.randn(M, *centre.shape, generator=g)
    s = ensemble_spread(narrow, truth)
    assert math.sqrt((s["spread"] ** 2).mean() / (s["skill"] ** 2).mean()) < 0.8


def test_ensemble_spread_across_a_periodic_face():
    truth = torch.tensor([[[0.999, 0.5]]])
    members = torch.tensor([[[[0.001, 0.5]]], [[[0.997, 0.5]]]])
    s = ensemble_spread(members, truth, PERIODIC)
    # offsets +0.002 and -0.002 from the truth: their mean is the truth, their unbiased variance
    # 8e-6 on x and 0 on y (4e-6 on average), times (M + 1) / M = 1.5
    assert s["skill"].item() == pytest.approx(0.0, abs=1e-6)
    assert s["spread"].item() == pytest.approx(math.sqrt(1.5 * 4e-6), rel=1e-4)

"""Spatial error metrics: closed forms, masks, per-channel reductions and bad shapes."""

from __future__ import annotations

import math

import pytest
import torch

from sciflow.metrics import grouped_nmse, mae, masked_mean, mse, nmse, nrmse, vrmse


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 2, 8, 6, generator=g), torch.randn(4, 2, 8, 6, generator=g)


def test_mse_mae_match_direct_formulas(pair):
    p, t = pair
    d = (p - t).double()
    torch.testing.assert_close(mse(p, t), (d**2).mean(dim=(1, 2, 3)))
    torch.testing.assert_close(mae(p, t), d.abs().mean(dim=(1, 2, 3)))
    assert mse(p, t, per_channel=True).shape == (4, 2)
    torch.testing.assert_close(mse(p, t, per_channel=True).mean(dim=1), mse(p, t))
    assert mse(p, t).dtype == torch.float64


def test_nmse_of_zero_prediction_is_one_and_nrmse_is_its_root(pair):
    _, t = pair
    torch.testing.assert_close(nmse(torch.zeros_like(t), t), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(
        nmse(torch.zeros_like(t), t, per_channel=True), torch.ones(4, 2, dtype=torch.float64)
    )
    p = 0.5 * t  # error is half the truth everywhere: NMSE = 1/4, nRMSE = 1/2
    torch.testing.assert_close(nmse(p, t), torch.full((4,), 0.25, dtype=torch.float64))
    torch.testing.assert_close(nrmse(p, t), torch.full((4,), 0.5, dtype=torch.float64))


def test_nmse_pools_channels(pair):
    p, t = pair
    p, t = p.double(), t.double()
    want = ((p - t) ** 2).sum(dim=(1, 2, 3)) / (t**2).sum(dim=(1, 2, 3))
    torch.testing.assert_close(nmse(p, t), want)


def test_vrmse_closed_forms(pair):
    _, t = pair
    t = t.double()
    # predicting each channel's spatial mean gives sqrt(var / (var + eps)) ~ 1
    mean = t.mean(dim=(2, 3), keepdim=True).expand_as(t)
    torch.testing.assert_close(vrmse(mean, t, eps=0.0), torch.ones(4, dtype=torch.float64))
    # an error of c in channel 0 and 0 in channel 1: per channel c / std, averaged over channels
    c = 0.3
    p = t.clone()
    p[:, 0] += c
    std0 = t[:, 0].std(dim=(1, 2), correction=0)
    torch.testing.assert_close(vrmse(p, t, eps=0.0, per_channel=True)[:, 0], c / std0)
    torch.testing.assert_close(vrmse(p, t, eps=0.0), c / std0 / 2)


def test_mask_selects_cells_exactly(pair):
    p, t = pair
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(8, 6, generator=g) > 0.4
    d = (p - t).double()
    want = torch.stack([(d[b][:, mask] ** 2).mean() for b in range(4)])
    torch.testing.assert_close(mse(p, t, mask), want)
    # the same mask per sample gives the same answer; values outside the mask do not matter
    torch.testing.assert_close(mse(p, t, mask.expand(4, 8, 6)), want)
    p2 = p.clone()
    p2[:, :, ~mask] = 1e6
    torch.testing.assert_close(mse(p2, t, mask), want)
    assert not torch.allclose(mse(p2, t), mse(p, t))
    # per-sample masks: sample 0 sees only one cell
    per = torch.zeros(4, 8, 6, dtype=torch.bool)
    per[0, 2, 3] = True
    per[1:] = True
    out = mae(p, t, per)
    torch.testing.assert_close(out[0], d[0, :, 2, 3].abs().mean())
    torch.testing.assert_close(out[1:], mae(p, t)[1:])


def test_vrmse_and_nmse_respect_mask(pair):
    p, t = pair
    mask = torch.zeros(8, 6, dtype=torch.bool)
    mask[:4] = True
    torch.testing.assert_close(nmse(p, t, mask), nmse(p[..., :4, :], t[..., :4, :]))
    torch.testing.assert_close(vrmse(p, t, mask), vrmse(p[..., :4, :], t[..., :4, :]))


def test_bad_shapes_and_masks_raise(pair):
    p, t = pair
    with pytest.raises(ValueError, match=r"\(4, 2, 8, 6\) and \(4, 2, 8, 5\)"):
        mse(p, t[..., :5])
    with pytest.raises(ValueError, match="pred"):
        nmse(p[0, 0], t[0, 0])
    with pytest.raises(ValueError, match=r"mask of shape \(8, 5\)"):
        mse(p, t, torch.ones(8, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        mse(p, t, torch.ones(8, 6))
    with pytest.raises(ValueError, match=r"samples \[2\]"):
        m = torch.ones(4, 8, 6, dtype=torch.bool)
        m[2] = False
        mse(p, t, m)


def test_masked_mean_1d():
    x = torch.arange(6.0).reshape(1, 1, 6)
    mask = torch.tensor([True, False, True, False, False, True])
    assert masked_mean(x, mask).item() == pytest.approx((0 + 2 + 5) / 3)
    assert math.isclose(masked_mean(x).item(), 2.5)


def test_grouped_nmse_pools_within_a_group_only():
    truth = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
    truth[:, 0], truth[:, 1], truth[:, 2] = 1.0, 3.0, 100.0  # u, v (m/s) and p (Pa)
    pred = truth.clone()
    pred[:, 0] += 1.0  # error only in u
    g = grouped_nmse(pred, truth, [[0, 1], [2]])
    # velocity: mean sq. error over u, v = 0.5, mean truth^2 = (1 + 9) / 2 = 5 -> 0.1; pressure exact
    assert g.shape == (1, 2)
    assert g[0, 0].item() == pytest.approx(0.1) and g[0, 1].item() == 0.0
    # pooling everything would let pressure hide the velocity error
    assert nmse(pred, truth).item() < 1e-4

"""The template's shared pieces and the deterministic stepper: residual parametrisation, masked
MSE, input and conditioning layout, bad input."""

from __future__ import annotations

import pytest
import torch

from tests.steppers.helpers import NX, HistoryOnly, make_stepper


def test_residual_parametrisation_round_trips():
    s = make_stepper("deterministic", n_channels=2, history=2, residual_scale=[0.5, 2.0])
    g = torch.Generator().manual_seed(0)
    prev, target = torch.randn(3, 2, 2, NX, generator=g), torch.randn(3, 2, NX, generator=g)
    y = s.target_of(prev, target)
    torch.testing.assert_close(y[:, 0], (target[:, 0] - prev[:, -1, 0]) / 0.5)
    torch.testing.assert_close(y[:, 1], (target[:, 1] - prev[:, -1, 1]) / 2.0)
    torch.testing.assert_close(s.state_of(prev, y, None), target)
    plain = make_stepper({"class_path": "deterministic", "init_args": {"residual": False}})
    assert torch.equal(plain.target_of(prev[:, :, :1], target[:, :1]), target[:, :1])


def test_masked_mse_closed_form():
    a, b = torch.zeros(2, 1, 4), torch.tensor([[[1.0, 2.0, 3.0, 4.0]], [[1.0, 1.0, 1.0, 1.0]]])
    mask = torch.tensor([[True, True, False, False], [True, False, False, False]])
    # fluid cells: 1, 4 (sample 0) and 1 (sample 1) -> (1 + 4 + 1) / 3
    torch.testing.assert_close(make_stepper("deterministic").masked_mse(a, b, mask), torch.tensor(2.0))
    torch.testing.assert_close(make_stepper("deterministic").masked_mse(a, b, None), torch.tensor(34 / 8))


def test_loss_and_step_use_one_operator_call_on_history_and_mask():
    s = make_stepper("deterministic", has_mask=True, residual_scale=[0.5])
    stub = HistoryOnly(1, 1)
    s.operator = stub
    g = torch.Generator().manual_seed(1)
    prev, target, cond = torch.randn(2, 1, 1, NX, generator=g), torch.randn(2, 1, NX, generator=g), torch.randn(2, 1)
    mask = torch.ones(2, NX, dtype=torch.bool)
    mask[:, :4] = False
    out = s.step(prev, cond, mask)
    (x, c), = stub.seen
    assert x.shape == (2, 2, NX) and torch.equal(x[:, 1], mask.float()) and torch.equal(c, cond)
    expected = (prev[:, -1] + 0.5 * stub.conv(prev[:, -1])) * mask.unsqueeze(1)
    torch.testing.assert_close(out, expected.detach())
    loss = s.loss(prev, target, cond, mask)
    y = stub.conv(prev[:, -1])
    m = mask.unsqueeze(1).float()
    torch.testing.assert_close(loss, (m * (y - (target - prev[:, -1]) / 0.5) ** 2).sum() / m.sum())


def test_bad_residual_scale_raises():
    with pytest.raises(ValueError, match="residual_scale"):
        make_stepper("deterministic", n_channels=2, residual_scale=[1.0])

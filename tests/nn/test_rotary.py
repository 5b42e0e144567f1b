import math

import pytest
import torch

from sciflow.nn.rotary import RotaryEmbedding1d, axis_positions


def test_positions():
    torch.testing.assert_close(axis_positions(4, True), torch.tensor([0.0, 0.25, 0.5, 0.75]))
    torch.testing.assert_close(axis_positions(4, False), torch.tensor([0.125, 0.375, 0.625, 0.875]))


def test_rotation_closed_form_and_norm():
    rot = RotaryEmbedding1d(4, max_freq=4.0)  # frequencies 1 and 4 cycles per length
    x = torch.randn(3, 5, 4)
    y = rot(x)
    p = axis_positions(5, False)
    for m, f in enumerate([1.0, 4.0]):
        ang = 2 * math.pi * f * p
        a, b = x[..., m], x[..., 2 + m]
        torch.testing.assert_close(y[..., m], a * torch.cos(ang) - b * torch.sin(ang))
        torch.testing.assert_close(y[..., 2 + m], a * torch.sin(ang) + b * torch.cos(ang))
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))


@pytest.mark.parametrize("periodic", [False, True])
def test_scores_depend_on_relative_position_only(periodic):
    torch.manual_seed(0)
    rot = RotaryEmbedding1d(16, max_freq=8.0, periodic=periodic)
    n = 12
    q = torch.randn(16).expand(n, 16)
    k = torch.randn(16).expand(n, 16)
    scores = rot(q) @ rot(k).T  # (n, n), same q and k at every position
    for offset in range(-n + 1, n):
        diag = torch.diagonal(scores, offset)
        torch.testing.assert_close(diag, diag[:1].expand_as(diag), atol=1e-5, rtol=1e-5)
    # Offsets 3 and 3 - n are the same shift on a periodic axis (whole harmonics), not otherwise.
    wrapped = torch.isclose(scores[0, 3], scores[n - 3, 0], atol=1e-5)
    assert bool(wrapped) == periodic


def test_periodic_frequencies_are_integers():
    rot = RotaryEmbedding1d(8, max_freq=16.0, periodic=True)
    f = rot.angular / (2 * math.pi)
    torch.testing.assert_close(f, f.round())
    assert len(rot.state_dict()) == 0


@pytest.mark.parametrize("dim,max_freq", [(3, 8.0), (0, 8.0), (4, 0.5)])
def test_bad_args(dim, max_freq):
    with pytest.raises(ValueError):
        RotaryEmbedding1d(dim, max_freq=max_freq)

import pytest
import torch
from torch import nn

from sciflow.nn.film import AdaptiveGroupNorm, AdaptiveLayerNorm, FiLM


def _set_film(film: FiLM, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """Make the FiLM output a fixed (scale, shift) whatever the embedding."""
    with torch.no_grad():
        film.proj.weight.zero_()
        film.proj.bias.copy_(torch.cat([scale, shift]))


def test_film_closed_form_channels_first_and_last():
    film = FiLM(embed_dim=5, channels=3)
    scale, shift = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([1.0, 0.0, -3.0])
    _set_film(film, scale, shift)
    x = torch.randn(2, 3, 4, 6)
    emb = torch.randn(2, 5)
    out = film(x, emb)
    expected = x * (1 + scale.view(1, 3, 1, 1)) + shift.view(1, 3, 1, 1)
    torch.testing.assert_close(out, expected)
    out_last = film(x.movedim(1, -1), emb, channel_dim=-1)
    torch.testing.assert_close(out_last, expected.movedim(1, -1))


def test_film_depends_on_embedding_per_sample():
    torch.manual_seed(0)
    film = FiLM(4, 2)
    x = torch.randn(2, 2, 8)
    emb = torch.randn(2, 4)
    out = film(x, emb)
    out2 = film(x, torch.stack([emb[0], emb[0] + 1.0]))
    torch.testing.assert_close(out[0], out2[0])
    assert not torch.allclose(out[1], out2[1])


def test_film_bad_channels():
    with pytest.raises(ValueError, match="3 channels"):
        FiLM(4, 3)(torch.randn(2, 5, 8), torch.randn(2, 4))


def test_adaptive_group_norm():
    x = torch.randn(2, 4, 5, 5)
    plain = AdaptiveGroupNorm(2, 4, None)
    assert plain.film is None and plain.norm.affine
    torch.testing.assert_close(
        plain(x, None), nn.functional.group_norm(x, 2, plain.norm.weight, plain.norm.bias)
    )
    cond = AdaptiveGroupNorm(2, 4, embed_dim=3)
    assert not cond.norm.affine
    _set_film(cond.film, torch.full((4,), 1.0), torch.full((4,), 0.5))
    torch.testing.assert_close(cond(x, torch.randn(2, 3)), 2 * nn.functional.group_norm(x, 2) + 0.5)


def test_adaptive_layer_norm():
    x = torch.randn(2, 5, 6, 4)
    plain = AdaptiveLayerNorm(4, None)
    torch.testing.assert_close(plain(x, None), plain.norm(x))
    cond = AdaptiveLayerNorm(4, embed_dim=3)
    scale = torch.tensor([0.0, 1.0, -0.5, 2.0])
    _set_film(cond.film, scale, torch.zeros(4))
    expected = nn.functional.layer_norm(x, (4,)) * (1 + scale)
    torch.testing.assert_close(cond(x, torch.randn(2, 3)), expected)

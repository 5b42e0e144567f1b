import pytest
import torch

from sciflow.nn.embedding import ConditionEmbedding, FourierFeatures, check_cond


def test_fourier_features_closed_form():
    ff = FourierFeatures(n_freqs=4, min_freq=1.0, max_freq=8.0)
    s = torch.tensor([[0.3, -1.2]])
    out = ff(s)
    assert out.shape == (1, ff.out_features(2)) == (1, 2 * 9)
    w = torch.tensor([1.0, 2.0, 4.0, 8.0])
    for i, v in enumerate([0.3, -1.2]):
        block = out[0, i * 9 : (i + 1) * 9]
        expected = torch.cat([torch.tensor([v]), torch.sin(w * v), torch.cos(w * v)])
        torch.testing.assert_close(block, expected)


def test_fourier_features_not_in_state_dict():
    assert len(FourierFeatures().state_dict()) == 0


@pytest.mark.parametrize(
    "bad", [dict(n_freqs=0), dict(min_freq=0.0), dict(min_freq=2.0, max_freq=1.0)]
)
def test_fourier_features_bad_args(bad):
    with pytest.raises(ValueError):
        FourierFeatures(**bad)


def test_condition_embedding_shape_and_dependence():
    torch.manual_seed(0)
    emb = ConditionEmbedding(3, 16)
    c = torch.randn(5, 3)
    e = emb(c)
    assert e.shape == (5, 16)
    # Each row depends only on its own conditioning vector.
    torch.testing.assert_close(emb(c[2:3]), e[2:3])
    c2 = c.clone()
    c2[:, 1] += 0.01
    assert not torch.allclose(emb(c2), e)


def test_condition_embedding_bad_shape():
    emb = ConditionEmbedding(3, 8)
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        emb(torch.randn(4, 2))
    with pytest.raises(ValueError, match="cond_dim"):
        ConditionEmbedding(0, 8)


def test_check_cond():
    check_cond(None, 0, 4)
    check_cond(torch.zeros(4, 0), 0, 4)
    check_cond(torch.zeros(4, 2), 2, 4)
    with pytest.raises(ValueError, match="cond=None"):
        check_cond(None, 2, 4)
    with pytest.raises(ValueError, match="cond_dim=0"):
        check_cond(torch.zeros(4, 2), 0, 4)
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        check_cond(torch.zeros(3, 2), 2, 4)

"""The Operator contract, checked for every registered operator with small hyperparameters."""

import io

import pytest
import torch

from sciflow.operators import OPERATORS, build_operator

# Small settings so that the whole file runs in seconds.
SMALL = {
    "fno": {"width": 8, "modes": 6, "n_layers": 2, "embed_dim": 16},
    "unet": {"base_channels": 8, "channel_multipliers": (1, 2, 2), "embed_dim": 16},
    "factformer": {"width": 16, "depth": 2, "heads": 2, "dim_head": 8, "embed_dim": 16},
    "ifactformer": {"width": 16, "heads": 2, "dim_head": 8, "n_iterations": 2, "embed_dim": 16},
}
# Seeded non-regression: (mean, std, first entry) of the output of `_seeded_output` per operator.
# Regenerate only after an intended change of initialisation or architecture.
CHECKSUMS = {
    "fno": (-0.1421172320842743, 0.23993447422981262, -0.3661545515060425),
    "unet": (-0.15436387062072754, 0.32500097155570984, -0.0865619033575058),
    "factformer": (0.22516082227230072, 0.09882919490337372, 0.14870107173919678),
    "ifactformer": (0.12625814974308014, 0.0894516184926033, 0.24383607506752014),
}
NAMES = list(SMALL)


def _build(name, n_dims=2, cond_dim=3, in_channels=3, out_channels=2, **overrides):
    spec = {"class_path": name, "init_args": {**SMALL[name], **overrides}}
    return build_operator(
        spec, in_channels=in_channels, out_channels=out_channels, n_dims=n_dims, cond_dim=cond_dim
    )


def test_every_registered_operator_is_covered():
    assert set(OPERATORS) == set(SMALL) == set(CHECKSUMS)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "n_dims,sizes",
    [(1, [(32,), (33,), (21,), (5,)]), (2, [(16, 16), (15, 17), (20, 12), (9, 5)])],
)
def test_output_shapes(name, n_dims, sizes):
    torch.manual_seed(0)
    model = _build(name, n_dims=n_dims)
    for i, size in enumerate(sizes):
        batch = 3 if i == 0 else 1
        with torch.no_grad():
            y = model(torch.randn(batch, 3, *size), torch.randn(batch, 3))
        assert y.shape == (batch, 2, *size), (size, batch)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_conditioning_changes_output_per_sample(name):
    torch.manual_seed(0)
    model = _build(name).eval()
    x = torch.randn(2, 3, 16, 16)
    c = torch.randn(2, 3)
    y = model(x, c)
    c2 = c.clone()
    c2[1, 0] += 0.5
    y2 = model(x, c2)
    torch.testing.assert_close(y2[0], y[0])
    assert (y2[1] - y[1]).abs().max() > 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_no_conditioning(name):
    model = _build(name, cond_dim=0)
    assert not any("cond" in n or "film" in n for n, _ in model.named_parameters())
    x = torch.randn(2, 3, 16, 16)
    assert model(x).shape == (2, 2, 16, 16)
    assert model(x, None).shape == (2, 2, 16, 16)
    with pytest.raises(ValueError, match="cond_dim=0"):
        model(x, torch.randn(2, 3))


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs(name):
    model = _build(name)
    with pytest.raises(ValueError, match="cond=None"):
        model(torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        model(torch.randn(2, 3, 16, 16), torch.randn(2, 4))
    with pytest.raises(ValueError, match="3"):
        model(torch.randn(2, 4, 16, 16), torch.randn(2, 3))  # wrong channel count
    with pytest.raises(ValueError, match="spatial"):
        model(torch.randn(2, 3, 16), torch.randn(2, 3))  # 1D input to a 2D operator


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n_dims", [1, 2])
def test_gradients_reach_every_parameter(name, n_dims):
    torch.manual_seed(0)
    model = _build(name, n_dims=n_dims)
    size = (16,) * n_dims
    loss = model(torch.randn(2, 3, *size), torch.randn(2, 3)).square().mean()
    loss.backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing, f"no gradient for {missing}"


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_weights_only(name):
    torch.manual_seed(0)
    model = _build(name).eval()
    state = model.state_dict()
    assert "_metadata" not in state
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    torch.manual_seed(1)
    other = _build(name).eval()
    other.load_state_dict(loaded)
    x, c = torch.randn(2, 3, 16, 16), torch.randn(2, 3)
    assert torch.equal(other(x, c), model(x, c))


@pytest.mark.parametrize("name", NAMES)
def test_runs_under_autocast(name):
    torch.manual_seed(0)
    model = _build(name)
    x, c = torch.randn(2, 3, 16, 16), torch.randn(2, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x, c)
    assert y.shape == (2, 2, 16, 16)
    ref = model(x, c)
    assert ((y.float() - ref).norm() / ref.norm()) < 0.1


def _seeded_output(name):
    torch.manual_seed(1234)
    model = _build(name).eval()
    g = torch.Generator().manual_seed(99)
    x = torch.randn(2, 3, 16, 16, generator=g)
    c = torch.randn(2, 3, generator=g)
    with torch.no_grad():
        return model(x, c)


@pytest.mark.parametrize("name", NAMES)
def test_seeded_non_regression(name):
    y = _seeded_output(name)
    got = (y.mean().item(), y.std().item(), y.flatten()[0].item())
    expected = CHECKSUMS[name]
    assert expected is not None, f"record CHECKSUMS[{name!r}] = {got}"
    for g, e in zip(got, expected):
        assert g == pytest.approx(e, rel=1e-4, abs=1e-6), (got, expected)

"""Particle operators (GNS, the reduced-order operator): shapes, symmetries, conditioning, errors."""

import io

import pytest
import torch

from sciflow.operators import PARTICLE_OPERATORS, build_particle_operator

SMALL = {
    "gns": {"width": 16, "message_passing_steps": 2},
    "reduced_order": {"width": 16, "ratio": 0.3, "latent_grid": 8, "latent_channels": 8,
                      "grid_operator": {"class_path": "fno", "init_args": {"width": 8, "modes": 4, "n_layers": 1}}},
}
PERIODIC = dict(dim=2, history=3, cond_dim=2, bounds=[[0.0, 1.0], [0.0, 1.0]], periodic=[True, True],
                radius=0.12, dx=0.08)
WALLED = {**PERIODIC, "periodic": [False, False]}


def build(name, geometry=PERIODIC, **over):
    return build_particle_operator({"class_path": name, "init_args": {**SMALL[name], **over}}, **geometry)


def cloud(n=150, B=1, seed=0, history=3):
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(n * B, 2, generator=g)
    vel = torch.randn(n * B, history, 2, generator=g)
    types = (torch.rand(n * B, generator=g) < 0.2).long()
    batch = torch.arange(B).repeat_interleave(n)
    cond = torch.randn(B, 2, generator=g)
    return pos, vel, types, batch, cond


def test_registry_covers_both():
    assert set(PARTICLE_OPERATORS) == set(SMALL)


@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("geometry", [PERIODIC, WALLED], ids=["periodic", "walled"])
def test_shapes_and_batches(name, geometry):
    torch.manual_seed(0)
    op = build(name, geometry).eval()
    pos, vel, types, batch, cond = cloud(B=2)
    with torch.no_grad():
        y = op(pos, vel, types, batch, cond)
        alone = op(pos[150:], vel[150:], types[150:], torch.zeros(150, dtype=torch.long), cond[1:])
    assert y.shape == (300, 2) and torch.isfinite(y).all()
    # samples in a batch do not see each other
    assert torch.allclose(y[150:], alone, atol=1e-5)


def test_gns_permutation_equivariance():
    torch.manual_seed(0)
    op = build("gns").eval()
    pos, vel, types, batch, cond = cloud()
    perm = torch.randperm(150)
    with torch.no_grad():
        y = op(pos, vel, types, batch, cond)
        y_perm = op(pos[perm], vel[perm], types[perm], batch, cond)
    assert torch.allclose(y_perm, y[perm], atol=1e-5)


def test_reduced_order_equivariant_for_the_same_sparse_particles():
    torch.manual_seed(0)
    op = build("reduced_order").eval()
    pos, vel, types, batch, cond = cloud()
    sparse = torch.arange(0, 150, 3)
    perm = torch.randperm(150)
    inv = torch.argsort(perm)
    with torch.no_grad():
        y = op(pos, vel, types, batch, cond, sparse=sparse)
        y_perm = op(pos[perm], vel[perm], types[perm], batch, cond, sparse=torch.sort(inv[sparse]).values)
    assert torch.allclose(y_perm, y[perm], atol=1e-5)


def test_gns_translation_invariance_in_a_periodic_box():
    torch.manual_seed(0)
    op = build("gns").eval()
    pos, vel, types, batch, cond = cloud()
    with torch.no_grad():
        y = op(pos, vel, types, batch, cond)
        for shift in ([0.37, -0.81], [0.5, 0.5], [1e-3, 0.0]):
            moved = torch.remainder(pos + torch.tensor(shift), 1.0)  # crosses the periodic faces
            assert torch.allclose(op(moved, vel, types, batch, cond), y, atol=1e-5), shift


def test_gns_wall_features_see_the_walls():
    torch.manual_seed(0)
    op = build("gns", WALLED).eval()
    pos, vel, types, batch, cond = cloud()
    w = op.wall_features(pos)
    assert w.shape == (150, 4) and w.min() >= -1 and w.max() <= 1
    near = pos[:, 0] < 0.12
    assert torch.allclose(w[near, 0], pos[near, 0] / 0.12)
    with torch.no_grad():  # walls break translation invariance, as they should
        y = op(pos, vel, types, batch, cond)
        y2 = op(torch.remainder(pos + 0.3, 1.0), vel, types, batch, cond)
    assert not torch.allclose(y, y2, atol=1e-4)


@pytest.mark.parametrize("name", list(SMALL))
def test_conditioning_and_types_change_the_output(name):
    torch.manual_seed(0)
    op = build(name).eval()
    pos, vel, types, batch, cond = cloud()
    with torch.no_grad():
        y = op(pos, vel, types, batch, cond)
        assert not torch.allclose(y, op(pos, vel, types, batch, cond + 1.0), atol=1e-5)
        assert not torch.allclose(y, op(pos, vel, 1 - types, batch, cond), atol=1e-5)


def test_reduced_order_is_deterministic_in_eval_and_random_in_training():
    torch.manual_seed(0)
    op = build("reduced_order", sampling="random")
    pos, vel, types, batch, cond = cloud()
    op.eval()
    assert torch.equal(op.sample(pos, batch), op.sample(pos, batch))
    op.train()
    assert not torch.equal(op.sample(pos, batch), op.sample(pos, batch))
    assert op.sample(pos, batch).numel() == 45  # ceil(0.3 * 150)


@pytest.mark.parametrize("name", list(SMALL))
def test_state_dict_round_trip_with_weights_only(name):
    torch.manual_seed(0)
    op = build(name).eval()
    pos, vel, types, batch, cond = cloud()
    buf = io.BytesIO()
    torch.save(op.state_dict(), buf)
    buf.seek(0)
    other = build(name).eval()
    other.load_state_dict(torch.load(buf, weights_only=True))
    with torch.no_grad():
        assert torch.equal(op(pos, vel, types, batch, cond), other(pos, vel, types, batch, cond))


def test_bad_input_is_named():
    op = build("gns")
    pos, vel, types, batch, cond = cloud()
    with pytest.raises(ValueError, match=r"position must be \(N, D=2\)"):
        op(torch.rand(150, 3), vel, types, batch, cond)
    with pytest.raises(ValueError, match=r"velocity must be \(N=150, h=3, D=2\)"):
        op(pos, vel[:, :2], types, batch, cond)
    with pytest.raises(ValueError, match=r"particle types must be in \[0, 9\)"):
        op(pos, vel, types + 20, batch, cond)
    with pytest.raises(ValueError, match=r"cond must be \(B=1, P=2\)"):
        op(pos, vel, types, batch, None)
    with pytest.raises(ValueError, match="does not take init_args"):
        build("gns", widht=3)
    with pytest.raises(ValueError, match="init_args of 'gns' must not set"):
        build("gns", radius=0.3)
    with pytest.raises(ValueError, match="dim 3"):
        build_particle_operator("reduced_order", **{**PERIODIC, "dim": 3, "bounds": [[0, 1]] * 3,
                                                     "periodic": [True] * 3})

"""Batched ensembles: members of one architecture as one vmapped call give the members of the
per-model loop; everything else (mixed architectures, noisy steppers, custom models) loops."""

from __future__ import annotations

import pytest
import torch

from sciflow.data.datamodule import SciflowData
from sciflow.ensemble_batch import BatchedMembers, batch_members, can_batch
from sciflow.operators import build_operator
from sciflow.rollout import rollout
from sciflow.surrogate import Surrogate
from tests.operators.test_contract import SMALL
from tests.synthetic import make_dataset
from tests.test_rollout import NOISY, ScaledCopy

FNO = {"class_path": "fno", "init_args": SMALL["fno"]}


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    card = make_dataset(tmp_path_factory.mktemp("batch") / "synthetic", n=(2, 1, 1))
    return SciflowData(str(card)).spec


def _models(spec, operator, k=3, **kwargs):
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        out.append(Surrogate(operator, data_spec=spec, **kwargs).eval())
    return out


def _inputs(spec, B=3):
    g = torch.Generator().manual_seed(1)
    C, S = len(spec["channels"]), spec["spatial_shape"]
    x = torch.randn(B, 1, C, *S, generator=g)
    p = torch.rand(B, len(spec["params"]), generator=g) + 0.5
    mask = torch.ones(B, *S, dtype=torch.bool)
    mask[:, :3, :5] = False
    return x, p, mask


@pytest.mark.parametrize("name", ["fno", "unet", "factformer"])
def test_a_batched_rollout_gives_the_members_of_the_loop(spec, name):
    models = _models(spec, {"class_path": name, "init_args": SMALL[name]}, ema_decay=0.99 if name == "fno" else None)
    assert can_batch(models)
    x, p, mask = _inputs(spec)
    kw = dict(samples=2, mask=mask, max_batch=2)  # a deterministic model is one member: 3 rows, chunks of 2
    batched = list(rollout(models, x, p, 3, batch_models=True, **kw))
    looped = list(rollout(models, x, p, 3, batch_models=False, **kw))
    for b, lo in zip(batched, looped):
        assert b.members.shape == (3, 3, len(spec["channels"]), *spec["spatial_shape"])
        torch.testing.assert_close(b.members, lo.members, rtol=1e-5, atol=1e-5)
        assert torch.equal(b.alive, lo.alive)
    # the members really differ per model (the stacked weights are not one model's)
    assert not torch.allclose(batched[0].members[0], batched[0].members[2])


def test_the_out_of_place_spectral_convolution_is_neuraloperators(spec):
    for n_dims, shape in ((1, (2, 5, 32)), (2, (2, 5, 16, 12))):
        torch.manual_seed(0)
        op = build_operator(FNO, in_channels=5, out_channels=2, n_dims=n_dims, cond_dim=3).eval()
        x, c = torch.randn(shape), torch.randn(2, 3)
        ref = op(x, c)
        for m in op.modules():
            if hasattr(m, "out_of_place"):
                m.out_of_place = True
        torch.testing.assert_close(op(x, c), ref, rtol=1e-5, atol=1e-6)


def test_what_cannot_be_batched_loops(spec):
    fno = _models(spec, FNO, k=2)
    wider = _models(spec, {"class_path": "fno", "init_args": {**SMALL["fno"], "width": 12}}, k=1)
    noisy = _models(spec, FNO, k=2, stepper=NOISY)  # overrides step() of a noise-free stepper
    custom = [ScaledCopy(FNO, data_spec=spec) for _ in range(2)]  # its own predict_next
    assert can_batch(fno)
    for models in (fno[:1], fno[:1] + wider, noisy, custom):
        assert not can_batch(models) and batch_members(models) is None
    with pytest.raises(ValueError, match=r"the 2 models cannot be batched"):
        BatchedMembers(noisy)
    batched = BatchedMembers(fno)
    x, p, mask = _inputs(spec)
    with pytest.raises(ValueError, match=r"history must have 2 models first, got \(3, "):
        batched(x.unsqueeze(0).expand(3, *x.shape), p, mask)
    # a mixed ensemble still rolls out, through the loop
    out = list(rollout(fno[:1] + wider, x, p, 2, mask=mask, batch_models=True))
    assert out[-1].members.shape[0] == 2 and bool(torch.isfinite(out[-1].members).all())

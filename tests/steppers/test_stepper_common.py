"""What every stepper shares: registry names, input layout, masks, seeding, a checkpoint round trip
through the Surrogate, and starting a generative stepper from a deterministic checkpoint."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from sciflow.steppers import STEPPERS, build_stepper
from sciflow.steppers.deterministic import Deterministic
from sciflow.steppers.flow_matching import FlowMatching
from sciflow.steppers.generative import Generative, load_matching_operator_weights
from sciflow.steppers.refiner import Refiner
from sciflow.surrogate import Surrogate
from tests.steppers.helpers import NX, SPECS, TINY_FNO, CallCounter, make_stepper, toy_batch

GENERATIVE = ["flow_matching", "refiner"]
STOCHASTIC = [*GENERATIVE, "crps", "crps_channels"]


def _mask(batch: int) -> torch.Tensor:
    m = torch.ones(batch, NX, dtype=torch.bool)
    m[:, 5:11] = False
    m[1, 20:23] = False
    return m


@pytest.mark.parametrize("name, cls", [("deterministic", Deterministic), ("flow_matching", FlowMatching),
                                       ("refiner", Refiner)])
def test_registry_names_and_input_layout(name, cls):
    assert name in STEPPERS
    s = make_stepper({"class_path": name}, n_channels=2, history=3, has_mask=True)
    assert type(s) is cls
    extra = 1 if name in GENERATIVE else 0
    assert s.operator.in_channels == 3 * 2 + 1 + extra * 2
    assert s.operator.cond_dim == 1 + extra
    with pytest.raises(ValueError, match="n_stepz"):
        make_stepper({"class_path": name, "init_args": {"n_stepz": 3}})


def test_deterministic_is_the_default():
    s = build_stepper(None, operator=TINY_FNO, n_channels=1, n_dims=1)
    assert type(s) is Deterministic and s.calls_per_step == 1 and not s.stochastic


@pytest.mark.parametrize("name", list(SPECS))
def test_stochastic_flag(name):
    """Ensembles count a model once per sample only if its stepper draws random numbers."""
    assert make_stepper(SPECS[name]).stochastic is (name in STOCHASTIC)


@pytest.mark.parametrize("name", list(SPECS))
def test_masked_cells_stay_zero(name):
    """Solid cells are zero in the result and in every state the operator is shown."""
    s = make_stepper(SPECS[name], has_mask=True, residual_scale=[0.3])
    s.operator = CallCounter(s.operator)
    mask = _mask(3)
    prev = torch.randn(3, 1, 1, NX) * mask[:, None, None]
    out = s.step(prev, torch.zeros(3, 1), mask, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 1, NX)
    solid = ~mask.unsqueeze(1)
    assert torch.all(out[solid] == 0) and torch.any(out[~solid] != 0)
    assert s.operator.calls == s.calls_per_step
    for x in s.operator.inputs:
        assert torch.equal(x[:, 1], mask.float())  # the mask channel
        assert torch.all(x[:, 2:].masked_select(solid) == 0)  # the noised state, if any
    loss = s.loss(prev, toy_batch(3, torch.Generator().manual_seed(0))[1] * mask[:, None], torch.zeros(3, 1), mask)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("name", STOCHASTIC)
def test_a_seed_reproduces_a_sample(name):
    s = make_stepper(SPECS[name])
    prev, cond = torch.randn(2, 1, 1, NX), torch.zeros(2, 1)
    rng = torch.get_rng_state()
    a = s.step(prev, cond, generator=torch.Generator().manual_seed(3))
    b = s.step(prev, cond, generator=torch.Generator().manual_seed(3))
    c = s.step(prev, cond, generator=torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), rng), "sampling with a generator must not touch the global RNG"
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-4
    # samples of one batch differ too: noise is drawn per sample
    twin = s.step(prev[:1].expand(2, -1, -1, -1), cond, generator=torch.Generator().manual_seed(3))
    assert (twin[0] - twin[1]).abs().max() > 1e-4


def _data_spec() -> dict:
    return {
        "card": "toy", "card_hash": "0", "channels": ["u"], "params": ["speed"], "spatial_dims": ["x"],
        "spatial_shape": [NX], "has_mask": True, "periodic": True, "history": 1, "time_step": 1, "dt": 0.05,
        "stats": {"mean": [0.1], "std": [0.8], "mean_delta": [0.0], "std_delta": [0.25],
                  "params_mean": [1.0], "params_std": [0.3]},
    }


def _loader(n: int = 8) -> DataLoader:
    prev, target, cond = toy_batch(n, torch.Generator().manual_seed(0))
    mask = _mask(n)
    items = [{"input": prev[i] * mask[i], "target": target[i:i + 1] * mask[i], "params": cond[i] + 1.0,
              "mask": mask[i]} for i in range(n)]
    return DataLoader(items, batch_size=4)


@pytest.mark.filterwarnings("ignore:You defined a `validation_step`")
@pytest.mark.parametrize("name", list(SPECS))
def test_checkpoint_round_trip_reproduces_a_seeded_sample(name, tmp_path):
    spec = SPECS[name] if isinstance(SPECS[name], dict) else {"class_path": SPECS[name]}
    model = Surrogate(operator=TINY_FNO, stepper=spec, lr=1e-3, ema_decay=0.9, data_spec=_data_spec())
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=tmp_path)
    trainer.fit(model, train_dataloaders=_loader())
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = Surrogate.load(path)
    model.eval()
    batch = next(iter(_loader()))
    args = (batch["input"], batch["params"], batch["mask"])
    a = model.predict_next(*args, generator=torch.Generator().manual_seed(11))
    b = loaded.predict_next(*args, generator=torch.Generator().manual_seed(11))
    assert torch.equal(a, b)
    assert torch.all(a[~batch["mask"].unsqueeze(1)] == 0)
    # the plain state dict with weights_only=True gives the same
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    again = Surrogate(operator=TINY_FNO, stepper=spec, ema_decay=0.9, data_spec=_data_spec()).eval()
    again.load_state_dict(torch.load(tmp_path / "sd.pt", weights_only=True))
    assert torch.equal(again.predict_next(*args, generator=torch.Generator().manual_seed(11)), a)


def test_init_from_a_deterministic_checkpoint(tmp_path):
    det = Surrogate(operator=TINY_FNO, data_spec=_data_spec(), ema_decay=0.9)
    with torch.no_grad():
        for p in det.ema.parameters():
            p.add_(1.0)  # tell the EMA weights (preferred) from the trained ones
    path = tmp_path / "det.pt"
    torch.save({"state_dict": det.state_dict()}, path)
    s = make_stepper({"class_path": "refiner", "init_args": {"init_from": str(path)}}, has_mask=True)
    assert isinstance(s, Generative)
    own, theirs = s.operator.state_dict(), det.ema.operator.state_dict()
    assert s.init_report["loaded"] and s.init_report["skipped"]
    for k in s.init_report["loaded"]:
        assert torch.equal(own[k], theirs[k])
    for k in s.init_report["skipped"]:  # the first layer sees one more channel, the embedding one more entry
        assert own[k].shape != theirs[k].shape
    assert any("lifting" in k for k in s.init_report["skipped"])
    with pytest.raises(FileNotFoundError, match="init_from"):
        make_stepper({"class_path": "flow_matching", "init_args": {"init_from": str(tmp_path / "nope.ckpt")}})
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no operator tensor matches"):
        load_matching_operator_weights(s.operator, tmp_path / "other.pt")

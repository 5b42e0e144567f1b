"""The particle Surrogate and rollout engine: training lowers the loss, checkpoints round-trip with
weights_only, ensembles roll out batched, blow-ups are named, walls hold, bad input is named."""

import warnings

import lightning as L
import pytest
import torch

from sciflow.data.particles.datamodule import ParticleData
from sciflow.data.particles.trajectories import collate_particles
from sciflow.particle_rollout import rollout_particles
from sciflow.particle_surrogate import ParticleSurrogate
from sciflow.rollout import BlowupWarning
from sciflow.surrogate import Surrogate
from sciflow.surrogate_base import load_surrogate
from tests.synthetic_particles import make_particle_dataset

GNS = {"class_path": "gns", "init_args": {"width": 16, "message_passing_steps": 2}}


@pytest.fixture(scope="module")
def particle_root(tmp_path_factory):
    return make_particle_dataset(tmp_path_factory.mktemp("particles") / "disc", walls=True)


def data(root, **kw):
    return ParticleData(root=str(root), history=3, rollout_steps=5, batch_size=2, **kw)


def trainer(tmp_path, steps):
    return L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=str(tmp_path), limit_val_batches=0)


def test_training_lowers_the_loss_and_checkpoint_round_trips(particle_root, tmp_path):
    torch.manual_seed(0)
    dm = data(particle_root)
    dm.setup("fit")
    fixed = collate_particles([dm.train_set[i] for i in range(4)])
    model = ParticleSurrogate(GNS, lr=3e-3, ema_decay=0.9, data_spec=dm.spec)

    def loss():
        with torch.no_grad():
            return model.stepper.loss(fixed["position"], fixed["target"][0], fixed["particle_type"],
                                      fixed["batch"], fixed["params"], noise=False).item()

    before = loss()
    t = trainer(tmp_path, 60)
    t.fit(model, dm)
    assert loss() < 0.5 * before

    ckpt = tmp_path / "p.ckpt"
    t.save_checkpoint(ckpt)
    raw = torch.load(ckpt, weights_only=True)
    assert raw["sciflow"]["kind"] == "particles" and raw["sciflow"]["card_hash"] == dm.spec["card_hash"]
    back = load_surrogate(ckpt)
    assert isinstance(back, ParticleSurrogate) and back.ema is not None
    args = (fixed["position"], fixed["particle_type"], fixed["batch"], fixed["params"])
    model.eval()
    assert torch.equal(back.predict_next(*args), model.predict_next(*args))
    assert torch.equal(ParticleSurrogate.load(ckpt).predict_next(*args), model.predict_next(*args))
    with pytest.raises(ValueError, match="a particles checkpoint .ParticleSurrogate.; load it with"):
        Surrogate.load(ckpt)


def test_grid_checkpoint_is_not_a_particle_one(synthetic_card, tmp_path):
    from sciflow.data.datamodule import SciflowData

    dm = SciflowData(str(synthetic_card), batch_size=2)
    model = Surrogate({"class_path": "fno", "init_args": {"width": 8, "modes": 4, "n_layers": 1}}, data_spec=dm.spec)
    t = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, default_root_dir=str(tmp_path), limit_val_batches=0)
    t.fit(model, dm)
    t.save_checkpoint(tmp_path / "g.ckpt")
    assert isinstance(load_surrogate(tmp_path / "g.ckpt"), Surrogate)
    with pytest.raises(ValueError, match="a grid checkpoint"):
        ParticleSurrogate.load(tmp_path / "g.ckpt")
    with pytest.raises(ValueError, match="of kind 'grid', expected 'particles'"):
        ParticleSurrogate(GNS, data_spec=dm.spec)


def test_missing_statistics_are_named(particle_root):
    spec = dict(data(particle_root).spec)
    spec["stats"] = {k: v for k, v in spec["stats"].items() if k != "vel_std"}
    with pytest.raises(ValueError, match=r"statistics \['vel_std'\] missing"):
        ParticleSurrogate(GNS, data_spec=spec)
    with pytest.raises(ValueError, match=r"data_spec lacks \['stats'\]"):
        ParticleSurrogate(GNS, data_spec={k: v for k, v in spec.items() if k != "stats"})


def _initial(root, split="test"):
    dm = data(root)
    tr = dm.trajectories(split)
    items = [{"position": torch.from_numpy(tr.read(i, 0, 4)), "particle_type": torch.from_numpy(tr.particle_type(i)),
              "params": torch.from_numpy(tr.params(i)).float()} for i in range(len(tr))]
    return dm.spec, collate_particles(items)


def test_ensemble_rollout_is_batched_deterministic_and_keeps_walls(particle_root):
    spec, b = _initial(particle_root)
    torch.manual_seed(0)
    models = [ParticleSurrogate(GNS, data_spec=spec).eval() for _ in range(2)]
    run = lambda: list(rollout_particles(models, b["position"], b["particle_type"], b["params"], 6,  # noqa: E731
                                         batch=b["batch"], samples=2))
    steps = run()
    assert [s.index for s in steps] == list(range(1, 7))
    assert steps[0].members.shape == (4, b["position"].shape[1], 2) and steps[0].alive.shape == (4, 2)
    assert steps[-1].time == pytest.approx(6 * spec["dt"])
    again = run()
    assert all(torch.equal(a.members, c.members) for a, c in zip(steps, again))
    # samples of one deterministic model agree; the two models differ
    assert torch.equal(steps[-1].members[0], steps[-1].members[1])
    assert not torch.equal(steps[-1].members[0], steps[-1].members[2])
    walls = b["particle_type"] == 1
    for s in steps:
        assert torch.equal(s.members[:, walls], b["position"][-1, walls].expand(4, -1, -1))
        fluid = s.members[:, ~walls]
        assert (fluid >= 0).all() and (fluid <= 1).all()  # fluid_bounds [0, 1]^2


def test_blowup_names_member_and_step(particle_root):
    spec, b = _initial(particle_root)
    torch.manual_seed(0)
    good, fast, broken = (ParticleSurrogate(GNS, data_spec=spec).eval() for _ in range(3))
    fast.stepper.acc_mean.copy_(torch.tensor([0.05, 0.0]))  # sideways, faster every step
    broken.stepper.acc_std.fill_(float("nan"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        steps = list(rollout_particles([good, fast, broken], b["position"], b["particle_type"], b["params"], 6,
                                       batch=b["batch"], blowup=3.0))
    msgs = " | ".join(str(w.message) for w in caught if issubclass(w.category, BlowupWarning))
    assert "blew up at step 1 (t = 0.05 s)" in msgs
    assert "member 2 (model 2, sample 0) of trajectory 0" in msgs  # NaN
    assert "member 1 (model 1, sample 0) of trajectory 1" in msgs  # too fast
    last = steps[-1]
    assert last.alive[0].all() and not last.alive[1:].any()
    assert torch.isnan(last.members[1:]).all() and torch.isfinite(last.members[0]).all()


def test_walls_hold_a_model_that_pushes_through_them(particle_root):
    spec, b = _initial(particle_root)
    torch.manual_seed(0)
    sinking = ParticleSurrogate(GNS, data_spec=spec).eval()
    sinking.stepper.acc_mean.copy_(torch.tensor([0.0, -0.01]))
    fluid = b["particle_type"] == 0
    for s in rollout_particles([sinking], b["position"], b["particle_type"], b["params"], 20, batch=b["batch"],
                               blowup=1e6):
        y = s.members[0, fluid, 1]
        assert (y >= 0).all() and torch.isfinite(y).all()
    assert (y == 0).float().mean() > 0.3  # most of the fluid now lies on the floor, none below it


def test_rollout_bad_input(particle_root):
    spec, b = _initial(particle_root)
    model = ParticleSurrogate(GNS, data_spec=spec).eval()
    outside = b["position"].clone()
    outside[1, 3, 0] = 5.0
    with pytest.raises(ValueError, match="initial: particle 3 at frame 1 is outside the bounds"):
        next(rollout_particles([model], outside, b["particle_type"], b["params"], 2, batch=b["batch"]))
    with pytest.raises(ValueError, match=r"initial must be \(h \+ 1 = 4, N, D = 2\)"):
        next(rollout_particles([model], b["position"][..., :1], b["particle_type"], b["params"], 2, batch=b["batch"]))
    with pytest.raises(ValueError, match=r"params must be \(B=2, P\)"):
        next(rollout_particles([model], b["position"], b["particle_type"], b["params"][:1], 2, batch=b["batch"]))


def test_data_without_parameters_trains(tmp_path):
    """A LagrangeBench folder carries no parameter vector: the operator is then unconditioned."""
    from sciflow.data.particles import ParticleCase, write_particle_dataset
    from tests.synthetic_particles import FRAME_DT, drifting_lattice

    cases = {s: [ParticleCase(drifting_lattice(0.3 + 0.1 * k, 0.01, 12), torch.zeros(36, dtype=torch.int32).numpy(), {})
                 for k in range(n)] for s, n in (("train", 2), ("valid", 1), ("test", 1))}
    root = tmp_path / "lb"
    write_particle_dataset(root, cases, {"dim": 2, "dx": 1 / 6, "dt": FRAME_DT, "bounds": [[0.0, 1.0]] * 2,
                                         "periodic_boundary_conditions": [True, True],
                                         "default_connectivity_radius": 0.25})
    dm = data(root)
    assert dm.spec["params"] == []
    model = ParticleSurrogate(GNS, lr=1e-3, data_spec=dm.spec)
    trainer(tmp_path, 3).fit(model, dm)
    b = collate_particles([dm.trajectories("test")[0]])
    steps = list(rollout_particles([model.eval()], b["position"][:4], b["particle_type"], None, 3))
    assert torch.isfinite(steps[-1].members).all()

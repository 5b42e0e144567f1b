"""Particle windows, batching, the GNS statistics (closed forms, periodic images, walls left out,
chunking, caching) and the particle DataModule."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import sciflow.data.particles.stats as stats_mod
from sciflow.data.particles import (
    FLUID,
    SOLID_WALL,
    ParticleCase,
    ParticleData,
    ParticleTrajectories,
    ParticleWindows,
    collate_particles,
    compute_particle_stats,
    load_or_compute_particle_stats,
    write_particle_dataset,
)
from tests.synthetic_particles import make_particle_dataset


def test_windows_hold_h_plus_one_positions_then_the_targets(tmp_path):
    tr = ParticleTrajectories(make_particle_dataset(tmp_path / "ds"), "valid")
    w = ParticleWindows(tr, history=3, horizon=2, step=2, stride=5)
    assert w.span == 11 and len(w) == 2 * 2  # 20 frames: starts 0, 5
    item = w[1]
    frames = tr.read(item["traj"])
    np.testing.assert_array_equal(item["position"].numpy(), frames[item["t0"]: item["t0"] + 7: 2])
    np.testing.assert_array_equal(item["target"].numpy(), frames[item["t0"] + 8: item["t0"] + 11: 2])
    assert item["position"].shape == (4, tr.n_particles(item["traj"]), 2) and item["target"].shape[0] == 2
    np.testing.assert_array_equal(item["particle_type"].numpy(), tr.particle_type(item["traj"]))
    np.testing.assert_allclose(item["params"].numpy(), tr.params(item["traj"]).astype(np.float32))
    with pytest.raises(ValueError, match=r"no window of 21 frames \(history 5 \+ 1 positions and horizon 15, step 1\)"):
        ParticleWindows(tr, history=5, horizon=15)
    with pytest.raises(ValueError, match="history must be >= 1"):
        ParticleWindows(tr, history=0)


def test_collate_concatenates_particles_graph_style(tmp_path):
    tr = ParticleTrajectories(make_particle_dataset(tmp_path / "ds"), "train")
    w = ParticleWindows(tr, history=2, horizon=1)
    items = [w[0], w[len(w) - 1]]
    n = [it["particle_type"].shape[0] for it in items]
    assert n[0] != n[1]
    b = collate_particles(items)
    assert b["position"].shape == (3, sum(n), 2) and b["target"].shape == (1, sum(n), 2)
    assert b["batch"].tolist() == [0] * n[0] + [1] * n[1] and b["n_particles"].tolist() == n
    assert b["params"].shape == (2, 2) and b["t0"].tolist() == [items[0]["t0"], items[1]["t0"]]
    torch.testing.assert_close(b["position"][:, n[0]:], items[1]["position"])


def _periodic_dataset(root, T=30, seed=0):
    """Particles in a periodic 2 x 1 box on known smooth paths (crossing the faces), and walls."""
    rng = np.random.default_rng(seed)
    cases, paths = [], []
    for k in range(3):
        N = 40 + k
        x0 = rng.uniform(0, 1, (N, 2)) * [2, 1]
        v = rng.normal(0, 0.02, (N, 2))  # displacements stay below half the box
        a = rng.normal(0, 0.0005, (N, 2))
        t = np.arange(T)[:, None, None]
        path = x0 + v * t + 0.5 * a * t**2 + 0.01 * np.sin(0.3 * t + x0)  # frame units
        types = np.r_[np.full(N - 5, FLUID), np.full(5, SOLID_WALL)]
        path[:, types == SOLID_WALL] = path[:1, types == SOLID_WALL]  # walls stay put
        stored = np.mod(path, [2.0, 1.0])
        assert (np.abs(np.diff(stored, axis=0)) > 0.5).any()  # some particles cross a periodic face
        cases.append(ParticleCase(stored, types, {"k": float(k)}))
        paths.append((path.astype(np.float64), types))
    meta = {"dim": 2, "dx": 0.05, "dt": 0.01, "bounds": [[0, 2], [0, 1]], "periodic_boundary_conditions": [True, True],
            "default_connectivity_radius": 0.1, "parameter_names": ["k"]}
    write_particle_dataset(root, {"train": cases}, meta)
    return paths


def _direct(paths, step):
    """Velocity / acceleration moments from the unwrapped paths (float32 storage noise aside)."""
    vs, acs = [], []
    for path, types in paths:
        x = path[:, types == FLUID]
        v = x[step:] - x[:-step]
        vs.append(v.reshape(-1, 2))
        acs.append((v[step:] - v[:-step]).reshape(-1, 2))
    return np.concatenate(vs), np.concatenate(acs)


@pytest.mark.parametrize("step", [1, 3])
def test_stats_are_gns_frame_unit_moments_across_periodic_faces(tmp_path, step):
    paths = _periodic_dataset(tmp_path / "ds")
    tr = ParticleTrajectories(tmp_path / "ds", "train")
    st = compute_particle_stats(tr, step, chunk=7, progress=False)
    v, a = _direct(paths, step)
    assert st.n_samples == len(v)
    np.testing.assert_allclose(st.vel_mean, v.mean(0), atol=2e-7)
    np.testing.assert_allclose(st.vel_std, v.std(0), rtol=1e-5)
    np.testing.assert_allclose(st.acc_mean, a.mean(0), atol=2e-7)
    np.testing.assert_allclose(st.acc_std, a.std(0), rtol=1e-3)  # float32 positions ~ 1e-7 of 1e-3
    whole = compute_particle_stats(tr, step, chunk=1000, progress=False)
    np.testing.assert_allclose(st.vel_std, whole.vel_std, rtol=1e-12)  # chunking does not matter
    np.testing.assert_allclose(st.acc_mean, whole.acc_mean, atol=1e-15)
    assert st.params == ["k"] and st.params_mean == [1.0]
    assert st.kinematic_types == [1, 2]


def test_stats_cache_is_reused_until_the_data_changes(tmp_path, monkeypatch):
    _periodic_dataset(tmp_path / "ds")
    tr = ParticleTrajectories(tmp_path / "ds", "train")
    path = tmp_path / "ds" / "stats.yaml"  # written by write_particle_dataset
    first = load_or_compute_particle_stats(path, tr, 1, progress=False)

    def boom(*a, **k):
        raise AssertionError("recomputed although the cache matches")

    monkeypatch.setattr(stats_mod, "compute_particle_stats", boom)
    assert load_or_compute_particle_stats(path, tr, 1, progress=False) == first
    monkeypatch.undo()
    other = load_or_compute_particle_stats(path, tr, 2, progress=False)  # another step: recomputed
    assert other.step == 2 and other.vel_std != first.vel_std
    _periodic_dataset(tmp_path / "ds", T=25)  # same count, other shapes: the fingerprint changes
    tr = ParticleTrajectories(tmp_path / "ds", "train")
    assert load_or_compute_particle_stats(path, tr, 2, progress=False).fingerprint != other.fingerprint


def test_trajectories_pickle_for_loader_workers(tmp_path):
    tr = ParticleTrajectories(make_particle_dataset(tmp_path / "ds"), "train")
    tr.read(0)  # opens the handle in this process
    clone = pickle.loads(pickle.dumps(tr))
    np.testing.assert_array_equal(clone.read(2), tr.read(2))


def test_particle_datamodule_spec_and_loaders(tmp_path):
    root = make_particle_dataset(tmp_path / "ds", walls=True)
    dm = ParticleData(root=str(root), history=3, rollout_steps=4, batch_size=3, time_step=2)
    spec = dm.spec
    assert spec["kind"] == "particles" and spec["dim"] == 2 and spec["params"] == ["omega", "drift"]
    assert spec["periodic"] == [False, False] and spec["radius"] == 0.2 and spec["time_step"] == 2
    assert spec["dt"] == pytest.approx(0.1) and spec["kinematic_types"] == [1, 2]
    assert spec["particle_types"] == [0, 1, 2, 3] and spec["external_force"] == {"law": "none"}
    assert set(spec["stats"]) >= {"vel_mean", "vel_std", "acc_mean", "acc_std"} and spec["stats"]["step"] == 2
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["position"].shape[0] == 4 and batch["target"].shape[0] == 1 and len(batch["n_particles"]) == 3
    one_step, rollout = dm.val_dataloader()
    rb = next(iter(rollout))
    assert rb["target"].shape[0] == 4 and rb["t0"].tolist() == [0, 0]
    # the rotating disc: |v| = omega r frame_dt * step for fluid particles, 0 for walls
    fluid = batch["particle_type"] == 0
    v = (batch["position"][-1] - batch["position"][-2])[fluid]
    omega = batch["params"][batch["batch"][fluid], 0]
    r = (batch["position"][-1][fluid] - 0.5).norm(dim=-1)
    torch.testing.assert_close(v.norm(dim=-1), 2 * torch.sin(omega * 0.1 / 2) * r, atol=1e-6, rtol=1e-4)
    with pytest.raises(ValueError, match="give a dataset card or a dataset folder"):
        ParticleData()


def test_a_particle_card_loads_without_fields_and_a_bad_kind_is_named():
    from sciflow.data.card import CardError, card_from_dict

    card = card_from_dict({"name": "p", "kind": "particles", "params": ["Re"], "solver": {"dx": 0.02}})
    assert card.kind == "particles" and card.fields == ["position"] and card.solver == {"dx": 0.02}
    assert card_from_dict({"name": "g", "fields": ["u"]}).kind == "grid"
    with pytest.raises(CardError, match=r"kind 'mesh' is not one of \['grid', 'particles'\]"):
        card_from_dict({"name": "m", "kind": "mesh", "fields": ["u"]})
    with pytest.raises(CardError, match="ParticleData reads 'kind: particles' cards"):
        ParticleData(card="cavity")

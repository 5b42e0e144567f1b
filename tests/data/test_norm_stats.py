"""Normalisation statistics: masked moments, the streaming merge, and the stats.yaml cache."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import sciflow.data.stats as stats_mod
from sciflow.data.format import write_well
from sciflow.data.stats import Stats, _Moments, compute_stats, load_or_compute_stats
from sciflow.data.trajectories import Trajectories, split_files

T, NX, NY = 6, 5, 4


def _dataset(root, n_files: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    fields = []
    for k in range(n_files):
        mask = np.ones((NX, NY), bool)
        mask[k % NX, :2] = False  # a different solid region per file
        p = rng.normal(3.0, 2.0, size=(2, T, NX, NY))
        vel = rng.normal(-1.0, 0.5, size=(2, T, NX, NY, 2))
        p[:, :, ~mask] = 1e6  # solid cells hold junk that must not count
        write_well(root / "data" / "train" / f"f{k}.hdf5", dataset_name="s", time=np.arange(T) * 0.1,
                   coords={"x": np.arange(NX), "y": np.arange(NY)}, t0_fields={"pressure": p},
                   t1_fields={"velocity": vel}, params={"U": np.array([1.0 + k, 2.0 + k]), "rho": 7.0},
                   mask=mask)
        fields.append((p.astype(np.float32), vel.astype(np.float32), mask, np.array([1.0 + k, 2.0 + k])))
    return fields


def test_masked_moments_equal_numpy(tmp_path):
    fields = _dataset(tmp_path, 3)
    tr = Trajectories(split_files(tmp_path, "train"))
    st = compute_stats(tr, delta_step=2, progress=False)
    assert st.channels == ["pressure", "velocity_x", "velocity_y"]
    assert st.n_trajectories == 6 and st.delta_step == 2
    chans = [[], [], []]
    deltas = [[], [], []]
    for p, vel, mask, _ in fields:
        for b in range(2):
            for c, a in enumerate((p[b], vel[b, ..., 0], vel[b, ..., 1])):
                a = a.astype(np.float64)
                chans[c].append(a[:, mask].ravel())
                deltas[c].append((a[2:] - a[:-2])[:, mask].ravel())
    for c in range(3):
        x = np.concatenate(chans[c])
        d = np.concatenate(deltas[c])
        assert st.mean[c] == pytest.approx(x.mean(), rel=1e-12)
        assert st.std[c] == pytest.approx(x.std(), rel=1e-12)
        assert st.mean_delta[c] == pytest.approx(d.mean(), abs=1e-12)
        assert st.std_delta[c] == pytest.approx(d.std(), rel=1e-12)
    assert st.mean[0] == pytest.approx(3.0, abs=0.3)  # the 1e6 in solid cells did not count
    U = np.concatenate([f[3] for f in fields])
    assert st.params == ["U", "rho"]
    np.testing.assert_allclose(st.params_mean, [U.mean(), 7.0])
    np.testing.assert_allclose(st.params_std, [U.std(), 1.0])  # a constant parameter keeps std 1
    t = st.tensors()
    assert t["mean"].shape == (3,) and t["params_std"].shape == (2,)
    assert Stats.from_dict(st.to_dict()) == st


def test_streaming_merge_equals_one_shot():
    rng = np.random.default_rng(5)
    x = rng.normal(10.0, 3.0, size=(2, 1000)) * np.array([[1.0], [1e-3]])
    m = _Moments(2)
    cuts = np.sort(rng.choice(np.arange(1, 1000), size=12, replace=False))
    for part in np.split(x, cuts, axis=1):
        m.add(part)
    m.add(x[:, :0])  # an empty chunk changes nothing
    np.testing.assert_allclose(m.mean, x.mean(axis=1), rtol=1e-13)
    np.testing.assert_allclose(m.std(), x.std(axis=1), rtol=1e-11)
    assert m.n.tolist() == [1000, 1000]


def test_cache_reused_and_invalidated(tmp_path, monkeypatch):
    _dataset(tmp_path, 2)
    path = tmp_path / "stats.yaml"
    first = load_or_compute_stats(path, Trajectories(split_files(tmp_path, "train")), progress=False)
    doc = yaml.safe_load(path.read_text())
    assert doc["mean"]["pressure"] == pytest.approx(first.mean[0])
    assert set(doc["std"]) == {"pressure", "velocity_x", "velocity_y"}

    def fail(*args, **kwargs):
        raise AssertionError("stats recomputed although the cache matches")

    real = stats_mod.compute_stats
    monkeypatch.setattr(stats_mod, "compute_stats", fail)
    again = load_or_compute_stats(path, Trajectories(split_files(tmp_path, "train")), progress=False)
    assert again == first
    # more trajectories: the cache is stale
    _dataset(tmp_path, 3, seed=0)
    with pytest.raises(AssertionError, match="recomputed"):
        load_or_compute_stats(path, Trajectories(split_files(tmp_path, "train")), progress=False)
    monkeypatch.setattr(stats_mod, "compute_stats", real)
    third = load_or_compute_stats(path, Trajectories(split_files(tmp_path, "train")), progress=False)
    assert third.n_trajectories == 6 and third != first
    # another delta step is another cache
    assert load_or_compute_stats(path, Trajectories(split_files(tmp_path, "train")), delta_step=2,
                                 progress=False).delta_step == 2
    # a damaged cache file is recomputed, not trusted
    path.write_text("sciflow: [1, 2")
    assert load_or_compute_stats(path, Trajectories(split_files(tmp_path, "train")), progress=False) == third


def test_cache_follows_the_content_of_the_files(tmp_path):
    """Same names, same trajectory count: an edit in place, or a replaced file, recomputes."""
    import h5py

    _dataset(tmp_path, 2)
    path = tmp_path / "stats.yaml"
    tr = lambda: Trajectories(split_files(tmp_path, "train"))  # noqa: E731
    first = load_or_compute_stats(path, tr(), progress=False)
    f0 = tmp_path / "data" / "train" / "f0.hdf5"
    size = f0.stat().st_size
    with h5py.File(f0, "r+") as f:
        f["t0_fields/pressure"][...] = f["t0_fields/pressure"][...] + 10.0
    assert f0.stat().st_size == size  # the same size: only the content and mtime changed
    second = load_or_compute_stats(path, tr(), progress=False)
    assert second.mean[0] > first.mean[0] + 4.0 and second.channels == first.channels
    assert yaml.safe_load(path.read_text())["sciflow"]["mean"][0] == pytest.approx(second.mean[0])
    # the fingerprint names files relative to the stats file, so moving the folder keeps the cache
    moved = tmp_path.parent / (tmp_path.name + "_moved")
    tmp_path.rename(moved)
    key = stats_mod.source_key(moved / "stats.yaml", Trajectories(split_files(moved, "train")), 1)
    assert yaml.safe_load((moved / "stats.yaml").read_text())["source_key"] == key

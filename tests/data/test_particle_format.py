"""Particle layout (LagrangeBench's): round trips both ways, bad files, and code in data folders."""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest

from sciflow.data.particles import (
    Box,
    ForeignCodeWarning,
    ParticleCase,
    ParticleFormatError,
    ParticleTrajectories,
    body_force,
    check_particle_path,
    is_particle_path,
    particle_summary,
    read_metadata,
    validate_force,
    write_particle_dataset,
)
from tests.synthetic_particles import make_particle_dataset, rotating_disc

# What LagrangeBench's own generator writes (keys of its metadata.json), for a hand-made folder.
LB_METADATA = {
    "case": "TGV", "solver": "SPH", "density_evolution": False, "dim": 2, "dx": 0.1, "dt": 0.0004,
    "t_end": 0.4, "viscosity": 0.01, "p_bg_factor": 0.0, "g_ext_magnitude": 0.0, "artificial_alpha": 0.0,
    "free_slip": False, "write_every": 100, "is_bc_trick": False, "sequence_length_train": 9,
    "num_trajs_train": 2, "sequence_length_test": 9, "num_trajs_test": 1, "num_particles_max": 100,
    "periodic_boundary_conditions": [True, True], "bounds": [[0.0, 1.0], [0.0, 1.0]],
    "default_connectivity_radius": 0.145, "vel_mean": [0.0, 0.0], "vel_std": [0.01, 0.01],
    "acc_mean": [0.0, 0.0], "acc_std": [1e-4, 1e-4],
}


def _lagrangebench_folder(root, rng):
    """A dataset written by hand the way LagrangeBench's generator does (plain h5py, gzip)."""
    root.mkdir(parents=True)
    arrays = {}
    for split, n in (("train", 2), ("valid", 1), ("test", 1)):
        with h5py.File(root / f"{split}.h5", "w") as hf:
            for j in range(n):
                pos = rng.uniform(0, 1, size=(10, 100, 2)).astype(np.float32)
                tag = np.zeros(100, dtype=np.int32)
                hf.create_dataset(f"{j:05d}/particle_type", data=tag)
                hf.create_dataset(f"{j:05d}/position", data=pos, dtype=np.float32, compression="gzip")
                arrays[(split, j)] = (pos, tag)
    (root / "metadata.json").write_text(json.dumps(LB_METADATA))
    return arrays


def test_a_hand_written_lagrangebench_folder_loads_with_identical_arrays(tmp_path):
    arrays = _lagrangebench_folder(tmp_path / "2D_TGV_100", np.random.default_rng(0))
    for split in ("train", "valid", "test"):
        tr = ParticleTrajectories(tmp_path / "2D_TGV_100", split)
        assert tr.param_names == [] and tr.frame_dt == pytest.approx(0.04)
        for j in range(len(tr)):
            pos, tag = arrays[(split, j)]
            item = tr[j]
            assert item["position"].numpy().tobytes() == pos.tobytes()  # bit for bit
            np.testing.assert_array_equal(item["particle_type"].numpy(), tag)
            assert item["params"].shape == (0,)
    assert check_particle_path(tmp_path / "2D_TGV_100").ok


def _case(T=7, omega=1.0):
    pos, types = rotating_disc(omega, T)
    return ParticleCase(pos, types, {"omega": omega, "drift": 0.5}, attrs={"case_id": "x"})


def test_a_sciflow_folder_round_trips_and_follows_lagrangebench_s_reader(tmp_path):
    root = make_particle_dataset(tmp_path / "ds")
    meta = read_metadata(root)
    for k in ("bounds", "periodic_boundary_conditions", "dim", "dx", "dt", "write_every",
              "default_connectivity_radius", "num_particles_max", "vel_mean", "vel_std", "acc_mean", "acc_std",
              "sequence_length_train", "num_trajs_train", "sequence_length_test", "num_trajs_test"):
        assert k in meta, k
    assert meta["num_trajs_train"] == 4 and meta["sequence_length_train"] == 15  # frames - 1
    # what LagrangeBench's H5Dataset does with a split file: list the top-level keys as trajectories,
    # take the length of 00000, slice positions and transpose to (N, T, D), read particle_type
    raw = json.loads((root / "metadata.json").read_text())
    assert set(raw["particle_types"]) == {"0", "1", "2", "3"}  # JSON keys are strings
    with h5py.File(root / "train.h5", "r") as f:
        keys = list(f.keys())
        assert keys == ["00000", "00001", "00002", "00003"]
        assert f["00000/position"].shape[0] == raw["sequence_length_train"] + 1
        for key in keys:
            window = f[key]["position"][2:9].transpose((1, 0, 2))
            assert window.shape[1:] == (7, 2) and window.dtype == np.float32
            assert f[key]["particle_type"][:].shape == (window.shape[0],)
            assert window.shape[0] <= raw["num_particles_max"]
    # and the same file read back through sciflow, against the arrays that were written
    tr = ParticleTrajectories(root, "train")
    pos, types = rotating_disc(tr.params(0)[0], 16, n=8)
    np.testing.assert_array_equal(tr.read(0), pos.astype(np.float32))
    np.testing.assert_array_equal(tr.particle_type(0), types)
    assert tr.param_names == ["omega", "drift"] and tr.params(0).shape == (2,)
    assert tr.case_attrs(1)["case_id"] == "train_1"
    assert [tr.n_particles(i) for i in range(4)] != [tr.n_particles(0)] * 4  # N may differ
    report = check_particle_path(root)
    assert report.ok and not report.notes, report.issues + report.notes


def test_writes_are_atomic_and_leave_no_debris(tmp_path):
    root = make_particle_dataset(tmp_path / "ds")
    assert sorted(p.name for p in root.iterdir()) == ["metadata.json", "stats.yaml", "test.h5", "train.h5", "valid.h5"]
    bad = _case()
    bad.position[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"train.h5: trajectory 00000: position holds 2 NaN"):
        write_particle_dataset(tmp_path / "bad", {"train": [bad]}, read_metadata(root))
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())


def test_force_py_is_reported_and_never_run(tmp_path):
    root = make_particle_dataset(tmp_path / "ds")
    trace = tmp_path / "trace.txt"
    (root / "force.py").write_text(
        f"open({str(trace)!r}, 'w').write('ran')\n"
        "def force_fn(r):\n    return r\n")
    with pytest.warns(ForeignCodeWarning, match=r"force.py: Python code in a data folder is never imported"):
        tr = ParticleTrajectories(root, "train")
    tr.read(0)
    report = check_particle_path(root)
    assert report.ok and [n.where for n in report.notes] == ["force.py"]
    assert "never run" in particle_summary(root)
    assert not trace.exists()


def test_missing_metadata_is_named(tmp_path):
    root = make_particle_dataset(tmp_path / "ds")
    (root / "metadata.json").unlink()
    with pytest.raises(ParticleFormatError, match=r"metadata.json: missing: a particle dataset folder needs"):
        ParticleTrajectories(root, "train")
    report = check_particle_path(root)
    assert [i.where for i in report.issues] == ["metadata.json"]


@pytest.mark.parametrize("key, value, message", [
    ("bounds", [[0, 1]], r"bounds: expected 2 \[lo, hi\] pairs"),
    ("bounds", [[0, 1], [1, 0]], r"bounds: every pair must be finite with hi > lo"),
    ("periodic_boundary_conditions", [True], r"periodic_boundary_conditions: expected 2 booleans"),
    ("dt", -1, r"dt: expected a positive number"),
    ("write_every", 0.5, r"write_every: expected a positive integer"),
    ("vel_std", [1.0], r"vel_std: expected 2 values"),
    ("external_force", {"law": "magic"}, r"external_force.law: unknown force law 'magic'"),
    ("external_force", {"law": "gravity", "vector": [0, 0, -9.8]}, r"external_force.vector: expected 2 components"),
    ("dim", None, r"missing key\(s\) \['dim'\]"),
])
def test_bad_metadata_names_the_key(tmp_path, key, value, message):
    root = make_particle_dataset(tmp_path / "ds")
    meta = json.loads((root / "metadata.json").read_text())
    if value is None:
        del meta[key]
    else:
        meta[key] = value
    (root / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ParticleFormatError, match=message):
        ParticleTrajectories(root, "train")
    assert not check_particle_path(root).ok


def test_truncated_file_is_named(tmp_path):
    root = make_particle_dataset(tmp_path / "ds")
    data = (root / "train.h5").read_bytes()
    (root / "train.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(ParticleFormatError, match=r"train.h5.*(truncated or corrupted)"):
        ParticleTrajectories(root, "train")[0]
    issues = check_particle_path(root).issues
    assert issues and issues[0].where == "train.h5" and "truncated" in issues[0].message


def _poke(path, key, frame, particle, value):
    with h5py.File(path, "r+") as f:
        f[key]["position"][frame, particle] = value


def test_nan_and_escaped_particles_are_named_on_read_and_by_check(tmp_path):
    root = make_particle_dataset(tmp_path / "ds")
    _poke(root / "train.h5", "00001", 5, 3, [np.nan, 0.5])
    _poke(root / "valid.h5", "00000", 7, 2, [1.5, 0.5])  # outside bounds [-0.125, 1.125]
    tr = ParticleTrajectories(root, "train")
    tr.read(1, 0, 5)  # frames before the fault still read
    with pytest.raises(ParticleFormatError, match=r"train.h5: group '00001'/position: 1 NaN/Inf positions, first particle 3 at frame 5"):
        tr.read(1)
    with pytest.raises(ParticleFormatError, match=r"valid.h5: group '00000'/position: 1 positions outside the bounds .* particle 2 at frame 7: \[1.5, 0.5\]"):
        ParticleTrajectories(root, "valid")[0]
    msgs = {str(i) for i in check_particle_path(root).issues}
    assert "train.h5: 00001/position: 1 NaN/Inf positions; first: particle 3 at frame 5" in msgs
    assert any(m.startswith("valid.h5: 00000/position: 1 positions outside the bounds") for m in msgs)
    # a fluid particle through a wall but still inside the outer bounds: fluid_bounds catches it
    _poke(root / "test.h5", "00001", 4, 0, [1.05, 0.5])
    msgs = [str(i) for i in check_particle_path(root / "test.h5").issues]
    assert msgs == ["test.h5: 00001/position: 1 fluid positions outside fluid_bounds [[0.0, 1.0], [0.0, 1.0]]; "
                    "first: particle 0 at frame 4, at [1.05, 0.5]"]


def test_wrong_types_and_shapes_are_named_by_check(tmp_path):
    root = make_particle_dataset(tmp_path / "ds")
    with h5py.File(root / "train.h5", "r+") as f:
        f["00000/particle_type"][0] = 7
        del f["00001/particle_type"]
        f.create_dataset("00001/particle_type", data=np.zeros(3, np.int32))
        t = f["00002/particle_type"][()].astype(np.float32)
        del f["00002/particle_type"]
        f.create_dataset("00002/particle_type", data=t)
        f.create_dataset("stray", data=np.zeros(2))
        del f["00003"].attrs["sciflow_params"]
    msgs = [str(i) for i in check_particle_path(root).issues]
    assert "train.h5: 00000/particle_type: unknown type id(s) [7]; metadata particle_types knows [0, 1, 2, 3]" in msgs
    assert any(m.startswith("train.h5: 00001/particle_type: expected shape (") for m in msgs)
    assert "train.h5: 00002/particle_type: expected an integer dtype, found float32" in msgs
    assert "train.h5: stray: top-level item is not a trajectory group (LagrangeBench would read it as one)" in msgs
    assert "train.h5: 00003/@sciflow_params: expected 2 values ['omega', 'drift'], found none" in msgs
    assert "train.h5: 5 trajectories, metadata num_trajs_train = 4" in msgs


def test_particle_paths_are_told_from_grid_files(tmp_path, synthetic_card):
    root = make_particle_dataset(tmp_path / "ds")
    assert is_particle_path(root) and is_particle_path(root / "train.h5")
    grid = sorted((synthetic_card.parent / "data" / "train").glob("*.hdf5"))[0]
    assert not is_particle_path(grid) and not is_particle_path(synthetic_card.parent)


def test_box_minimum_image_and_wrap_numpy_and_torch():
    import torch

    box = Box.make([[0, 1], [0, 2]], [True, False])
    a, b = np.array([[0.95, 1.9]]), np.array([[0.05, 0.1]])
    np.testing.assert_allclose(box.displacement(a, b), [[-0.1, 1.8]])
    np.testing.assert_allclose(box.displacement(torch.tensor(a), torch.tensor(b)).numpy(), [[-0.1, 1.8]])
    np.testing.assert_allclose(box.wrap(np.array([[1.25, 2.5]])), [[0.25, 2.5]])
    np.testing.assert_allclose(box.wrap(torch.tensor([[-0.25, 2.5]])).numpy(), [[0.75, 2.5]])
    assert box.outside(np.array([[0.5, 2.0], [1.0, 1.0], [0.5, -0.01], [0.5, np.nan]])).tolist() == [False, True, True, True]


def test_stored_positions_stay_inside_a_periodic_box_in_float32():
    # found by the default TGV sweep: 1 - 1e-9 folds to itself in float64 and rounds to 1.0 in
    # float32, which is outside [0, 1) on a periodic axis; a wall axis keeps its coordinate
    box = Box.make([[0, 1], [0, 1]], [True, False])
    x = np.array([[[1 - 1e-9, 1 - 1e-9], [-1e-9, 0.5]]])
    assert np.float32(x[0, 0, 0]) == np.float32(1.0)  # the rounding the fix is for
    stored = box.store(x)
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(stored, np.array([[[0.0, 1.0], [0.0, 0.5]]], dtype=np.float32))
    assert not box.outside(stored).any()
    assert box.outside(np.asarray(box.wrap(x)).astype(np.float32)).any()  # without store: outside


def test_force_laws_are_data():
    import torch

    x = np.array([[0.3, 0.5], [0.3, 1.5]])
    np.testing.assert_allclose(body_force({"law": "gravity", "vector": [0, -9.81]}, x), [[0, -9.81], [0, -9.81]])
    rpf = {"law": "reverse_poiseuille", "magnitude": 1.0, "axis": 0, "across": 1, "split": 1.0}
    np.testing.assert_allclose(body_force(rpf, x), [[1, 0], [-1, 0]])
    np.testing.assert_allclose(body_force(rpf, torch.tensor(x)).numpy(), [[1, 0], [-1, 0]])
    np.testing.assert_allclose(body_force(None, x), 0)
    with pytest.raises(ValueError, match=r"law 'gravity' needs key\(s\) \['vector'\]"):
        validate_force({"law": "gravity"}, 2)
    with pytest.raises(ValueError, match=r"does not take key\(s\) \['code'\]"):
        validate_force({"law": "none", "code": "import os"}, 2)


def test_no_warning_without_code_in_the_folder(tmp_path):
    root = make_particle_dataset(tmp_path / "ds", walls=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ParticleTrajectories(root, "test")

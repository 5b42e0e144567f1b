"""Writer -> reader round trip of the Well layout, and atomic writes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from sciflow.data.case import BoundarySpec, Case
from sciflow.data.format import atomic_path, write_cases, write_well
from sciflow.data.reader import WellFile

B, T, NX, NY = 3, 4, 5, 7


def _arrays(seed: int = 0):
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(B, T, NX, NY))
    vel = rng.normal(size=(B, T, NX, NY, 2))
    return p, vel


def _write(path, **kw):
    p, vel = _arrays()
    args = dict(
        dataset_name="rt", time=np.arange(T) * 0.5,
        coords={"x": np.linspace(0, 1, NX), "y": np.linspace(0, 2, NY)},
        t0_fields={"pressure": p}, t1_fields={"velocity": vel},
    )
    args.update(kw)
    return write_well(path, **args), p, vel


def test_values_channels_and_orientation(tmp_path):
    path, p, vel = _write(tmp_path / "a.hdf5", attrs={"dt": 0.5, "note": {"k": [1, 2]}})
    wf = WellFile(path)
    assert wf.n_trajectories == B and wf.n_steps == T
    assert wf.spatial_dims == ["x", "y"] and wf.spatial_shape == (NX, NY)
    assert wf.channel_names == ["pressure", "velocity_x", "velocity_y"]
    for b in range(B):
        a = wf.read(b)
        assert a.shape == (T, 3, NX, NY) and a.dtype == np.float32
        np.testing.assert_array_equal(a[:, 0], p[b].astype(np.float32))
        np.testing.assert_array_equal(a[:, 1], vel[b, ..., 0].astype(np.float32))
        np.testing.assert_array_equal(a[:, 2], vel[b, ..., 1].astype(np.float32))
    # x-first: index [t, c, i, j] is x_i, y_j
    assert wf.read(1)[2, 2, 4, 6] == np.float32(vel[1, 2, 4, 6, 1])
    # slicing in time and choosing fields in a given order
    a = wf.read(2, 1, 4, 2, fields=["velocity", "pressure"])
    assert a.shape == (2, 3, NX, NY)
    np.testing.assert_array_equal(a[:, 2], p[2, 1:4:2].astype(np.float32))
    np.testing.assert_array_equal(a[:, 0], vel[2, 1:4:2, ..., 0].astype(np.float32))
    np.testing.assert_allclose(wf.time, [0, 0.5, 1.0, 1.5])
    assert wf.dt == 0.5
    assert wf.attrs["sciflow_note"] == {"k": [1, 2]}
    assert wf.attrs["sciflow_format_version"] == "1"
    with h5py.File(path) as f:
        assert f["t0_fields/pressure"].dtype == np.float32
        assert f["t1_fields/velocity"].shape == (B, T, NX, NY, 2)
        assert list(f["t1_fields/velocity"].attrs["dim_varying"]) == [True, True]
        assert list(f["dimensions"].attrs["spatial_dims"]) == ["x", "y"]
    with pytest.raises(IndexError, match="trajectory 3 out of range"):
        wf.read(3)
    with pytest.raises(ValueError, match=r"field\(s\) \['rho'\] not found"):
        wf.read(0, fields=["rho"])


def test_tensor_field_channels(tmp_path):
    s = np.random.default_rng(1).normal(size=(B, T, NX, NY, 2, 2))
    path = write_well(tmp_path / "t2.hdf5", dataset_name="t2", time=np.arange(T),
                      coords={"x": np.arange(NX), "y": np.arange(NY)}, t2_fields={"stress": s})
    wf = WellFile(path)
    assert wf.channel_names == ["stress_xx", "stress_xy", "stress_yx", "stress_yy"]
    a = wf.read(0)
    np.testing.assert_array_equal(a[:, 1], s[0, ..., 0, 1].astype(np.float32))
    np.testing.assert_array_equal(a[:, 2], s[0, ..., 1, 0].astype(np.float32))


def test_one_dimensional(tmp_path):
    u = np.random.default_rng(2).normal(size=(2, T, 16))
    path = write_well(tmp_path / "ks.hdf5", dataset_name="ks", time=np.arange(T) * 0.2,
                      coords={"x": np.arange(16) / 16}, t0_fields={"u": u}, params={"L": 64.0})
    wf = WellFile(path)
    assert wf.spatial_dims == ["x"] and wf.read(1).shape == (T, 1, 16)
    np.testing.assert_array_equal(wf.read(1)[:, 0], u[1].astype(np.float32))
    assert wf.dt == pytest.approx(0.2, rel=1e-6)  # no root dt: mean spacing of the time axis


def test_params_shared_and_per_trajectory(tmp_path):
    path, _, _ = _write(tmp_path / "p.hdf5", params={"Re": 100.0, "U": np.array([1.0, 2.0, 3.0]),
                                                     "rho": np.array([5.0, 5.0, 5.0])})
    wf = WellFile(path)
    assert wf.param_names == ["Re", "U", "rho"]
    for b in range(B):
        np.testing.assert_allclose(wf.params(b), [100.0, b + 1.0, 5.0])
    with h5py.File(path) as f:
        assert f["scalars/Re"].shape == () and not f["scalars/Re"].attrs["sample_varying"]
        assert f["scalars/U"].shape == (B,) and f["scalars/U"].attrs["sample_varying"]
        assert f["scalars/rho"].shape == ()  # equal across trajectories: stored once
        assert f.attrs["Re"] == 100.0 and f.attrs["rho"] == 5.0 and "U" not in f.attrs
        assert list(f["scalars"].attrs["field_names"]) == ["Re", "U", "rho"]
    with pytest.raises(ValueError, match=r"scalars/U: expected shape \(\) or \(3,\), found \(2,\)"):
        _write(tmp_path / "bad.hdf5", params={"U": np.array([1.0, 2.0])})


def test_mask_shared_and_per_trajectory(tmp_path):
    shared = np.ones((NX, NY), bool)
    shared[1:3, 2:5] = False
    path, _, _ = _write(tmp_path / "m1.hdf5", mask=shared)
    wf = WellFile(path)
    assert wf.channel_names == ["pressure", "velocity_x", "velocity_y"]  # the mask is no channel
    for b in range(B):
        np.testing.assert_array_equal(wf.mask(b), shared)
    with h5py.File(path) as f:
        m = f["t0_fields/mask"]
        assert m.dtype == np.float32 and m.shape == (NX, NY)
        assert m.attrs["sciflow_role"] == "mask"
        assert not m.attrs["sample_varying"] and not m.attrs["time_varying"]
        assert set(np.unique(m[()])) == {0.0, 1.0}

    per = np.ones((B, NX, NY), bool)
    for b in range(B):
        per[b, b, b] = False
    path, _, _ = _write(tmp_path / "m2.hdf5", mask=per)
    wf = WellFile(path)
    for b in range(B):
        np.testing.assert_array_equal(wf.mask(b), per[b])
    with h5py.File(path) as f:
        assert f["t0_fields/mask"].shape == (B, NX, NY) and f["t0_fields/mask"].attrs["sample_varying"]
    path, _, _ = _write(tmp_path / "m3.hdf5")
    assert WellFile(path).mask(0) is None
    with pytest.raises(ValueError, match=r"mask: expected shape \(5, 7\) or \(3, 5, 7\)"):
        _write(tmp_path / "m4.hdf5", mask=np.ones((NY, NX), bool))


def test_boundary_groups(tmp_path):
    left = np.zeros(NX, bool)
    left[0] = True
    bcs = [BoundarySpec("inlet", "open", ["x"], left, ["velocity"], np.array([2.5])),
           BoundarySpec("y_periodic", "periodic", ["y"], np.ones(NY, bool))]
    path, _, _ = _write(tmp_path / "bc.hdf5", boundaries=bcs)
    wf = WellFile(path)
    assert wf.boundaries["inlet"]["bc_type"] == "open"
    assert wf.boundaries["inlet"]["associated_dims"] == ["x"]
    assert wf.boundaries["inlet"]["associated_fields"] == ["velocity"]
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["boundary_conditions/inlet/mask"][()], left)
        np.testing.assert_array_equal(f["boundary_conditions/inlet/values"][()], [2.5])
        assert f["boundary_conditions/y_periodic/values"].shape == (NY,)
    with pytest.raises(ValueError, match="bc_type 'slip'"):
        _write(tmp_path / "bad.hdf5", boundaries=[BoundarySpec("s", "slip", ["x"], left)])


def test_writer_rejects_bad_shapes(tmp_path):
    p, vel = _arrays()
    with pytest.raises(ValueError, match=r"t1_fields/velocity: expected shape \(3, 4, 5, 7, 2\), found \(3, 4, 5, 7, 3\)"):
        _write(tmp_path / "x.hdf5", t1_fields={"velocity": np.zeros((B, T, NX, NY, 3))})
    with pytest.raises(ValueError, match="no fields given"):
        write_well(tmp_path / "y.hdf5", dataset_name="e", time=np.arange(T), coords={"x": np.arange(3)})
    assert not list(tmp_path.iterdir())


def test_write_cases_stacks_cases(tmp_path):
    def case(k: int, hole: bool) -> Case:
        mask = np.ones((NX, NY), bool)
        if hole:
            mask[k, 0] = False
        return Case(scalar_fields={"pressure": np.full((T, NX, NY), float(k))},
                    vector_fields={"velocity": np.zeros((T, NX, NY, 2))}, time=np.arange(T) * 0.1,
                    coords={"x": np.arange(NX), "y": np.arange(NY)}, params={"U": k + 1.0, "rho": 1.0},
                    mask=mask, attrs={"case_id": f"c{k}"})

    path = write_cases(tmp_path / "c.hdf5", [case(0, False), case(1, False)], dataset_name="c")
    wf = WellFile(path)
    assert wf.n_trajectories == 2 and wf.mask(1).all()
    assert wf.read(1)[0, 0, 0, 0] == 1.0
    assert [c["case_id"] for c in wf.attrs["sciflow_cases"]] == ["c0", "c1"]
    np.testing.assert_allclose(wf.params(1), [2.0, 1.0])
    with h5py.File(path) as f:
        assert f["t0_fields/mask"].shape == (NX, NY)  # equal masks stored once
    path = write_cases(tmp_path / "d.hdf5", [case(0, True), case(1, True)], dataset_name="d")
    wf = WellFile(path)
    assert not wf.mask(0)[0, 0] and wf.mask(0)[1, 0] and not wf.mask(1)[1, 0]
    short = case(2, False)
    short.time = short.time[:2]
    short.scalar_fields = {"pressure": np.zeros((2, NX, NY))}
    short.vector_fields = {"velocity": np.zeros((2, NX, NY, 2))}
    with pytest.raises(ValueError, match="case 1 has grid"):
        write_cases(tmp_path / "e.hdf5", [case(0, False), short], dataset_name="e")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    bad = [BoundarySpec("s", "slip", ["x"], np.ones(NX, bool))]  # fails after the file is open
    with pytest.raises(ValueError):
        _write(tmp_path / "f.hdf5", boundaries=bad)
    assert list(tmp_path.iterdir()) == []
    # a failed rewrite keeps the old file intact
    path, p, _ = _write(tmp_path / "g.hdf5")
    with pytest.raises(ValueError):
        _write(path, boundaries=bad, t0_fields={"pressure": np.zeros_like(p)})
    assert sorted(q.name for q in tmp_path.iterdir()) == ["g.hdf5"]
    np.testing.assert_array_equal(WellFile(path).read(0)[:, 0], p[0].astype(np.float32))

    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "h.txt") as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert sorted(q.name for q in tmp_path.iterdir()) == ["g.hdf5"]
    with atomic_path(tmp_path / "sub" / "h.txt") as tmp:
        assert tmp.parent == tmp_path / "sub" and tmp.name.startswith(".h.txt.")
        tmp.write_text("whole")
    assert (tmp_path / "sub" / "h.txt").read_text() == "whole"
    assert [q.name for q in (tmp_path / "sub").iterdir()] == ["h.txt"]


def test_per_trajectory_coordinates(tmp_path):
    from sciflow.data.check import check_file

    L = np.array([[60.0], [64.0], [70.0]])
    x = np.arange(8)[None, :] * L / 8  # (B, n): each trajectory has its own domain length
    u = np.random.default_rng(3).normal(size=(B, T, 8))
    path = write_well(tmp_path / "ks.hdf5", dataset_name="ks", time=np.arange(T) * 0.2,
                      coords={"x": x}, t0_fields={"u": u}, params={"L": L[:, 0]})
    assert check_file(path) == []
    wf = WellFile(path)
    assert wf.spatial_shape == (8,)
    np.testing.assert_allclose(wf.coords_of(2)["x"], x[2], rtol=1e-6)
    np.testing.assert_allclose(wf.coords["x"], x[0], rtol=1e-6)  # trajectory 0's
    with h5py.File(path) as f:
        assert f["dimensions/x"].shape == (B, 8) and f["dimensions/x"].attrs["sample_varying"]
    with pytest.raises(ValueError, match=r"dimensions/x: expected shape"):
        write_well(tmp_path / "bad.hdf5", dataset_name="ks", time=np.arange(T), coords={"x": x[:2]},
                   t0_fields={"u": u})


def test_field_groups_follow_channel_naming():
    from sciflow.data.reader import field_groups

    assert field_groups(["velocity_x", "velocity_y", "pressure"], ["x", "y"]) == {
        "velocity": [0, 1], "pressure": [2]}
    assert field_groups(["u"], ["x"]) == {"u": [0]}
    # a lone "_x" suffix is not a vector: the other component is missing
    assert field_groups(["a_x", "b"], ["x", "y"]) == {"a_x": [0], "b": [1]}
    assert field_groups(["s_xx", "s_xy", "s_yx", "s_yy"], ["x", "y"]) == {"s": [0, 1, 2, 3]}

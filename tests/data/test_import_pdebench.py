"""PDEBench importer on tiny fake files in each of its three layouts, 1D and 2D."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import yaml

from sciflow.data.card import load_card
from sciflow.data.check import check_file
from sciflow.data.errors import DataError, DataFormatError, DataValueError
from sciflow.data.importers import import_pdebench
from sciflow.data.reader import WellFile
from sciflow.data.trajectories import Trajectories, split_files

N, T, X, Y = 10, 5, 12, 6


def _all_files(out):
    return [p for s in ("train", "valid", "test") for p in split_files(out, s)]


def _by_source_index(out) -> dict[int, tuple[WellFile, int]]:
    """Source trajectory index -> (file, trajectory in file), from the files' provenance."""
    found = {}
    for p in _all_files(out):
        wf = WellFile(p)
        for b, case in enumerate(wf.attrs["sciflow_cases"]):
            found[case["source_index"]] = (wf, b)
    return found


def test_tensor_1d_time_alignment_params_and_chunks(tmp_path):
    rng = np.random.default_rng(0)
    u = rng.normal(size=(N, T, X))
    x = np.linspace(0, 1, X, endpoint=False) + 0.5 / X
    t = np.arange(T + 1) * 0.01  # PDEBench: one more time than frames
    src = tmp_path / "1D_Advection_Sols_beta0.4.hdf5"
    with h5py.File(src, "w") as f:
        f["tensor"] = u
        f["x-coordinate"] = x
        f["t-coordinate"] = t
    card_path = import_pdebench(src, tmp_path / "out", params={"beta": 0.4}, trajectories_per_file=3,
                                periodic=True, progress=False)
    card = load_card(card_path)
    assert card.name == "1D_Advection_Sols_beta0.4"
    assert card.fields == ["u"] and card.params == ["beta"] and card.periodic
    assert card.dt == pytest.approx(0.01) and card.frames["train"] == T
    raw = yaml.safe_load(card_path.read_text())
    assert raw["imported_from"]["trajectories"] == {"train": 8, "valid": 1, "test": 1}
    files = _all_files(tmp_path / "out")
    assert len(files) == 3 + 1 + 1  # 8 train trajectories in files of <= 3
    assert sorted(WellFile(p).n_trajectories for p in files) == [1, 1, 2, 3, 3]
    for p in files:
        assert check_file(p) == []
    found = _by_source_index(tmp_path / "out")
    assert sorted(found) == list(range(N))
    for i, (wf, b) in found.items():
        np.testing.assert_allclose(wf.read(b)[:, 0], u[i].astype(np.float32))
        np.testing.assert_allclose(wf.time, t[:T], rtol=1e-6)  # frame k at t-coordinate[k]
        assert wf.params(b).tolist() == [pytest.approx(0.4)]
        assert wf.boundaries["x_periodic"]["bc_type"] == "periodic"
    with h5py.File(files[0]) as f:
        assert f["scalars/beta"].shape == ()


def test_tensor_2d_is_already_x_first(tmp_path):
    rng = np.random.default_rng(1)
    u = rng.normal(size=(4, T, X, Y))
    src = tmp_path / "2D_tensor.h5"
    with h5py.File(src, "w") as f:
        f["tensor"] = u
        f["x-coordinate"] = np.linspace(0, 1, X)
        f["y-coordinate"] = np.linspace(0, 2, Y)
        f["t-coordinate"] = np.arange(T) * 0.5  # exactly T entries is also accepted
    import_pdebench(src, tmp_path / "out", fields=["h"], progress=False)
    found = _by_source_index(tmp_path / "out")
    wf, b = found[2]
    assert wf.spatial_shape == (X, Y) and wf.channel_names == ["h"]
    np.testing.assert_allclose(wf.read(b)[:, 0], u[2].astype(np.float32))
    np.testing.assert_allclose(wf.coords["y"], np.linspace(0, 2, Y), rtol=1e-6)


@pytest.mark.parametrize("ndim", [1, 2])
def test_per_field_layout(tmp_path, ndim):
    rng = np.random.default_rng(2)
    shape = (N, T, X) if ndim == 1 else (N, T, X, Y)
    data = {k: rng.normal(size=shape) for k in ("density", "pressure", "Vx", "Vy")[: 3 if ndim == 1 else 4]}
    src = tmp_path / f"{ndim}D_CFD.hdf5"
    with h5py.File(src, "w") as f:
        for k, a in data.items():
            f[k] = a
        f["x-coordinate"] = np.linspace(0, 1, X)
        if ndim == 2:
            f["y-coordinate"] = np.linspace(0, 1, Y)
        f["t-coordinate"] = np.arange(T + 1) * 0.05
    card = load_card(import_pdebench(src, tmp_path / "out", progress=False))
    assert card.fields == ["density", "pressure", "velocity"]
    comps = ["velocity_x"] + (["velocity_y"] if ndim == 2 else [])
    found = _by_source_index(tmp_path / "out")
    for i, (wf, b) in found.items():
        assert wf.channel_names == ["density", "pressure", *comps]
        a = wf.read(b)
        np.testing.assert_allclose(a[:, 0], data["density"][i].astype(np.float32))
        np.testing.assert_allclose(a[:, 1], data["pressure"][i].astype(np.float32))
        np.testing.assert_allclose(a[:, 2], data["Vx"][i].astype(np.float32))
        if ndim == 2:
            np.testing.assert_allclose(a[:, 3], data["Vy"][i].astype(np.float32))
    for p in _all_files(tmp_path / "out"):
        assert check_file(p) == []
        with h5py.File(p) as f:
            assert f["t1_fields/velocity"].shape[-1] == ndim
    # a subset of the fields
    card = load_card(import_pdebench(src, tmp_path / "sub", fields=["velocity"], progress=False))
    assert card.fields == ["velocity"]
    assert Trajectories(_all_files(tmp_path / "sub")).channel_names == comps
    with pytest.raises(ValueError, match=r"fields \['energy'\] not in this file"):
        import_pdebench(src, tmp_path / "bad", fields=["energy"], progress=False)


def test_per_field_needs_every_velocity_component(tmp_path):
    src = tmp_path / "cfd.hdf5"
    with h5py.File(src, "w") as f:
        f["density"] = np.ones((2, T, X, Y))
        f["Vx"] = np.ones((2, T, X, Y))
        f["x-coordinate"] = np.arange(X)
        f["y-coordinate"] = np.arange(Y)
        f["t-coordinate"] = np.arange(T)
    with pytest.raises(DataFormatError, match=r"\['Vy'\] missing"):
        import_pdebench(src, tmp_path / "out", progress=False)


def test_per_sample_groups(tmp_path):
    rng = np.random.default_rng(3)
    src = tmp_path / "2D_diff-react_NA_NA.h5"
    data = {}
    with h5py.File(src, "w") as f:
        for i in range(6):
            g = f.create_group(f"{i:04d}")
            data[i] = rng.normal(size=(T, X, Y, 2))
            g["data"] = data[i]
            g["grid/x"] = np.linspace(-1, 1, X)
            g["grid/y"] = np.linspace(-1, 1, Y)
            g["grid/t"] = np.linspace(0, 1, T)
    card = load_card(import_pdebench(src, tmp_path / "out", progress=False))
    assert card.fields == ["u0", "u1"]
    assert card.dt == pytest.approx(0.25)
    found = _by_source_index(tmp_path / "out")
    assert sorted(found) == list(range(6))
    for i, (wf, b) in found.items():
        assert wf.attrs["sciflow_cases"][b]["source_group"] == f"{i:04d}"
        a = wf.read(b)
        np.testing.assert_allclose(a[:, 0], data[i][..., 0].astype(np.float32))
        np.testing.assert_allclose(a[:, 1], data[i][..., 1].astype(np.float32))
    for p in _all_files(tmp_path / "out"):
        assert check_file(p) == []
    with pytest.raises(ValueError, match="data has 2 channels"):
        import_pdebench(src, tmp_path / "bad", fields=["u"], progress=False)


def test_per_sample_1d(tmp_path):
    src = tmp_path / "1D_diff-sorp.h5"
    with h5py.File(src, "w") as f:
        for i in range(3):
            f[f"{i:04d}/data"] = np.full((T, X, 1), float(i))
            f[f"{i:04d}/grid/x"] = np.arange(X) / X
            f[f"{i:04d}/grid/t"] = np.arange(T + 1) * 0.1
    card = load_card(import_pdebench(src, tmp_path / "out", progress=False))
    assert card.fields == ["u"] and card.grid == [X]
    found = _by_source_index(tmp_path / "out")
    for i, (wf, b) in found.items():
        assert np.all(wf.read(b) == i)


def test_unknown_layout_and_bad_time(tmp_path):
    src = tmp_path / "odd.h5"
    with h5py.File(src, "w") as f:
        f["velocity"] = np.zeros((2, T, X, Y, 2))
        f["particles"] = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"unknown PDEBench layout.*\['particles', 'velocity'\]"):
        import_pdebench(src, tmp_path / "out", progress=False)
    src = tmp_path / "badt.h5"
    with h5py.File(src, "w") as f:
        f["tensor"] = np.zeros((2, T, X))
        f["x-coordinate"] = np.arange(X)
        f["t-coordinate"] = np.arange(T + 3)
    with pytest.raises(ValueError, match=r"8 times for 5 frames"):
        import_pdebench(src, tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="params"):
        import_pdebench(tmp_path / "badt.h5", tmp_path / "out", params={"not a name": 1.0})


def test_resume_skips_finished_files(tmp_path):
    src = tmp_path / "adv.hdf5"
    with h5py.File(src, "w") as f:
        f["tensor"] = np.random.default_rng(0).normal(size=(N, T, X))
        f["x-coordinate"] = np.arange(X) / X
        f["t-coordinate"] = np.arange(T + 1) * 0.1
    import_pdebench(src, tmp_path / "out", trajectories_per_file=4, progress=False)
    files = _all_files(tmp_path / "out")
    first = files[0].stat().st_mtime_ns
    files[-1].unlink()
    import_pdebench(src, tmp_path / "out", trajectories_per_file=4, progress=False)
    assert files[0].stat().st_mtime_ns == first and files[-1].is_file()
    with pytest.raises(FileExistsError):
        import_pdebench(src, tmp_path / "out", trajectories_per_file=2, progress=False)


def _tensor_file(path, n=6, **extra):
    with h5py.File(path, "w") as f:
        f["tensor"] = np.random.default_rng(0).normal(size=(n, T, X))
        f["x-coordinate"] = np.arange(X) / X
        f["t-coordinate"] = np.arange(T + 1) * 0.1
        for k, v in extra.items():
            if k.startswith("attr_"):
                f.attrs[k[5:]] = v
            else:
                f[k] = v
    return path


def _params_of(out) -> dict[int, list[float]]:
    return {i: wf.params(b).tolist() for i, (wf, b) in _by_source_index(out).items()}


def test_parameters_from_root_datasets_and_attributes(tmp_path):
    nu = np.linspace(0.1, 0.6, 6)
    table = np.stack([nu * 10, nu * 100], axis=1)
    src = _tensor_file(tmp_path / "adv.h5", nu=nu, params=table, attr_beta=0.4)
    card = load_card(import_pdebench(src, tmp_path / "auto", progress=False))
    # found automatically: the root attribute (shared) and the (N,) dataset; (N, 2) is only reported
    assert card.params == ["beta", "nu"]
    assert "frame k at t-coordinate[k]" in card.description  # T + 1 times: the drop is stated
    report = {r["name"]: r for r in yaml.safe_load(open(tmp_path / "auto" / "card.yaml"))["imported_from"]["parameters"]}
    assert not report["params"]["used"] and "dataset:params[:, j]" in report["params"]["note"]
    for i, p in _params_of(tmp_path / "auto").items():
        assert p == [pytest.approx(0.4), pytest.approx(nu[i])]
    card = load_card(import_pdebench(src, tmp_path / "pick", param_from={"D": "dataset:params[:, 1]"},
                                     params={"c": 2.0}, auto_params=False, progress=False))
    assert card.params == ["c", "D"]
    for i, p in _params_of(tmp_path / "pick").items():
        assert p == [2.0, pytest.approx(table[i, 1])]


def test_parameter_sources_that_do_not_fit_name_the_place(tmp_path):
    src = _tensor_file(tmp_path / "adv.h5", nu=np.arange(6.0), params=np.zeros((6, 2)))
    cases = [
        ({"a": "attr:missing"}, DataFormatError, r"adv\.h5: root: no attribute 'missing'"),
        ({"a": "dataset:nope"}, DataFormatError, r"no dataset 'nope'; top-level keys"),
        ({"a": "dataset:params"}, DataFormatError, r"gives shape \(6, 2\), expected \(6,\)"),
        ({"a": "dataset:params[:, 5]"}, DataFormatError, r"index \[.*5\] does not fit shape \(6, 2\)"),
        ({"a": "dataset:tensor[:, 0]"}, DataFormatError, r"gives shape \(6, 12\)"),
        ({"a": "column:nu"}, DataError, r"expected attr:KEY"),
        ({"not-a-name": "attr:nu"}, DataError, r"not an identifier"),
    ]
    for k, (mapping, err, match) in enumerate(cases):
        with pytest.raises(err, match=match):
            import_pdebench(src, tmp_path / f"o{k}", param_from=mapping, progress=False)
    with pytest.raises(DataError, match=r"\['nu'\] given both"):
        import_pdebench(src, tmp_path / "x", params={"nu": 1.0}, param_from={"nu": "dataset:nu"})
    with h5py.File(src, "r+") as f:
        f["nu"][3] = np.nan
    with pytest.raises(DataValueError, match=r"dataset 'nu'.* is nan for trajectory 3"):
        import_pdebench(src, tmp_path / "y", param_from={"nu": "dataset:nu"}, progress=False)


def test_per_sample_group_attributes_and_datasets(tmp_path):
    src = tmp_path / "2D_rdb.h5"
    with h5py.File(src, "w") as f:
        for i in range(4):
            g = f.create_group(f"{i:04d}")
            g["data"] = np.full((T, X, Y, 1), float(i))
            g["grid/x"], g["grid/y"], g["grid/t"] = np.arange(X), np.arange(Y), np.arange(T) * 0.5
            g.attrs["h0"] = 1.0 + i
            g.attrs["note"] = "plain text, not a parameter"
            g["radius"] = np.float32(0.1 * (i + 1))
            g["coeffs"] = np.array([i, 2.0 * i])
    card = load_card(import_pdebench(src, tmp_path / "out", progress=False))
    assert card.params == ["h0", "radius"]
    assert "dropped" not in card.description
    for i, p in _params_of(tmp_path / "out").items():
        assert p == [1.0 + i, pytest.approx(0.1 * (i + 1))]
    report = {r["name"]: r for r in yaml.safe_load(open(tmp_path / "out" / "card.yaml"))["imported_from"]["parameters"]}
    assert not report["coeffs"]["used"] and "dataset:coeffs[j]" in report["coeffs"]["note"]
    card = load_card(import_pdebench(src, tmp_path / "c", param_from={"c1": "dataset:coeffs[1]"},
                                     auto_params=False, progress=False))
    assert card.params == ["c1"]
    assert [p for _, p in sorted(_params_of(tmp_path / "c").items())] == [[0.0], [2.0], [4.0], [6.0]]
    with h5py.File(src, "r+") as f:
        del f["0002"].attrs["h0"]
    with pytest.raises(DataFormatError, match=r"group '0002': no attribute 'h0'; it has \['note'\]"):
        import_pdebench(src, tmp_path / "d", param_from={"h0": "attr:h0"}, progress=False)
    # found automatically but missing in one group: reported as unreadable, not used, not fatal
    card = load_card(import_pdebench(src, tmp_path / "e", progress=False))
    assert card.params == ["radius"]

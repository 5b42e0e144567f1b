"""``check_file``: one issue per problem, each naming the group/key and expected vs found."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from sciflow.data.case import BoundarySpec
from sciflow.data.check import Issue, check_file
from sciflow.data.format import write_well

B, T, NX, NY = 2, 3, 4, 5


@pytest.fixture
def good(tmp_path):
    rng = np.random.default_rng(0)
    mask = np.ones((NX, NY), bool)
    mask[0, 0] = False
    return write_well(
        tmp_path / "good.hdf5", dataset_name="g", time=np.arange(T) * 0.1,
        coords={"x": np.arange(NX) / NX, "y": np.arange(NY) / NY},
        t0_fields={"pressure": rng.normal(size=(B, T, NX, NY))},
        t1_fields={"velocity": rng.normal(size=(B, T, NX, NY, 2))},
        params={"Re": 100.0, "U": np.array([1.0, 2.0])}, mask=mask,
        boundaries=[BoundarySpec("wall_x", "wall", ["x"], np.eye(NX, dtype=bool)[0])],
        attrs={"dt": 0.1},
    )


def _replace(path, key: str, data: np.ndarray) -> None:
    """Swap a dataset for ``data``, keeping its attributes."""
    with h5py.File(path, "r+") as f:
        attrs = dict(f[key].attrs)
        del f[key]
        f[key] = data
        f[key].attrs.update(attrs)


def _strs(issues: list[Issue]) -> list[str]:
    return [str(i) for i in issues]


def test_good_file_has_no_issue(good):
    assert check_file(good) == []


def test_missing_file(tmp_path):
    (issue,) = check_file(tmp_path / "nope.hdf5")
    assert "no such file" in issue.message


def test_truncated_file(good):
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    issues = check_file(good)
    assert issues, "a truncated file must not pass"
    assert any("truncated" in s or "cannot read" in s for s in _strs(issues))


def test_random_bytes(tmp_path):
    p = tmp_path / "noise.hdf5"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    (issue,) = check_file(p)
    assert "not a readable HDF5 file" in issue.message and issue.where == str(p)


def test_listed_field_missing(good):
    with h5py.File(good, "r+") as f:
        del f["t0_fields/pressure"]
    assert _strs(check_file(good)) == ["t0_fields/pressure: listed in field_names but missing"]


def test_unlisted_dataset(good):
    with h5py.File(good, "r+") as f:
        f["t0_fields/extra"] = np.zeros((B, T, NX, NY), np.float32)
    assert _strs(check_file(good)) == ["t0_fields/extra: dataset not listed in field_names"]


def test_wrong_shape(good):
    _replace(good, "t1_fields/velocity", np.zeros((B, T, NY, NX, 2), np.float32))
    (issue,) = check_file(good)
    assert issue.where == "t1_fields/velocity"
    assert "expected shape (2, 3, 4, 5, 2)" in issue.message and "found (2, 3, 5, 4, 2)" in issue.message


def test_float64_field(good):
    _replace(good, "t0_fields/pressure", np.zeros((B, T, NX, NY), np.float64))
    assert _strs(check_file(good)) == ["t0_fields/pressure: expected dtype float32, found float64"]


def test_nan_values_are_counted(good):
    with h5py.File(good, "r+") as f:
        a = f["t1_fields/velocity"][()]
        a[1, 2, 0, 0, 0] = np.nan
        a[0, 0, 3, 4, 1] = np.inf
        a[1, 0, 1, 1, 1] = np.nan
        f["t1_fields/velocity"][()] = a
    assert _strs(check_file(good)) == [f"t1_fields/velocity: 3 NaN/Inf values out of {B * T * NX * NY * 2}"]
    assert check_file(good, scan_values=False) == []


def test_missing_root_attribute(good):
    with h5py.File(good, "r+") as f:
        del f.attrs["dataset_name"]
        del f.attrs["grid_type"]
    assert _strs(check_file(good)) == ["/@dataset_name: missing root attribute", "/@grid_type: missing root attribute"]


def test_bad_bc_type(good):
    with h5py.File(good, "r+") as f:
        f["boundary_conditions/wall_x"].attrs["bc_type"] = "slip"
    assert _strs(check_file(good)) == [
        "boundary_conditions/wall_x/@bc_type: expected one of ('wall', 'open', 'periodic'), found 'slip'"
    ]


def test_bc_mask_shape_and_unknown_dim(good):
    _replace(good, "boundary_conditions/wall_x/mask", np.ones(NY, bool))
    assert _strs(check_file(good)) == ["boundary_conditions/wall_x/mask: expected shape (4,) (associated_dims), found (5,)"]
    with h5py.File(good, "r+") as f:
        f["boundary_conditions/wall_x"].attrs["associated_dims"] = ["z"]
    assert _strs(check_file(good)) == ["boundary_conditions/wall_x/@associated_dims: ['z'] not in spatial_dims ['x', 'y']"]


def test_mask_field_shape(good):
    _replace(good, "t0_fields/mask", np.ones((B, NX, NY), np.float32))  # attrs still say shared
    (issue,) = check_file(good)
    assert issue.where == "t0_fields/mask" and "expected shape (4, 5)" in issue.message


def test_scalars(good):
    _replace(good, "scalars/U", np.array([1.0, 2.0, 3.0], np.float32))
    assert _strs(check_file(good)) == ["scalars/U: expected shape () or (2,), found (3,)"]
    with h5py.File(good, "r+") as f:
        del f["scalars/U"]
    assert _strs(check_file(good)) == ["scalars/U: parameter listed in simulation_parameters is missing"]


def test_time_not_increasing(good):
    _replace(good, "dimensions/time", np.array([0.0, 0.2, 0.1], np.float32))
    assert _strs(check_file(good)) == ["dimensions/time: not strictly increasing"]


def test_several_problems_reported_together(good):
    with h5py.File(good, "r+") as f:
        del f.attrs["n_spatial_dims"]
        f["boundary_conditions/wall_x"].attrs["bc_type"] = "slip"
    issues = _strs(check_file(good))
    assert "/@n_spatial_dims: missing root attribute" in issues
    assert any(s.startswith("boundary_conditions/wall_x/@bc_type") for s in issues)


def test_damage_inside_never_raises(good):
    """Bytes overwritten anywhere (metadata or data): check_file reports, never raises."""
    data = bytearray(good.read_bytes())
    rng = np.random.default_rng(0)
    flagged = 0
    for offset in range(0, len(data) - 64, max(64, len(data) // 60)):
        damaged = bytearray(data)
        damaged[offset:offset + 64] = rng.bytes(64)
        good.write_bytes(bytes(damaged))
        issues = check_file(good)
        assert all(isinstance(i, Issue) for i in issues)
        flagged += bool(issues)
    assert flagged > 0

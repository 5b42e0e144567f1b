"""Fuzzing the readers: ``WellFile``, ``check_file``, ``Trajectories`` and ``Windows`` on Well files
of random shapes, then damaged: attributes and keys removed or given junk, datasets replaced by
other shapes and dtypes, and the bytes truncated, bit-flipped or zero-filled.

Every case must end in a result or in a documented sciflow error naming the file; ``check_file``
must never raise; and a file ``check_file`` passes must be read to the end by ``WellFile``.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sciflow.data.check import check_file
from sciflow.data.errors import DataError
from sciflow.data.format import write_well
from sciflow.data.reader import WellFile
from sciflow.data.trajectories import Trajectories, Windows
from tests.fuzz.harness import assert_clean, budget, corrupt, corruption, hang_guard, record

pytestmark = pytest.mark.slow  # a few seconds each at the CI budget

_TEXT = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))  # what HDF5 can store
JUNK = st.one_of(
    st.integers(-3, 10), st.floats(allow_nan=True, allow_infinity=True), st.text(_TEXT, max_size=8),
    st.booleans(), st.lists(st.integers(-2, 5), max_size=4).map(np.array),
    st.lists(st.text(_TEXT, max_size=3), min_size=1, max_size=3),
)
DTYPES = st.sampled_from([np.float32, np.float64, np.int16, np.uint8, np.bool_, np.complex64, "S4"])


@st.composite
def layout(draw: st.DrawFn) -> dict:
    """What files of one dataset share: 1-2D, 1-4 points per axis, fields, parameter count."""
    D = draw(st.integers(1, 2))
    return {"S": tuple(draw(st.integers(1, 4)) for _ in range(D)), "t0": draw(st.booleans()),
            "t1": draw(st.booleans()), "params": draw(st.integers(0, 2)), "mask": draw(st.booleans()),
            "dt": draw(st.sampled_from([0.1, 0.5]))}


@st.composite
def well_file(draw: st.DrawFn, path: Path, shared: dict | None = None) -> Path:
    """A valid Well file of random size (1-3 trajectories, 1-6 frames) on ``shared``'s layout."""
    lay = shared or draw(layout())
    S, D = lay["S"], len(lay["S"])
    B, T = draw(st.integers(1, 3)), draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    dims = ["x", "y"][:D]
    t0 = {"p": rng.normal(size=(B, T, *S))} if lay["t0"] else {}
    t1 = {"velocity": rng.normal(size=(B, T, *S, D))} if lay["t1"] or not t0 else {}
    params = {f"a{k}": rng.normal(size=B) if draw(st.booleans()) else 1.5 for k in range(lay["params"])}
    mask = rng.random(S) > 0.3 if lay["mask"] else None
    time = np.arange(T) * lay["dt"] if draw(st.integers(0, 3)) else np.cumsum(rng.random(T) + 0.1)
    write_well(path, dataset_name="fuzz", time=time,
               coords={d: np.arange(n, dtype=float) for d, n in zip(dims, S)}, t0_fields=t0, t1_fields=t1,
               params=params, mask=mask, attrs={"dt": lay["dt"]} if draw(st.booleans()) else None)
    return path


def _paths(path: Path) -> tuple[list[str], list[str]]:
    """Every group/dataset path and every dataset path of the file."""
    items: list[str] = []
    datasets: list[str] = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: (items.append(name), isinstance(obj, h5py.Dataset) and datasets.append(name)))
    return items, datasets


def _mutate(draw: st.DrawFn, path: Path) -> str:
    """One structural change inside the HDF5 file; returns what it did (for the failure report)."""
    try:
        return _mutate_open(draw, path)
    except (TypeError, ValueError) as e:  # h5py cannot store that value: no such file can exist
        return f"refused by h5py: {e}"


def _mutate_open(draw: st.DrawFn, path: Path) -> str:
    items, datasets = _paths(path)
    kind = draw(st.sampled_from(["del_root_attr", "junk_root_attr", "del_item", "reshape", "junk_attr",
                                 "del_attr"]))
    with h5py.File(path, "r+") as f:
        if kind in ("del_root_attr", "junk_root_attr"):
            key = draw(st.sampled_from(sorted(f.attrs) or ["n_trajectories"]))
            if kind == "del_root_attr":
                f.attrs.pop(key, None)
            else:
                f.attrs[key] = draw(JUNK)
            return f"{kind} {key}"
        if kind == "del_item" and items:
            key = draw(st.sampled_from(items))
            if key in f:
                del f[key]
            return f"del {key}"
        if kind == "reshape" and datasets:
            key = draw(st.sampled_from(datasets))
            old = f[key]
            attrs = dict(old.attrs)
            shape = tuple(draw(st.lists(st.integers(0, 4), max_size=5)))
            dtype = draw(DTYPES)
            del f[key]
            ds = f.create_dataset(key, data=np.zeros(shape, dtype=dtype))
            ds.attrs.update(attrs)
            return f"reshape {key} -> {shape} {dtype}"
        owners = [k for k in items if k in f]
        if owners:
            key = draw(st.sampled_from(owners))
            obj = f[key]
            if kind == "junk_attr":
                name = draw(st.sampled_from(["sample_varying", "time_varying", "dim_varying", "field_names",
                                             "spatial_dims", "bc_type", "associated_dims"]))
                obj.attrs[name] = draw(JUNK)
                return f"junk {key}/@{name}"
            if obj.attrs:
                name = draw(st.sampled_from(sorted(obj.attrs)))
                del obj.attrs[name]
                return f"del {key}/@{name}"
    return "none"


def _read_all(path: Path) -> None:
    wf = WellFile(path)
    try:
        for b in range(wf.n_trajectories):
            a = wf.read(b)
            assert a.dtype == np.float32 and a.shape == (wf.n_steps, len(wf.channel_names), *wf.spatial_shape)
            wf.params(b), wf.mask(b), wf.coords_of(b)
        wf.summary()
    finally:
        wf.close()


@budget(ci_examples=80)
@given(data=st.data())
def test_fuzz_well_file_readers(data):
    with hang_guard(), tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = data.draw(well_file(Path(tmp) / "f.hdf5"))
        for _ in range(data.draw(st.integers(0, 3))):
            _mutate(data.draw, path)
        if data.draw(st.booleans()):
            corrupt(path, data.draw(corruption()))

        issues = check_file(path)  # must never raise
        record("check_file", "ok" if not issues else "issues")
        try:
            _read_all(path)
            record("WellFile", "ok")
        except Exception as e:  # noqa: BLE001 - the rule is checked on every exception
            record("WellFile", type(e).__name__)
            assert_clean(e, str(path))
            # check_file must see every problem that stops the reader
            assert issues, f"check_file passed a file WellFile rejects: {e}"


@budget(ci_examples=40)
@given(data=st.data())
def test_fuzz_trajectories_and_windows(data):
    with hang_guard(), tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shared = data.draw(layout())
        files = [data.draw(well_file(Path(tmp) / f"f{k}.hdf5", None if data.draw(st.integers(0, 9)) == 0 else shared))
                 for k in range(data.draw(st.integers(1, 3)))]
        if data.draw(st.booleans()):
            victim = data.draw(st.sampled_from(files))
            if data.draw(st.booleans()):
                _mutate(data.draw, victim)
            else:
                corrupt(victim, data.draw(corruption()))
        present = (["p"] if shared["t0"] else []) + (["velocity"] if shared["t1"] or not shared["t0"] else [])
        fields = data.draw(st.sampled_from([None, None, present, present[::-1], present[:1], ["nope"]]))
        kw = {k: data.draw(st.integers(1, 2)) if data.draw(st.integers(0, 11)) else data.draw(st.integers(-1, 0))
              for k in ("history", "horizon", "step", "stride")}
        kw["start"] = data.draw(st.integers(0, 2)) if data.draw(st.integers(0, 11)) else -1
        try:
            tr = Trajectories(files, fields=fields)
            record("Trajectories", "ok")
        except Exception as e:  # noqa: BLE001
            record("Trajectories", type(e).__name__)
            assert_clean(e, *map(str, files), "Trajectories")
            return
        try:
            win = Windows(tr, **kw)
            for j in range(min(len(win), 4)):
                item = win[j]
                assert item["input"].shape[0] == kw["history"] and item["target"].shape[0] == kw["horizon"]
            record("Windows", "ok")
        except Exception as e:  # noqa: BLE001
            record("Windows", type(e).__name__)
            assert isinstance(e, DataError), f"undocumented {type(e).__name__}: {e}"
            assert "Windows" in str(e) or any(str(f) in str(e) for f in files), str(e)

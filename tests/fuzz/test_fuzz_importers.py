"""Fuzzing the importers: PDEBench files and CFDBench case folders with random layouts, shapes,
dtypes, missing keys, junk attributes and parameter sources, then truncated or bit-flipped.

Every case must end in a dataset whose every file passes ``check_file`` and whose card loads, or in
a documented sciflow error naming the source file or folder.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sciflow.data.card import load_card
from sciflow.data.check import check_file
from sciflow.data.importers import import_cfdbench, import_pdebench
from tests.fuzz.harness import assert_clean, budget, corrupt, corruption, hang_guard, record

pytestmark = pytest.mark.slow  # a few seconds each at the CI budget

NUMBER_DTYPES = [np.float32, np.float64, np.int32]
ANY_DTYPES = st.sampled_from([*NUMBER_DTYPES, np.float64, np.complex64, "S3", np.bool_])
_TEXT = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))


# A third of the cases are well-formed files with valid options (the success path is fuzzed too);
# the others draw each flaw with a small probability.
CLEAN = {"value": False}


def _flaw(draw: st.DrawFn, one_in: int) -> bool:
    """True with probability ``1 / one_in`` in a hostile case, never in a clean one."""
    return not CLEAN["value"] and draw(st.integers(0, one_in - 1)) == 0


def _dtype(draw: st.DrawFn):
    """Mostly numbers, sometimes something else."""
    return draw(ANY_DTYPES) if _flaw(draw, 6) else draw(st.sampled_from(NUMBER_DTYPES))


def _array(draw: st.DrawFn, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    a = rng.normal(size=shape)
    if _flaw(draw, 10) and a.size:
        a.flat[int(rng.integers(a.size))] = np.nan
    dtype = _dtype(draw)
    return a.astype(dtype) if dtype not in ("S3",) else a.astype(str).astype("S3")


def _maybe(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The intended shape, or (rarely) one axis off by one or one axis missing."""
    k = draw(st.integers(0, 11)) if not CLEAN["value"] else 11
    if k == 0 and shape:
        i = draw(st.integers(0, len(shape) - 1))
        return shape[:i] + (max(shape[i] + draw(st.sampled_from([-1, 1])), 0),) + shape[i + 1:]
    if k == 1 and shape:
        return shape[:-1]
    return shape


PARAM_VALUES = st.one_of(st.floats(-5, 5), st.integers(-3, 3), st.text(_TEXT, max_size=6),
                         st.just("sim:\n  k: 0.01\n  Du: 1E-3\n"), st.just(float("nan")),
                         st.lists(st.floats(-1, 1), min_size=1, max_size=3).map(np.array))
SOURCES = st.sampled_from(["attr:k", "attr:config:sim.k", "attr:/k", "dataset:params", "dataset:params[:, 0]",
                           "dataset:params[1]", "dataset:nu", "attr:missing", "dataset:/nu", "attr:config:nope",
                           "junk", "dataset:params[:, x]"])


@st.composite
def pdebench_file(draw: st.DrawFn, path: Path) -> Path:
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    kind = draw(st.sampled_from(["tensor", "per-field", "per-sample", "per-sample"]
                                + ([] if CLEAN["value"] else ["other"])))
    D = draw(st.integers(1, 2))
    N, T = draw(st.integers(0 if not CLEAN["value"] else 1, 4)), draw(st.integers(1 if not CLEAN["value"] else 2, 4))
    S = tuple(draw(st.integers(1, 4)) for _ in range(D))
    with h5py.File(path, "w") as f:
        if kind in ("tensor", "per-field"):
            keys = ["tensor"] if kind == "tensor" else draw(st.lists(
                st.sampled_from(["density", "pressure", "Vx", "Vy"]), min_size=1, max_size=4, unique=True))
            if kind == "per-field" and CLEAN["value"]:  # scalars, plus every velocity component or none
                keys = [k for k in keys if k in ("density", "pressure")]
                keys += ["Vx", "Vy"][:D] if draw(st.booleans()) or not keys else []
            for k in keys:
                f[k] = _array(draw, _maybe(draw, (N, T, *S)), rng)
            for d, n in zip("xy", S):
                if not _flaw(draw, 10):
                    f[f"{d}-coordinate"] = np.arange(n + (draw(st.sampled_from([1, -1])) if _flaw(draw, 8) else 0),
                                                     dtype=float)
            if not _flaw(draw, 10):
                f["t-coordinate"] = np.arange(T + (2 if _flaw(draw, 8) else draw(st.sampled_from([0, 1]))),
                                              dtype=float) * 0.1
            if draw(st.booleans()):
                f["nu"] = _array(draw, _maybe(draw, (N,)), rng)
            if draw(st.booleans()):
                f["params"] = _array(draw, _maybe(draw, (N, 2)), rng)
            if draw(st.booleans()):
                f.attrs["k"] = draw(PARAM_VALUES)
        elif kind == "per-sample":
            C = draw(st.integers(1, 2))
            for i in range(0 if _flaw(draw, 6) else max(N, 1)):
                g = f.create_group(f"{i:04d}")
                if not _flaw(draw, 12):
                    g["data"] = _array(draw, _maybe(draw, (T, *S, C)), rng)
                if not _flaw(draw, 12):
                    for d, n in zip("xy", S):
                        g[f"grid/{d}"] = np.arange(n, dtype=float)
                    g["grid/t"] = np.arange(T + draw(st.sampled_from([0, 1])), dtype=float) * 0.5
                for name in draw(st.lists(st.sampled_from(["k", "seed", "config", "Du"]), max_size=3, unique=True)):
                    g.attrs[name] = draw(PARAM_VALUES) if not CLEAN["value"] else (
                        float(rng.normal()) if name != "config" else f"sim:\n  k: {rng.normal()}\n")
                if draw(st.integers(0, 3)) == 0:
                    g["params"] = _array(draw, _maybe(draw, (2,)), rng)
        else:
            f[draw(st.sampled_from(["velocity", "u", "t0_fields"]))] = rng.normal(size=(2, T))
    return path


@budget(ci_examples=60)
@given(data=st.data())
def test_fuzz_pdebench_importer(data):
    with hang_guard(), tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CLEAN["value"] = data.draw(st.integers(0, 2)) == 0
        src = data.draw(pdebench_file(Path(tmp) / "src.h5"))
        if _flaw(data.draw, 4):
            corrupt(src, data.draw(corruption()))
        mapping = {} if CLEAN["value"] else {
            f"p{k}": s for k, s in enumerate(data.draw(st.lists(SOURCES, max_size=2)))}
        fields = None if CLEAN["value"] else data.draw(
            st.sampled_from([None, None, None, ["a"], ["a", "b"], ["velocity"], ["density", "x"]]))
        out = Path(tmp) / "out"
        clean = CLEAN["value"]
        try:
            card = import_pdebench(src, out, param_from=mapping, fields=fields, trajectories_per_file=2,
                                   auto_params=data.draw(st.booleans()), progress=False)
        except Exception as e:  # noqa: BLE001
            record("import_pdebench", type(e).__name__)
            assert not clean, f"a well-formed file was refused: {e}"
            # the file at fault, or the option at fault (a malformed source, a field name)
            assert_clean(e, str(src), *(repr(s) for s in mapping.values()), "fields")
            return
        record("import_pdebench", "ok")
        load_card(card)
        files = sorted((out / "data").rglob("*.hdf5"))
        assert files
        for p in files:
            assert check_file(p) == [], p


CASE_KEYS = ["vel_top", "velocity", "vel_in", "density", "viscosity", "height", "width", "radius", "x_min",
             "x_max", "y_min", "y_max", "barrier_height", "barrier_width", "dt"]
JSON_VALUES = st.one_of(st.floats(0.05, 2.0), st.integers(-1, 3), st.text(_TEXT, max_size=4), st.none(),
                        st.just(float("nan")), st.lists(st.integers(0, 2), max_size=2))


@st.composite
def cfdbench_folder(draw: st.DrawFn, root: Path) -> tuple[Path, str]:
    problem = draw(st.sampled_from(["cavity", "tube", "dam", "cylinder"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    T, ny, nx = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sub = root / problem / "bc"
    for c in range(draw(st.integers(1, 3))):
        case = sub / f"case{c:04d}"
        case.mkdir(parents=True)
        meta = {k: draw(st.floats(0.1, 2.0)) for k in CASE_KEYS if not _flaw(draw, 16)}
        if CLEAN["value"]:
            meta["dt"] = 0.05  # one frame spacing for the whole release
        if "x_min" in meta and problem == "cylinder":
            meta["x_min"] = -meta["x_min"]  # CFDBench stores the upstream extent as a negative number
        for k in draw(st.lists(st.sampled_from(CASE_KEYS), max_size=2)) if not CLEAN["value"] else []:
            meta[k] = draw(JSON_VALUES)
        text = draw(st.sampled_from(['{"a": ', "[1, 2]", "\udcff"])) if _flaw(draw, 10) else json.dumps(meta)
        (case / "case.json").write_bytes(text.encode("utf-8", "surrogateescape"))
        for comp in ("u", "v"):
            if not _flaw(draw, 16):
                np.save(case / f"{comp}.npy", _array(draw, _maybe(draw, (T, ny, nx)), rng))
                if _flaw(draw, 8):
                    corrupt(case / f"{comp}.npy", draw(corruption()))
    return root / problem, problem


@budget(ci_examples=40)
@given(data=st.data())
def test_fuzz_cfdbench_importer(data):
    with hang_guard(), tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CLEAN["value"] = data.draw(st.integers(0, 2)) == 0
        src, problem = data.draw(cfdbench_folder(Path(tmp) / "release"))
        out = Path(tmp) / "out"
        clean = CLEAN["value"]
        try:
            card = import_cfdbench(src, out, problem=problem, progress=False)
        except Exception as e:  # noqa: BLE001
            record("import_cfdbench", type(e).__name__)
            assert not clean, f"a well-formed release was refused: {e}"
            assert_clean(e, str(src))
            return
        record("import_cfdbench", "ok")
        load_card(card)
        for p in sorted((out / "data").rglob("*.hdf5")):
            assert check_file(p) == [], p

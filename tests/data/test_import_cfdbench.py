"""CFDBench importer on tiny fake case folders built here (the release layout, rows = y)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from sciflow.data.card import load_card
from sciflow.data.check import check_file
from sciflow.data.datamodule import SciflowData
from sciflow.data.importers import import_cfdbench
from sciflow.data.reader import DataFormatError, WellFile
from sciflow.data.trajectories import split_files

NY, NX, T = 6, 8, 7  # deliberately not square, so a missing transpose cannot pass


def _case(folder: Path, meta: dict, seed: int, hole: tuple[slice, slice] | None = None,
          frames: int = T) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(frames, NY, NX))
    v = rng.normal(size=(frames, NY, NX))
    if hole is not None:
        u[:, hole[0], hole[1]] = 0.0
        v[:, hole[0], hole[1]] = 0.0
    np.save(folder / "u.npy", u)
    np.save(folder / "v.npy", v)
    (folder / "case.json").write_text(json.dumps(meta))
    return u, v


def _cavity(root: Path, subsets: dict[str, int]) -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    out = {}
    k = 0
    for subset, n in subsets.items():
        for i in range(n):
            meta = {"case_no": i, "vel_top": 1.0 + k, "density": 1.0, "viscosity": 1e-3,
                    "height": 0.02, "width": 0.01 * (1 + i)}
            u, v = _case(root / "cavity" / subset / f"case{i:04d}", meta, seed=k)
            out[f"{subset}/case{i:04d}"] = (u, v, meta)
            k += 1
    return out


def _files_by_case(out: Path) -> dict[str, Path]:
    files = {}
    for split in ("train", "valid", "test"):
        for p in split_files(out, split):
            files[WellFile(p).attrs["sciflow_cases"][0]["case_id"]] = p
    return files


def test_cavity_problem_folder(tmp_path):
    src = _cavity(tmp_path / "src", {"bc": 4, "geo": 2})
    card_path = import_cfdbench(tmp_path / "src" / "cavity", tmp_path / "out", progress=False)
    assert card_path == tmp_path / "out" / "card.yaml"
    card = load_card(card_path)
    assert card.name == "cfdbench_cavity"
    assert card.fields == ["velocity"]
    assert card.params == ["U", "rho", "mu", "height", "width"]
    assert card.dt == pytest.approx(0.1)
    assert card.frames == {"train": T, "valid": T, "test": T}
    assert card.data_dir() == tmp_path / "out"
    files = _files_by_case(tmp_path / "out")
    assert sorted(files) == sorted(src)
    for case_id, (u, v, meta) in src.items():
        p = files[case_id]
        assert check_file(p) == []
        wf = WellFile(p)
        assert wf.spatial_dims == ["x", "y"] and wf.spatial_shape == (NX, NY)
        assert wf.channel_names == ["velocity_x", "velocity_y"]
        a = wf.read(0)  # (T, 2, nx, ny)
        # rows = y in the source: our [t, c, i, j] is the source's [t, j, i]
        np.testing.assert_allclose(a[:, 0], np.swapaxes(u, 1, 2).astype(np.float32))
        np.testing.assert_allclose(a[:, 1], np.swapaxes(v, 1, 2).astype(np.float32))
        assert a[2, 0, 5, 1] == np.float32(u[2, 1, 5])
        np.testing.assert_allclose(wf.time, np.arange(T) * 0.1, rtol=1e-6)
        assert wf.dt == pytest.approx(0.1)
        np.testing.assert_allclose(
            wf.params(0), [meta["vel_top"], meta["density"], meta["viscosity"], meta["height"], meta["width"]]
        )
        assert wf.mask(0) is None
        # cell centres over [0, width] x [0, height]
        np.testing.assert_allclose(wf.coords["x"], (np.arange(NX) + 0.5) * meta["width"] / NX, rtol=1e-6)
        np.testing.assert_allclose(wf.coords["y"], (np.arange(NY) + 0.5) * meta["height"] / NY, rtol=1e-6)
        assert wf.boundaries["top"]["bc_type"] == "wall"
    text = card_path.read_text()
    assert "CFDBench" in text and "transposed" in text


def test_split_counts_reproducible_and_seeded(tmp_path):
    _cavity(tmp_path / "src", {"bc": 10})
    src = tmp_path / "src" / "cavity" / "bc"
    import_cfdbench(src, tmp_path / "a", seed=3, progress=False)
    import_cfdbench(src, tmp_path / "b", seed=3, progress=False)
    import_cfdbench(src, tmp_path / "c", seed=4, progress=False)

    def layout(root: Path) -> dict[str, list[str]]:
        return {s: [p.name for p in split_files(root, s)] for s in ("train", "valid", "test")}

    assert layout(tmp_path / "a") == layout(tmp_path / "b")
    assert layout(tmp_path / "a") != layout(tmp_path / "c")
    assert [len(v) for v in layout(tmp_path / "a").values()] == [8, 1, 1]
    card = yaml.safe_load((tmp_path / "a" / "card.yaml").read_text())
    assert card["name"] == "cfdbench_cavity_bc"
    assert card["split"] == {"train": 0.8, "valid": 0.1, "test": 0.1, "seed": 3}
    assert card["imported_from"]["cases"] == {"train": 8, "valid": 1, "test": 1}


def test_resumable_and_moves_files_when_the_seed_changes(tmp_path):
    _cavity(tmp_path / "src", {"bc": 6})
    src, out = tmp_path / "src" / "cavity", tmp_path / "out"
    import_cfdbench(src, out, progress=False)
    files = sorted(out.glob("data/*/*.hdf5"))
    assert len(files) == 6
    stamp = {p: p.stat().st_mtime_ns for p in files}
    os.utime(files[0], ns=(1, 1))  # mark: a rewrite would reset it
    files[1].unlink()
    import_cfdbench(src, out, progress=False)
    assert files[0].stat().st_mtime_ns == 1  # existing output skipped
    assert files[1].is_file()  # missing output written again
    assert all(p.stat().st_mtime_ns == stamp[p] for p in files[2:])
    # another seed moves files between split folders instead of duplicating them
    import_cfdbench(src, out, seed=11, progress=False)
    assert len(sorted(out.glob("data/*/*.hdf5"))) == 6
    assert not list(out.rglob("*.tmp"))


def test_single_case_folder_and_stray_files(tmp_path):
    _cavity(tmp_path / "src", {"prop": 2})
    case = tmp_path / "src" / "cavity" / "prop" / "case0001"
    card = import_cfdbench(case, tmp_path / "one", progress=False)
    assert [p.name for p in split_files(tmp_path / "one", "train")] == ["cavity_prop_case0001.hdf5"]
    assert load_card(card).name == "cfdbench_cavity_prop"
    # importing something else into the same folder would mix two datasets
    with pytest.raises(FileExistsError, match="cavity_prop_case0001.hdf5"):
        import_cfdbench(tmp_path / "src" / "cavity" / "prop" / "case0000", tmp_path / "one", progress=False)


def test_cylinder_mask_params_and_dt(tmp_path):
    meta = {"vel_in": 1.0, "density": 10.0, "viscosity": 1e-3, "radius": 0.01,
            "x_min": -0.06, "x_max": 0.16, "y_min": -0.06, "y_max": 0.06}
    hole = (slice(2, 4), slice(1, 3))  # rows (y) 2..3, columns (x) 1..2
    for i in range(3):
        _case(tmp_path / "cylinder" / "geo" / f"case{i:04d}", meta, seed=i, hole=hole)
    import_cfdbench(tmp_path / "cylinder", tmp_path / "out", progress=False)
    card = load_card(tmp_path / "out" / "card.yaml")
    assert card.params == ["u_in", "rho", "mu", "diameter", "x1", "x2", "y1", "y2"]
    assert card.dt == pytest.approx(0.001)
    assert "exactly zero in every frame are solid" in card.description
    for p in _files_by_case(tmp_path / "out").values():
        assert check_file(p) == []
        wf = WellFile(p)
        expected = np.ones((NX, NY), bool)
        expected[1:3, 2:4] = False  # x-first
        np.testing.assert_array_equal(wf.mask(0), expected)
        assert wf.boundaries["cylinder"]["bc_type"] == "wall"
        assert wf.boundaries["left"]["bc_type"] == "open"
        with h5py.File(p) as f:
            np.testing.assert_array_equal(f["boundary_conditions/cylinder/mask"][()], ~expected)
        np.testing.assert_allclose(wf.params(0), [1.0, 10.0, 1e-3, 0.02, 0.06, 0.16, 0.06, 0.06])
        np.testing.assert_allclose(wf.time[:3], [0, 0.001, 0.002], atol=1e-9)
        assert wf.coords["x"][0] == pytest.approx(-0.06 + 0.5 * 0.22 / NX)


def test_tube_time_step_from_case_json_or_assumed(tmp_path):
    meta = {"vel_in": 1.0, "density": 100.0, "viscosity": 0.1, "height": 0.1, "width": 1.0}
    _case(tmp_path / "tube" / "bc" / "case0000", meta, seed=0)
    _case(tmp_path / "tube2" / "tube" / "bc" / "case0000", {**meta, "dt": 0.05}, seed=0)
    card = load_card(import_cfdbench(tmp_path / "tube", tmp_path / "o1", progress=False))
    assert card.dt == pytest.approx(0.1) and "assumed" in card.description
    assert card.params == ["u_in", "rho", "mu", "diameter", "length"]
    card = load_card(import_cfdbench(tmp_path / "tube2" / "tube", tmp_path / "o2", progress=False))
    assert card.dt == pytest.approx(0.05) and "'dt'" in card.description


def test_missing_key_names_file_and_key(tmp_path):
    _case(tmp_path / "dam" / "bc" / "case0000",
          {"velocity": 1.0, "density": 100.0, "viscosity": 0.1, "barrier_height": 0.1}, seed=0)
    with pytest.raises(DataFormatError, match=r"case0000/case\.json: missing key 'barrier_width'"):
        import_cfdbench(tmp_path / "dam", tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "data").exists()  # nothing written before every case.json passed


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no CFDBench case folder"):
        import_cfdbench(tmp_path, tmp_path / "out", progress=False)
    _case(tmp_path / "mystery" / "case0000", {}, seed=0)
    with pytest.raises(ValueError, match="cannot tell the CFDBench problem"):
        import_cfdbench(tmp_path / "mystery", tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="split"):
        import_cfdbench(tmp_path / "mystery", tmp_path / "out", split=(0.5, 0.1, 0.1), problem="cavity")


def test_nan_case_skipped_with_warning(tmp_path):
    meta = {"vel_top": 1.0, "density": 1.0, "viscosity": 1e-3, "height": 0.01, "width": 0.01}
    for i in range(3):
        _case(tmp_path / "cavity" / "bc" / f"case{i:04d}", meta, seed=i)
    u = np.load(tmp_path / "cavity/bc/case0002/u.npy")
    u[1, 2, 3] = np.nan
    np.save(tmp_path / "cavity/bc/case0002/u.npy", u)
    with pytest.warns(UserWarning, match="1 NaN/Inf"):
        card = import_cfdbench(tmp_path / "cavity", tmp_path / "out", progress=False)
    assert len(list((tmp_path / "out").glob("data/*/*.hdf5"))) == 2
    assert yaml.safe_load(card.read_text())["skipped"][0]["case"] == "bc/case0002"


def test_datamodule_trains_on_the_import(tmp_path):
    _cavity(tmp_path / "src", {"bc": 5})
    card = import_cfdbench(tmp_path / "src" / "cavity", tmp_path / "out", progress=False)
    dm = SciflowData(card=str(card), batch_size=4, rollout_steps=3)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["input"].shape == (4, 1, 2, NX, NY)
    assert batch["params"].shape == (4, 5)
    assert dm.spec["channels"] == ["velocity_x", "velocity_y"]
    assert dm.spec["dt"] == pytest.approx(0.1)
    assert (tmp_path / "out" / "stats.yaml").is_file()

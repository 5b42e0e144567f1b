"""Sharded generation: n shards of a sweep are disjoint, cover it, and give the same files as one
run, with no coordination between them; `data merge` checks completeness and gathers particle
parts."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from sciflow.cli import main
from sciflow.data.card import card_from_dict
from sciflow.solvers.sweep import SweepIncomplete, generate, merge, parse_shard, plan, shard_jobs

CARDS = Path(__file__).resolve().parents[2] / "datasets"


def _grid_card(root: Path):
    raw = yaml.safe_load((CARDS / "cavity.yaml").read_text())
    raw.update(grid=[8, 8], frames=2, path=str(root))
    raw["subsets"] = {"bc": {"vary": {"U": {"linspace": [1.0, 2.0, 5]}}, "cases": 5}}
    return card_from_dict(raw)


def _particle_card(root: Path):
    raw = yaml.safe_load((CARDS / "sph_tgv.yaml").read_text())
    raw.update(frames=3, path=str(root))
    raw["solver"] = {**raw["solver"], "dx": 0.125}
    raw["subsets"]["sweep"]["cases"] = 4
    return card_from_dict(raw)


def _attrs(obj: h5py.HLObject) -> dict[str, object]:
    # a case's solver timing is the only thing two runs may write differently
    def norm(v: object) -> object:
        v = np.asarray(v).tolist()
        v = v.decode() if isinstance(v, bytes) else v
        return re.sub(r'"(wall|cpu)_seconds": [^,}]+', "", v) if isinstance(v, str) else v

    return {k: norm(v) for k, v in obj.attrs.items()}


def _contents(path: Path) -> dict[str, object]:
    """Every dataset's values and every attribute of an HDF5 file, by name."""
    out: dict[str, object] = {}
    with h5py.File(path, "r") as f:
        out["/attrs"] = _attrs(f)

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
            out[name + "/attrs"] = _attrs(obj)

        f.visititems(visit)
    return out


def _assert_same_files(a: Path, b: Path, pattern: str) -> None:
    fa = sorted(p.relative_to(a) for p in a.glob(pattern))
    fb = sorted(p.relative_to(b) for p in b.glob(pattern))
    assert fa and fa == fb
    for rel in fa:
        ca, cb = _contents(a / rel), _contents(b / rel)
        assert ca.keys() == cb.keys(), rel
        for key in ca:
            if isinstance(ca[key], np.ndarray):
                np.testing.assert_array_equal(ca[key], cb[key], err_msg=f"{rel}:{key}")
            else:
                assert ca[key] == cb[key], f"{rel}:{key}"


def test_shards_are_disjoint_round_robin_and_cover_the_plan(tmp_path):
    jobs = plan(_grid_card(tmp_path), "bc", 5)
    parts = [shard_jobs(jobs, (i, 3)) for i in range(3)]
    assert [len(p) for p in parts] == [2, 2, 1]
    paths = [j.path for p in parts for j in p]
    assert len(set(paths)) == len(paths) == 5 and set(paths) == {j.path for j in jobs}
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "-1/2", "1/0", "1", "a/b", "1/2/3"):
        with pytest.raises(ValueError, match=r"shard"):
            parse_shard(bad)


def test_three_grid_shards_write_the_same_files_as_one_run(tmp_path, capsys):
    card = _grid_card(tmp_path / "sharded")  # one card (its hash is written), two folders
    one = generate(card, "bc", 5, root=tmp_path / "one", progress=False)
    with pytest.raises(SystemExit):  # a bad shard is refused by the command line, with its value
        main(["data", "generate", "cavity", "--card", _write(card, tmp_path), "--shard", "3/3"])
    assert "shard 3/3" in capsys.readouterr().err
    written = []
    for i in (2, 0):  # any order, each on its own
        written += generate(card, "bc", 5, progress=False, shard=(i, 3))
    with pytest.raises(SweepIncomplete, match=r"2 of 5 files .* missing[\s\S]*\(shard 1/3\)"):
        merge(card, "bc", 5, shards=3, progress=False)
    written += generate(card, "bc", 5, progress=False, shard=(1, 3))
    assert sorted(written) == sorted(merge(card, "bc", 5, progress=False))
    assert [p.relative_to(tmp_path / "sharded") for p in sorted(written)] == [
        p.relative_to(tmp_path / "one") for p in sorted(one)
    ]
    _assert_same_files(tmp_path / "one", tmp_path / "sharded", "data/*/*.hdf5")


def test_three_particle_shards_and_merge_give_the_dataset_of_one_run(tmp_path, capsys):
    card = _particle_card(tmp_path / "sharded")
    generate(card, "all", 4, root=tmp_path / "one", progress=False)
    path = _write(card, tmp_path)
    for i in range(3):
        assert main(["data", "generate", "sph_tgv", "--card", path, "--cases", "4", "--shard", f"{i}/3"]) == 0
    assert "`sciflow data merge sph_tgv` (same --subset, --cases, --out) checks the sweep and writes the split" \
        in capsys.readouterr().out
    assert not (tmp_path / "sharded" / "metadata.json").exists()  # the shards do not gather
    assert main(["data", "merge", "sph_tgv", "--card", path, "--cases", "5", "--shards", "3"]) == 1
    assert "1 of 5 files of the sweep are missing" in capsys.readouterr().err  # another selection
    assert main(["data", "merge", "sph_tgv", "--card", path, "--cases", "4"]) == 0
    assert "sweep complete: 4 trajectories" in capsys.readouterr().out
    _assert_same_files(tmp_path / "one", tmp_path / "sharded", "**/*.h5")
    meta = [(tmp_path / d / "metadata.json").read_text() for d in ("one", "sharded")]
    assert meta[0] == meta[1]


def _write(card, tmp_path: Path) -> str:
    path = tmp_path / f"{card.name}.yaml"
    path.write_text(card.text)
    return str(path)


def test_a_shard_removes_only_its_own_leftovers(tmp_path):
    card = _grid_card(tmp_path)
    jobs = plan(card, "bc", 5)
    mine, theirs = shard_jobs(jobs, (0, 2))[0].path, shard_jobs(jobs, (1, 2))[0].path
    debris = []
    for path in (mine, theirs):  # a killed writer's file, and one another shard is writing now
        path.parent.mkdir(parents=True, exist_ok=True)
        debris.append(path.parent / f".{path.name}.abc123.tmp")
        debris[-1].write_bytes(b"partial")
    generate(card, "bc", 5, progress=False, shard=(0, 2))
    assert not debris[0].exists() and debris[1].exists()

"""Generating particle datasets from cards: part files per case, assembled split files and
metadata, resumable and grown sweeps, a failing case named while the others finish, and the
`sciflow data` commands on the result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from sciflow.cli import main
from sciflow.data.card import card_from_dict
from sciflow.data.particles import (
    ParticleData,
    ParticleTrajectories,
    check_particle_path,
    read_metadata,
)
from sciflow.solvers import sweep as sweep_module
from sciflow.solvers.sweep import CaseFailed, generate, plan

CARDS = Path(__file__).resolve().parents[2] / "datasets"


def _tiny(root: Path, name: str = "sph_tgv", n: int = 4):
    raw = yaml.safe_load((CARDS / f"{name}.yaml").read_text())
    raw.update(frames=4, path=str(root))
    raw["solver"] = {**raw["solver"], "dx": 0.125 if name == "sph_tgv" else raw["solver"]["dx"] * 8}
    raw["subsets"]["sweep"]["cases"] = n
    return card_from_dict(raw)


def test_a_particle_sweep_writes_parts_then_a_lagrangebench_folder_and_resumes(tmp_path):
    card = _tiny(tmp_path / "tgv")
    parts = generate(card, "all", 3, workers=1, progress=False)
    assert [p.parent.name for p in parts] == ["train", "valid", "test"]
    assert all(p.parent.parent.name == "cases" and p.is_file() for p in parts)
    meta = read_metadata(tmp_path / "tgv")
    assert meta["num_trajs_train"] == meta["num_trajs_valid"] == meta["num_trajs_test"] == 1
    assert meta["sequence_length_train"] == 3 and meta["parameter_names"] == ["Re", "U"]
    assert meta["sciflow"]["card"] == "sph_tgv" and meta["sciflow"]["card_hash"] == card.hash
    assert meta["dt"] * meta["write_every"] == pytest.approx(0.04) and meta["periodic_boundary_conditions"] == [True, True]
    report = check_particle_path(tmp_path / "tgv")
    assert report.ok, report.issues
    tr = ParticleTrajectories(tmp_path / "tgv", "train")
    assert tr.case_attrs(0)["case_id"] == parts[0].stem and tr.read(0).shape == (4, 64, 2)
    # the case's parameters are the ones the card chose for it
    (spec,) = [c for c in card.cases("all", 3) if c.split == "train"]
    np.testing.assert_allclose(tr.params(0), [spec.params["Re"], spec.params["U"]])
    stamps = {p: p.stat().st_mtime_ns for p in [*parts, *(tmp_path / "tgv").glob("*.h5")]}
    generate(card, "all", 3, workers=1, progress=False)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing redone, nothing rewritten
    grown = generate(card, "all", 4, workers=2, progress=False)  # one more case, in a worker process
    assert set(parts) < set(grown)
    assert {p: p.stat().st_mtime_ns for p in parts} == {p: stamps[p] for p in parts}
    meta = read_metadata(tmp_path / "tgv")
    assert len(grown) == 4 and sum(meta[f"num_trajs_{s}"] for s in ("train", "valid", "test")) == 4


def test_a_failing_particle_case_is_named_and_the_others_are_assembled(tmp_path, monkeypatch):
    card = _tiny(tmp_path / "tgv")
    jobs = plan(card, "all", 4)
    bad = next(j for j in jobs if j.cases[0].split == "test").cases[0]
    problem = sweep_module.get_problem(card.problem)
    real = type(problem).simulate

    def flaky(self, params, **kwargs):
        if params == bad.params:
            raise FloatingPointError("SPH: flow speed 9 passed 0.5 c0")
        return real(self, params, **kwargs)

    monkeypatch.setattr(type(problem), "simulate", flaky)
    with pytest.raises(CaseFailed, match=rf"1 of 4 cases failed:\n.*case {bad.case_id} .*flow speed 9"):
        generate(card, "all", 4, workers=1, progress=False)
    meta = read_metadata(tmp_path / "tgv")
    assert sum(meta[f"num_trajs_{s}"] for s in ("train", "valid", "test")) == 3
    monkeypatch.undo()
    generate(card, "all", 4, workers=1, progress=False)  # the rerun adds the missing case
    assert sum(read_metadata(tmp_path / "tgv")[f"num_trajs_{s}"] for s in ("train", "valid", "test")) == 4


@pytest.mark.parametrize("name", sorted(p.stem for p in CARDS.glob("sph_*.yaml")))
def test_every_particle_card_generates_a_dataset_that_passes_check(name, tmp_path):
    card = _tiny(tmp_path / name, name, 3)
    assert card.kind == "particles" and card.problem == name
    generate(card, "all", 3, workers=1, progress=False)
    report = check_particle_path(tmp_path / name)
    assert report.ok and not report.notes, report.issues + report.notes
    meta = read_metadata(tmp_path / name)
    assert meta["parameter_names"] == card.params and meta["sequence_length_train"] == 3
    assert meta["sciflow"]["card"] == name
    if name == "sph_tgv":  # the DataModule reads a generated dataset through its card
        path = tmp_path / "card.yaml"
        path.write_text(card.text)
        dm = ParticleData(card=str(path), history=1, rollout_steps=2, batch_size=2)
        assert dm.root == tmp_path / name and dm.spec["card_hash"] == card.hash
        assert dm.spec["params"] == ["Re", "U"] and dm.spec["dt"] == pytest.approx(0.04)
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
        assert batch["position"].shape == (2, 2 * 64, 2) and batch["params"].shape == (2, 2)


def test_data_commands_dispatch_particle_datasets(tmp_path, capsys):
    card = _tiny(tmp_path / "dam", "sph_dam", 3)
    generate(card, "all", 3, workers=1, progress=False)
    assert main(["data", "check", str(tmp_path / "dam")]) == 0
    out = capsys.readouterr().out
    assert "ok   " in out and "(particle dataset)" in out
    assert main(["data", "inspect", str(tmp_path / "dam")]) == 0
    out = capsys.readouterr().out
    assert '"law": "gravity"' in out and "train.h5" in out and "aspect" in out
    (tmp_path / "dam" / "force.py").write_text("raise SystemExit('ran')\n")
    with h5py_file(tmp_path / "dam" / "test.h5") as f:
        f["00000/position"][1, 0] = [5.0, 0.1]
    assert main(["data", "check", str(tmp_path / "dam")]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "test.h5: 00000/position: 1 positions outside the bounds" in out
    assert "note: force.py: Python code in a data folder is never imported or run" in out


def h5py_file(path):
    import h5py

    return h5py.File(path, "r+")

"""The sweep driver: resumable (finished files are not redone), a failing case names itself and
does not stop the others."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sciflow.data.card import card_from_dict
from sciflow.data.check import check_file
from sciflow.solvers import sweep as sweep_module
from sciflow.solvers.sweep import CaseFailed, generate, plan

CARD = Path(__file__).resolve().parents[2] / "datasets" / "cavity.yaml"


def _tiny_card(root: Path):
    raw = yaml.safe_load(CARD.read_text())
    raw.update(grid=[8, 8], frames=2, path=str(root))
    raw["subsets"] = {"bc": {"vary": {"U": {"linspace": [1.0, 2.0, 4]}}, "cases": 4}}
    return card_from_dict(raw)


def test_a_rerun_redoes_nothing_and_a_grown_sweep_only_adds(tmp_path):
    card = _tiny_card(tmp_path)
    files = generate(card, "bc", 3, workers=1, progress=False)
    assert all(f.is_file() and check_file(f) == [] for f in files)
    stamps = {f: f.stat().st_mtime_ns for f in files}
    assert generate(card, "bc", 3, workers=1, progress=False) == files
    assert {f: f.stat().st_mtime_ns for f in files} == stamps  # untouched
    grown = generate(card, "bc", 4, workers=1, progress=False)
    assert set(files) < set(grown) and {f: f.stat().st_mtime_ns for f in files} == stamps


def test_a_failing_case_is_named_and_the_others_still_finish(tmp_path, monkeypatch):
    card = _tiny_card(tmp_path)
    jobs = plan(card, "bc", 4)
    bad = jobs[1].cases[0]
    problem = sweep_module.get_problem(card.problem)
    real = type(problem).simulate

    def flaky(self, params, **kwargs):
        if params == bad.params:
            raise FloatingPointError("velocity became non-finite")
        return real(self, params, **kwargs)

    monkeypatch.setattr(type(problem), "simulate", flaky)
    with pytest.raises(CaseFailed, match=rf"1 of 4 cases failed:\n.*case {bad.case_id} .*non-finite"):
        generate(card, "bc", 4, workers=1, progress=False)
    done = [j.path.exists() for j in jobs]
    assert done == [True, False, True, True]

"""The dataset cards in ``datasets/``: each loads, its sweeps list cases within its limits and the
solver's validated range, its parameters are the solver's, and one tiny case per problem goes
through the sweep driver into a file that passes ``check_file``."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml

from sciflow.data.card import SPLITS, CardError, card_from_dict, load_card
from sciflow.data.check import check_file
from sciflow.data.reader import WellFile
from sciflow.solvers import PROBLEMS, get_problem
from sciflow.solvers.sweep import generate

DATASETS = Path(__file__).resolve().parents[1] / "datasets"
CARDS = sorted(p.stem for p in DATASETS.glob("*.yaml"))
# grid cards generated here; particle cards (kind: particles) in tests/solvers/test_particle_sweep.py
GENERATED = [c for c in CARDS if load_card(DATASETS / f"{c}.yaml").problem in PROBLEMS
             and load_card(DATASETS / f"{c}.yaml").kind == "grid"]

# Smallest useful stand-ins for the tiny generation: output grid, and base values that keep the
# solver's internal grid small where the problem fixes it by physics (the cylinder resolves its
# diameter with 20 cells, so a wide cylinder in the same channel means few cells; Re stays 250;
# its 30 convective times of warm-up, about 2000 steps, still cost some 8 CPU seconds).
TINY_GRID = {1: [32], 2: [16, 16]}
TINY_BASE = {"cylinder": {"diameter": 0.05, "mu": 2.0e-3}}


def _raw(name: str) -> dict:
    return yaml.safe_load((DATASETS / f"{name}.yaml").read_text())


def test_cards_are_found():
    assert {"cavity", "tube", "cylinder", "ks"} <= set(CARDS)


@pytest.mark.parametrize("name", CARDS)
def test_card_loads_and_default_sweep_respects_limits(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unknown top-level key (a typo) would only warn
        card = load_card(DATASETS / f"{name}.yaml")
    assert card.name == name
    assert card.fields and card.params and card.subsets
    cases = card.cases("all")
    assert len({c.case_id for c in cases}) == len(cases)
    for c in cases:
        assert list(c.params) == card.params
        values = {**c.params, **card.derived_values(c.params)}
        for key, (lo, hi) in card.limits.items():
            assert lo <= values[key] <= hi, (c.case_id, key, values[key])
    # every split is populated, so `sciflow fit` can validate and test on the default sweep
    assert {c.split for c in cases} == set(SPLITS)


@pytest.mark.parametrize("name", GENERATED)
def test_card_matches_its_solver(name):
    card = load_card(DATASETS / f"{name}.yaml")
    problem = get_problem(card.problem)
    assert card.params == problem.param_names
    lo, hi = getattr(problem, "validated_reynolds", (0.0, float("inf")))
    if "Re" in card.derived:
        # the card's limits keep every case of every pool inside the solver's validated range
        for subset, spec in card.subsets.items():
            for case_id, params, _ in card._sweep(subset, spec):
                re = card.derived_values(params)["Re"]
                assert lo <= re <= hi, (subset, case_id, re)


@pytest.mark.parametrize(("name", "total"), [("cavity", 56), ("tube", 56), ("cylinder", 36), ("dam", 56)])
def test_default_sweeps_are_trainable_and_cpu_sized(name, total):
    # sizes chosen so that the default sweep trains a baseline and generates in < 15 min on 2 cores
    card = load_card(DATASETS / f"{name}.yaml")
    cases = card.cases("all")
    assert len(cases) == total
    assert {c.subset for c in cases} == {"bc", "prop", "geo"}
    assert sum(c.split == "train" for c in cases) >= 0.7 * total


def test_channel_cards_state_their_flux_law():
    for name, value in (("tube", "u_in * diameter"), ("cylinder", "u_in * (y1 + y2)")):
        laws = {law["kind"]: law for law in load_card(DATASETS / f"{name}.yaml").conservation}
        assert laws["cross_section_flux"]["value"] == value
        assert "divergence_free" in laws


def test_limits_that_exclude_every_case_name_the_subset():
    raw = _raw("tube")
    raw["limits"] = {"Re": [1000, 2000]}
    card = card_from_dict(raw)
    with pytest.raises(CardError, match="'bc'"):
        card.cases("bc")


@pytest.mark.slow
@pytest.mark.parametrize("name", GENERATED)
def test_tiny_generation_passes_check_file(name, tmp_path):
    raw = _raw(name)
    n_dims = len(raw["grid"])
    raw.update(grid=TINY_GRID[n_dims], frames=3, path=str(tmp_path / name))
    raw["base"] = {**raw["base"], **TINY_BASE.get(name, {})}
    raw["subsets"] = {"smoke": {"vary": {}, "cases": 1}}
    card = card_from_dict(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # outside the validated Reynolds range would warn
        files = generate(card, "smoke", 1, workers=1, progress=False)
    assert len(files) == 1 and files[0].is_file()
    assert check_file(files[0]) == []
    wf = WellFile(files[0])
    assert wf.n_steps == 3 and list(wf.spatial_shape) == TINY_GRID[n_dims]
    assert wf.param_names == card.params
    assert wf.dt == pytest.approx(card.dt)

"""Fuzzing dataset cards: random YAML text, and valid cards with keys dropped, given junk values or
added. ``load_card`` and every sweep a loaded card defines must end in a result or a
``CardError`` naming the card."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from sciflow.data.card import load_card
from tests.fuzz.harness import assert_clean, budget, hang_guard, record

pytestmark = pytest.mark.slow  # a few seconds each at the CI budget

_TEXT = st.characters(blacklist_categories=("Cs",))
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 40) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(_TEXT, max_size=6)
    | st.sampled_from(["U * 2", "U / mu", "mu ** 1e6", "(", "__import__('os')", "U +", "1 / 0", "-U"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(_TEXT, max_size=5), children, max_size=3),
    max_leaves=8,
)
KEYS = ["name", "fields", "params", "path", "description", "problem", "grid", "dt", "frames", "time_step",
        "periodic", "base", "subsets", "derived", "limits", "split", "seed", "trajectories_per_file",
        "conservation", "typo_key"]


def _valid() -> dict:
    return {
        "name": "box", "description": "fuzzed", "problem": "cavity", "fields": ["velocity", "pressure"],
        "params": ["U", "mu"], "grid": [8, 8], "dt": 0.1, "frames": {"train": 4, "valid": 4, "test": 4},
        "base": {"U": 1.0, "mu": 0.01},
        "subsets": {"bc": {"vary": {"U": {"linspace": [0.5, 2.0, 5]}}},
                    "prop": {"vary": {"mu": {"loguniform": [0.001, 0.1]}}, "cases": 4},
                    "grid": {"vary": {"U": [1, 2], "mu": {"logspace": [0.01, 0.1, 3]}}}},
        "derived": {"Re": "U / mu"}, "limits": {"Re": [10, 1000]},
        "split": {"train": 0.8, "valid": 0.1, "test": 0.1, "seed": 3},
    }


@st.composite
def card_text(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 4)) == 0:
        return draw(st.text(_TEXT, max_size=60))
    card = _valid()
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(KEYS))
        action = draw(st.sampled_from(["drop", "junk", "deep"]))
        if action == "drop":
            card.pop(key, None)
        elif action == "junk" or not isinstance(card.get(key), dict):
            card[key] = draw(VALUES)
        else:  # change one entry inside a mapping (a sweep, a base value, a split fraction...)
            inner = card[key]
            sub = draw(st.sampled_from(sorted(inner) or ["x"]))
            inner[sub] = draw(VALUES)
    return yaml.safe_dump(card, sort_keys=False, allow_unicode=True)


@budget(ci_examples=150)
@given(text=card_text(), picks=st.lists(st.one_of(st.none(), st.integers(0, 6)), min_size=1, max_size=3))
def test_fuzz_cards(text, picks):
    with hang_guard(), tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / "card.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            card = load_card(path)
        except Exception as e:  # noqa: BLE001
            record("load_card", type(e).__name__)
            assert_clean(e, str(path))
            return
        record("load_card", "ok")
        for subset in [*card.subsets, "all", "no_such_subset"]:
            for n in picks:
                try:
                    cases = card.cases(subset, n)
                    assert n is None or len(cases) == n
                    for c in cases:
                        assert c.split in ("train", "valid", "test") and set(c.params) == set(card.params)
                    record("DatasetCard.cases", "ok")
                except Exception as e:  # noqa: BLE001
                    record("DatasetCard.cases", type(e).__name__)
                    assert_clean(e, f"card {card.name!r}")

"""Dataset cards: sweeps, derived values and limits, splits, stable ids, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from sciflow.data.card import CardError, card_from_dict, load_card


def _card(tmp_path: Path, **over) -> Path:
    raw = {
        "name": "box", "fields": ["velocity", "pressure"], "params": ["U", "rho", "mu", "width"],
        "problem": "cavity", "grid": [16, 16], "dt": 0.1, "frames": {"train": 10, "valid": 20, "test": 20},
        "base": {"U": 1.0, "rho": 1.0, "mu": 0.01, "width": 1.0},
        "derived": {"Re": "rho * U * width / mu"},
        "subsets": {
            "bc": {"vary": {"U": [0.5, 1.0, 2.0]}},
            "prop": {"vary": {"rho": {"linspace": [1, 3, 3]}, "mu": {"logspace": [0.001, 0.1, 3]}}},
            "rand": {"vary": {"U": {"uniform": [1.0, 2.0]}}, "cases": 5},
        },
    }
    raw.update(over)
    path = tmp_path / "box.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_sweeps(tmp_path):
    card = load_card(_card(tmp_path))
    bc = card.cases("bc")
    assert [c.params["U"] for c in bc] == [0.5, 1.0, 2.0]
    assert all(c.params["rho"] == 1.0 and c.params["mu"] == 0.01 for c in bc)
    assert [c.case_id for c in bc] == ["bc_00000", "bc_00001", "bc_00002"]
    prop = card.cases("prop")
    pairs = [(c.params["rho"], c.params["mu"]) for c in prop]
    # cartesian product in the order the card lists the axes; logspace is geometric
    np.testing.assert_allclose(pairs, [(r, m) for r in (1.0, 2.0, 3.0) for m in (0.001, 0.01, 0.1)])
    assert list(prop[0].params) == ["U", "rho", "mu", "width"]  # the parameter vector's order


def test_uniform_sweep_is_seeded(tmp_path):
    a = [c.params["U"] for c in load_card(_card(tmp_path)).cases("rand")]
    b = [c.params["U"] for c in load_card(_card(tmp_path)).cases("rand")]
    c = [c.params["U"] for c in load_card(_card(tmp_path, split={"seed": 1})).cases("rand")]
    assert len(a) == 5 and a == b and a != c
    assert all(1.0 <= u <= 2.0 for u in a + c)
    assert len(set(a)) == 5
    seeds = [x.seed for x in load_card(_card(tmp_path)).cases("rand")]
    assert len(set(seeds)) == 5


def test_loguniform_sweep(tmp_path):
    path = _card(tmp_path, subsets={"r": {"vary": {"mu": {"loguniform": [1e-4, 1e-1]}}, "cases": 50}})
    mus = np.array([c.params["mu"] for c in load_card(path).cases("r")])
    assert mus.min() >= 1e-4 and mus.max() <= 1e-1
    assert np.median(np.log10(mus)) == pytest.approx(-2.5, abs=0.5)  # uniform in log, not in value


def test_derived_values_and_limits(tmp_path):
    card = load_card(_card(tmp_path))
    assert card.derived_values({"U": 2.0, "rho": 3.0, "mu": 0.5, "width": 0.25}) == {"Re": 3.0}
    limited = load_card(_card(tmp_path, limits={"Re": [60, 150]}))
    # bc: Re = U / 0.01 = 50, 100, 200 -> only U = 1 stays
    assert [c.params["U"] for c in limited.cases("bc")] == [1.0]
    limited = load_card(_card(tmp_path, limits={"U": [0.7, 5]}))
    assert [c.params["U"] for c in limited.cases("bc")] == [1.0, 2.0]


def test_split_proportions_and_reproducibility(tmp_path):
    path = _card(tmp_path, subsets={"big": {"vary": {"U": {"linspace": [1, 100, 100]}}}})
    cases = load_card(path).cases("big")
    counts = {s: sum(c.split == s for c in cases) for s in ("train", "valid", "test")}
    # a low-discrepancy assignment: every prefix of the nested order is within 2 of the fractions
    for split, want in (("train", 80), ("valid", 10), ("test", 10)):
        assert abs(counts[split] - want) <= 2, counts
    again = load_card(path).cases("big")
    assert [c.split for c in cases] == [c.split for c in again]
    other = load_card(_card(tmp_path, subsets={"big": {"vary": {"U": {"linspace": [1, 100, 100]}}}},
                            split={"seed": 9})).cases("big")
    assert [c.split for c in cases] != [c.split for c in other]
    path = _card(tmp_path, subsets={"big": {"vary": {"U": {"linspace": [1, 100, 100]}}}},
                 split={"train": 0.6, "valid": 0.2, "test": 0.2})
    counts = {s: sum(c.split == s for c in load_card(path).cases("big")) for s in ("train", "valid", "test")}
    for split, want in (("train", 60), ("valid", 20), ("test", 20)):
        assert abs(counts[split] - want) <= 2, counts
    small = load_card(_card(tmp_path)).cases("bc")
    assert sorted(c.split for c in small) == ["test", "train", "valid"]  # >= 1 each from 3 cases


def test_case_ids_stable_when_n_grows(tmp_path):
    card = load_card(_card(tmp_path, subsets={"s": {"vary": {"U": {"linspace": [1, 17, 17]}}}}))
    few, more = card.cases("s", 5), card.cases("s", 9)
    assert len(few) == 5 and len(more) == 9
    by_id = {c.case_id: c for c in more}
    for c in few:  # the 5 spread cases are among the 9, unchanged, split included
        assert c.case_id in by_id
        assert by_id[c.case_id].params == c.params and by_id[c.case_id].seed == c.seed
        assert by_id[c.case_id].split == c.split
    values = sorted(c.params["U"] for c in few)
    assert values[0] == 1.0 and values[-1] >= 13.0  # spread over the range, not bunched
    everything = {c.case_id: c for c in card.cases("s")}
    for c in card.cases("s", 6):
        assert everything[c.case_id].params == c.params and everything[c.case_id].seed == c.seed
    both = card.cases("all", 4)
    assert len(both) == 4
    with pytest.raises(CardError, match="has 17 cases within its limits, 18 asked for"):
        card.cases("s", 18)


def test_paths_frames_and_hash(tmp_path, monkeypatch):
    path = _card(tmp_path, frames=30, path="../store/box")
    card = load_card(path)
    assert card.frames == {"train": 30, "valid": 30, "test": 30}
    assert card.data_dir() == (tmp_path.parent / "store" / "box")
    assert card.data_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("SCIFLOW_DATA", str(tmp_path / "env"))
    assert card.data_dir() == tmp_path / "env" / "box"
    assert card.hash == load_card(path).hash
    assert card.hash != load_card(_card(tmp_path, frames=31)).hash
    assert card.extra == {}
    assert load_card(_card(tmp_path, notes="anything")).extra == {"notes": "anything"}
    monkeypatch.setenv("SCIFLOW_CARDS", str(tmp_path))
    assert load_card("box").name == "box"  # by name, from $SCIFLOW_CARDS


def test_errors_name_card_and_key(tmp_path):
    def err(match: str, **over):
        with pytest.raises(CardError, match=match):
            card = load_card(_card(tmp_path, **over))
            for s in card.subsets:
                card.cases(s)

    err(r"box\.yaml.*split fractions", split={"train": 0.9, "valid": 0.1, "test": 0.1})
    err(r"card 'box': subsets\.bc\.vary names unknown parameter\(s\) \['Re'\]", subsets={"bc": {"vary": {"Re": [1]}}})
    err(r"subsets\.bc\.vary\.U: unknown sweep 'gauss'", subsets={"bc": {"vary": {"U": {"gauss": [0, 1]}}}})
    err(r"subsets\.bc\.vary\.U: expected a list or a one-key mapping", subsets={"bc": {"vary": {"U": 3}}})
    err(r"parameter\(s\) \['width'\] have no base value", base={"U": 1.0, "rho": 1.0, "mu": 0.01})
    err(r"limits\.Ma names neither a parameter nor a derived value", limits={"Ma": [0, 1]})
    err(r"derived\.Re: unknown name 'nu'", derived={"Re": "U / nu"})
    err(r"derived\.Re: only arithmetic", derived={"Re": "__import__('os').getcwd()"})
    err(r"derived\.Re: cannot parse", derived={"Re": "U *"})
    card = load_card(_card(tmp_path))
    with pytest.raises(CardError, match=r"card 'box': unknown subset 'geo'"):
        card.cases("geo")
    with pytest.raises(CardError, match=r"card 'box': no frame count for split 'extra'"):
        card.frames_for("extra")
    with pytest.raises(CardError, match=r"card: missing key 'fields'"):
        card_from_dict({"name": "x"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(CardError, match=r"bad\.yaml: not valid YAML"):
        load_card(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(CardError, match=r"bad\.yaml: expected a mapping"):
        load_card(bad)
    with pytest.raises(CardError, match=r"no dataset card 'no_such_card'"):
        load_card("no_such_card")

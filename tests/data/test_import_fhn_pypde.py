"""A third-party file end to end: FitzHugh-Nagumo from py-pde in PDEBench's per-sample layout, with
a per-trajectory parameter ``k`` (``tests/fixtures/make_fhn_pdebench.py`` wrote it), imported
through the command line, checked, and read by the datamodule with ``k`` in its spec."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from sciflow.cli import main
from sciflow.data.datamodule import SciflowData
from sciflow.data.importers import import_pdebench
from sciflow.data.reader import WellFile
from sciflow.data.trajectories import split_files

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "fhn_pdebench_32.h5"


def _source():
    """Per group: data (T, X, Y, 2) and k, read straight from the fixture."""
    with h5py.File(FIXTURE) as f:
        return {int(g): (f[g]["data"][()], float(f[g].attrs["k"])) for g in f}


def _by_group(out: Path) -> dict[int, tuple[WellFile, int]]:
    found = {}
    for s in ("train", "valid", "test"):
        for p in split_files(out, s):
            wf = WellFile(p)
            for b, case in enumerate(wf.attrs["sciflow_cases"]):
                found[int(case["source_group"])] = (wf, b)
    return found


def test_fhn_imports_with_its_parameter(tmp_path, capsys):
    out = tmp_path / "fhn"
    assert main(["data", "import", "pdebench", str(FIXTURE), "--out", str(out), "--fields", "u", "v",
                 "--trajectories-per-file", "2"]) == 0
    printed = capsys.readouterr().out
    # what was found and what was used, said on the terminal
    assert "k            used" in printed
    assert "seed         NOT used" in printed and "seed or an index" in printed
    assert "config       NOT used" in printed and "attr:config:PATH" in printed and "sim.k" in printed

    card = yaml.safe_load((out / "card.yaml").read_text())
    assert card["params"] == ["k"] and card["fields"] == ["u", "v"] and card["grid"] == [32, 32]
    assert "dropped" not in card["description"]  # grid/t has one time per frame: nothing was dropped
    assert card["imported_from"]["time_coordinate_dropped"] is False
    used = {r["name"]: r for r in card["imported_from"]["parameters"]}
    assert used["k"]["used"] and used["k"]["source"] == "attr:k" and not used["seed"]["used"]

    source = _source()
    found = _by_group(out)
    assert sorted(found) == sorted(source)
    for g, (wf, b) in found.items():
        data, k = source[g]
        assert wf.params(b).tolist() == [pytest.approx(k, rel=1e-6)]
        a = wf.read(b)
        np.testing.assert_array_equal(a[:, 0], data[..., 0])
        np.testing.assert_array_equal(a[:, 1], data[..., 1])
    assert main(["data", "check", str(out)]) == 0

    dm = SciflowData(card=str(out / "card.yaml"), batch_size=2, rollout_steps=3)
    spec = dm.spec
    assert spec["params"] == ["k"] and spec["channels"] == ["u", "v"]
    train_k = [source[g][1] for g, (wf, _) in found.items() if wf.path.parent.name == "train"]
    assert spec["stats"]["params_mean"] == [pytest.approx(np.mean(train_k), rel=1e-6)]
    assert spec["stats"]["params_std"][0] == pytest.approx(np.std(train_k), rel=1e-5)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["params"].shape == (2, 1)


def test_parameter_from_the_config_text_equals_the_attribute(tmp_path, capsys):
    """PDEBench's own generator stores its YAML config per group; attr:config:sim.k reads it."""
    card = import_pdebench(FIXTURE, tmp_path / "a", param_from={"k": "attr:config:sim.k"},
                           auto_params=False, progress=False)
    raw = yaml.safe_load(card.read_text())
    assert raw["params"] == ["k"]
    recs = {(r["name"], r["source"], r["used"]) for r in raw["imported_from"]["parameters"]}
    assert ("k", "attr:config:sim.k", True) in recs
    assert ("k", "attr:k", False) in recs and ("seed", "attr:seed", False) in recs  # found, reported, unused
    source = _source()
    for g, (wf, b) in _by_group(tmp_path / "a").items():
        assert wf.params(b)[0] == pytest.approx(source[g][1], rel=1e-6)
    # the same parameter under another name, and the automatic one switched off: only ours is used
    card = import_pdebench(FIXTURE, tmp_path / "b", param_from={"kappa": "attr:k"}, auto_params=False,
                           progress=False)
    assert yaml.safe_load(card.read_text())["params"] == ["kappa"]


def test_inspect_on_the_raw_file_says_import_it_first(capsys):
    assert main(["data", "inspect", str(FIXTURE)]) == 1
    err = capsys.readouterr().err
    assert "PDEBench file (per-sample layout)" in err and "sciflow data import pdebench" in err
    assert "Traceback" not in err
    with pytest.raises(Exception, match="import it first"):
        main(["data", "inspect", "--debug", str(FIXTURE)])

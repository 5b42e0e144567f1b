"""The `sciflow` command's data subcommands, run in-process through `main`."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import yaml

from sciflow.cli import build_parser, main


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("fit", "validate", "test", "data", "rollout", "demo"):
        assert cmd in out


def test_check_passes_good_files_and_fails_bad_ones(synthetic_card, tmp_path, capsys):
    root = synthetic_card.parent
    assert main(["data", "check", str(root)]) == 0
    assert "10 of 10 files ok" in capsys.readouterr().out
    bad = root / "data" / "train" / "case_0000.hdf5"
    with h5py.File(bad, "r+") as f:
        f["t0_fields/pressure"][0, 3, 2, 2] = np.nan
    assert main(["data", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "t0_fields/pressure" in out and "1 NaN/Inf" in out
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"not an hdf5 file at all")
    assert main(["data", "check", str(junk)]) == 1
    assert "not a readable HDF5 file" in capsys.readouterr().out


def test_inspect_prints_fields_params_and_time(synthetic_card, capsys):
    f = synthetic_card.parent / "data" / "train" / "case_0000.hdf5"
    assert main(["data", "inspect", str(f)]) == 0
    out = capsys.readouterr().out
    for text in ("t1_fields/velocity", "velocity_x", "speed", "12 frames", "fluid fraction"):
        assert text in out


def test_generate_ks_through_the_command(tmp_path, capsys):
    card = yaml.safe_load(open("datasets/ks.yaml"))
    card["frames"] = {"train": 12, "valid": 12, "test": 12}
    card["subsets"]["sines"]["cases"] = 6
    card["trajectories_per_file"] = 4
    card["path"] = "ksdata"
    path = tmp_path / "ks.yaml"
    path.write_text(yaml.safe_dump(card))
    assert main(["data", "generate", "ks", "--card", str(path), "--cases", "6"]) == 0
    files = sorted((tmp_path / "ksdata" / "data").rglob("*.hdf5"))
    assert {f.parent.name for f in files} == {"train", "valid", "test"}
    assert main(["data", "check", str(tmp_path / "ksdata")]) == 0
    # rerunning finds every file done and simulates nothing
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert main(["data", "generate", "ks", "--card", str(path), "--cases", "6"]) == 0
    assert [f.stat().st_mtime_ns for f in files] == mtimes


def test_import_param_must_be_name_value(tmp_path):
    args = build_parser().parse_args(["data", "import", "pdebench", "x.h5", "--out", str(tmp_path), "--param", "beta"])
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        args.fn(args)

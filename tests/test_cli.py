"""The `sciflow` command's data subcommands, run in-process through `main`."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import yaml

from sciflow.cli import build_parser, main
from sciflow.data.card import available_cards


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


def test_rollout_command_writes_netcdf_and_plots(synthetic_card, tmp_path, capsys):
    import json

    import lightning as L
    import xarray as xr

    from sciflow.data.datamodule import SciflowData
    from sciflow.surrogate import Surrogate

    dm = SciflowData(str(synthetic_card), batch_size=8, rollout_steps=3)
    model = Surrogate({"class_path": "fno", "init_args": {"width": 8, "modes": 4, "n_layers": 1}},
                      data_spec=dm.spec)
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, dm)
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    out = tmp_path / "r.nc"
    assert main(["rollout", "--ckpt", str(ckpt), "--data", str(synthetic_card), "--steps", "4",
                 "--trajectories", "1", "--samples", "2", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 4 and summary["trajectories"] == 1
    ds = xr.open_dataset(out)
    assert ds.sizes["trajectory"] == 1 and ds.sizes["time"] == 5  # t = 0 and 4 steps
    assert (tmp_path / "r_fields.png").stat().st_size > 0 and (tmp_path / "r_errors.png").stat().st_size > 0


def test_generate_help_lists_every_card_in_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["data", "generate", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    listing = out[out.index("available cards:"):].splitlines()[1:]
    names = [line.split()[0] for line in listing if line.strip()]
    assert names == sorted(available_cards())  # every shipped card generates
    assert any("Lid-driven cavity; 64x64, fields velocity, pressure" in line for line in listing)


def test_data_commands_print_one_clean_error_and_debug_shows_the_traceback(tmp_path, capsys):
    missing = tmp_path / "nope.hdf5"
    cases = [
        (["data", "inspect", str(missing)], f"{missing}: no such file"),
        (["data", "generate", "no_such_card"], "no dataset card 'no_such_card'"),
        (["data", "import", "pdebench", str(missing), "--out", str(tmp_path / "o")], f"{missing}: no such file"),
        (["data", "import", "pdebench", str(missing), "--out", str(tmp_path / "o"), "--param-from", "k=column:3"],
         "parameter source 'column:3'"),
    ]
    for argv, text in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert f"sciflow data {argv[1]}: error: " in err and text in err and "Traceback" not in err, err
    from sciflow.data.errors import DataNotFoundError

    with pytest.raises(DataNotFoundError, match="no such file"):
        main(["data", "inspect", "--debug", str(missing)])
    # a CFDBench folder handed to inspect says what it is
    (tmp_path / "cavity" / "bc" / "case0000").mkdir(parents=True)
    (tmp_path / "cavity" / "bc" / "case0000" / "case.json").write_text("{}")
    assert main(["data", "inspect", str(tmp_path / "cavity")]) == 1
    assert "CFDBench folder" in capsys.readouterr().err

"""`sciflow fit` and `sciflow rollout` on particle data, in-process through `main`."""

import pytest
import xarray as xr
import yaml

from sciflow.cli import main
from sciflow.cli_train import data_kind
from tests.synthetic_particles import make_particle_dataset


def test_data_kind_from_configs_and_overrides(tmp_path, synthetic_card):
    root = make_particle_dataset(tmp_path / "disc")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"root": str(root)}}))
    assert data_kind(["--config", str(cfg)]) == "particles"
    assert data_kind([f"--config={cfg}", "--data.card", str(synthetic_card)]) == "grid"
    assert data_kind(["--data.root", str(tmp_path)]) == "grid"  # no metadata.json there


@pytest.mark.slow
def test_fit_then_rollout_particle_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # LightningCLI saves its config.yaml in the working directory
    root = make_particle_dataset(tmp_path / "disc")
    ckpts = tmp_path / "ckpts"
    cfg = {
        "model": {"operator": {"class_path": "gns", "init_args": {"width": 16, "message_passing_steps": 2}},
                  "lr": 3e-3, "ema_decay": 0.9},
        "data": {"root": str(root), "history": 3, "rollout_steps": 4, "batch_size": 2},
        "trainer": {"max_steps": 6, "logger": False, "enable_progress_bar": False, "val_check_interval": 3},
        "checkpoint": {"dirpath": str(ckpts)},
    }
    path = tmp_path / "particles.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["fit", "--config", str(path)]) == 0
    assert (ckpts / "last.ckpt").is_file() and (ckpts / "best.ckpt").is_file()

    out = tmp_path / "roll" / "disc.nc"
    assert main(["rollout", "--ckpt", str(ckpts / "last.ckpt"), "--ckpt", str(ckpts / "best.ckpt"),
                 "--root", str(root), "--steps", "6", "--out", str(out), "--members"]) == 0
    ds = xr.open_dataset(out, engine="h5netcdf")
    assert ds["mean"].shape[:2] == (2, 7) and ds["members"].shape[0] == 2
    assert {"mse5", "sinkhorn", "e_kin_mse"} <= set(ds.attrs)
    assert (out.parent / "disc_frames.png").is_file() and (out.parent / "disc_errors.png").is_file()
    ds.close()
    with pytest.raises(SystemExit, match="--data.card or --data.root"):
        main(["rollout", "--ckpt", str(ckpts / "last.ckpt")])
    with pytest.raises(SystemExit, match="--compile default works on grid checkpoints"):
        main(["rollout", "--ckpt", str(ckpts / "last.ckpt"), "--root", str(root), "--compile", "default"])

"""``run_rollout`` end to end: checkpoints + dataset card -> netCDF results, plots and a summary."""

from __future__ import annotations

import warnings

import lightning as L
import numpy as np
import pytest
import torch
import xarray as xr
import yaml

from sciflow.data.datamodule import SciflowData
from sciflow.data.format import write_well
from sciflow.evaluate import CardMismatchWarning, load_ensemble, run_rollout
from sciflow.results import read_results
from sciflow.surrogate import Surrogate
from tests.synthetic import make_dataset

TINY_FNO = {"class_path": "fno", "init_args": {"width": 8, "modes": 4, "n_layers": 1}}
NOISY = {"class_path": "tests.test_rollout.NoisyStepper", "init_args": {"noise": 0.05}}


def save_checkpoint(model: Surrogate, path) -> str:
    """What Lightning writes, minus the trainer state: enough for ``Surrogate.load``."""
    ckpt = {"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}
    model.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A synthetic 2D dataset (4 train, 1 valid, 2 test trajectories of 12 frames) and a
    checkpoint trained on it for 40 steps with Lightning (about 2 s)."""
    root = tmp_path_factory.mktemp("evaluate")
    card = make_dataset(root / "synthetic", n=(4, 1, 2))
    dm = SciflowData(str(card), batch_size=8)
    torch.manual_seed(0)
    model = Surrogate(TINY_FNO, data_spec=dm.spec, lr=1e-2)
    trainer = L.Trainer(
        max_steps=40,
        limit_val_batches=0,
        enable_checkpointing=False,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, dm)
    trained = root / "trained.ckpt"
    trainer.save_checkpoint(trained)
    return {"card": str(card), "root": root, "ckpt": str(trained), "spec": dm.spec}


def test_end_to_end_trained_checkpoint(data, tmp_path):
    out = tmp_path / "run" / "rollout.nc"
    ds, summary = run_rollout([data["ckpt"]], data["card"], out=out, progress=False)
    assert out.is_file()
    for name in ("rollout_fields.png", "rollout_errors.png"):
        assert (out.parent / name).stat().st_size > 5_000
    assert dict(ds.sizes) == {
        "trajectory": 2,
        "time": 12,
        "channel": 3,
        "x": 16,
        "y": 16,
        "member": 1,
        "param": 2,
    }
    assert ds.channel.values.tolist() == ["velocity_x", "velocity_y", "pressure"]
    np.testing.assert_allclose(ds.time.values, np.arange(12) * 0.1)
    # truth is the test split itself; t = 0 of the prediction is its first frame
    traj = SciflowData(data["card"]).trajectories("test")
    for b in range(2):
        np.testing.assert_array_equal(ds.truth.isel(trajectory=b).values, traj.read(b))
        np.testing.assert_array_equal(ds.mask.isel(trajectory=b).values, traj.mask(b))
        np.testing.assert_allclose(ds.params.isel(trajectory=b).values, traj.params(b))
    np.testing.assert_array_equal(ds["mean"].isel(time=0).values, ds.truth.isel(time=0).values)
    assert float(ds["std"].max()) == 0.0
    assert ds.attrs["checkpoints"] == [data["ckpt"]] and ds.attrs["card"] == "synthetic"
    assert ds.attrs["card_hash"] == data["spec"]["card_hash"]
    # training helped (an untrained model scores about 1.1 on the first step)
    assert 0 < summary["nmse_step1"] < 0.9
    assert (
        summary["steps"] == 11
        and summary["trajectories"] == 2
        and summary["stopped_trajectories"] == 0
    )
    xr.testing.assert_identical(read_results(out), ds)


def test_members_are_models_times_samples_of_stochastic_models(data, tmp_path):
    """A deterministic model contributes one member whatever --samples says; a stochastic one
    its samples. The file records which member came from which model and sample, and the
    ensemble scores count exactly the distinct members."""
    torch.manual_seed(1)
    noisy = save_checkpoint(
        Surrogate(TINY_FNO, stepper=NOISY, data_spec=data["spec"]), tmp_path / "noisy.ckpt"
    )
    ckpts = [data["ckpt"], noisy]
    kw = {"samples": 2, "steps": 3, "keep_members": True, "plots": False, "progress": False}
    ds, summary = run_rollout(ckpts, data["card"], out=tmp_path / "a.nc", seed=3, **kw)
    again, _ = run_rollout(ckpts, data["card"], out=tmp_path / "b.nc", seed=3, **kw)
    other, _ = run_rollout(ckpts, data["card"], out=tmp_path / "c.nc", seed=4, **kw)
    assert ds.sizes["member"] == 3 and summary["members"] == 3
    assert ds.member_model.values.tolist() == [0, 1, 1]
    assert ds.member_sample.values.tolist() == [0, 0, 1]
    m = ds.members.isel(time=-1).values
    assert np.abs(m[1] - m[2]).max() > 1e-3  # stochastic model: samples differ
    np.testing.assert_array_equal(again.members.values, ds.members.values)
    assert np.abs(other.members.isel(time=-1).values[1:] - m[1:]).max() > 1e-3
    np.testing.assert_array_equal(other.members.isel(time=-1).values[0], m[0])
    # the ensemble statistics are those of the three distinct members
    members = ds.members.isel(time=-1)
    np.testing.assert_allclose(ds["mean"].isel(time=-1), members.mean("member"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ds["std"].isel(time=-1), members.std("member", ddof=1), rtol=1e-4, atol=1e-6)
    assert {"crps_mean", "spread_skill", "sample_decorrelation_time_0.8"} <= set(summary)
    assert not list(tmp_path.glob("*.png"))


def test_samples_of_a_deterministic_model_are_one_member(data, tmp_path):
    kw = {"steps": 2, "plots": False, "progress": False}
    with pytest.warns(UserWarning, match="deterministic: each contributes one member"):
        ds, summary = run_rollout([data["ckpt"]], data["card"], samples=8, out=tmp_path / "a.nc", **kw)
    one, _ = run_rollout([data["ckpt"]], data["card"], out=tmp_path / "b.nc", **kw)
    assert ds.sizes["member"] == 1 and summary["members"] == 1 and "crps" not in ds
    xr.testing.assert_identical(ds.drop_attrs(), one.drop_attrs())


def test_time_step_history_start_and_selection(data, tmp_path):
    spec = SciflowData(data["card"], history=2, time_step=2).spec
    ckpt = save_checkpoint(Surrogate(TINY_FNO, data_spec=spec), tmp_path / "h2.ckpt")
    ds, _ = run_rollout(
        [ckpt],
        data["card"],
        trajectories=[1],
        start=1,
        out=tmp_path / "r.nc",
        plots=False,
        progress=False,
    )
    # history frames 1 and 3; t = 0 is frame 3; steps of two frames up to frame 11
    traj = SciflowData(data["card"]).trajectories("test")
    assert ds.trajectory.values.tolist() == [1] and ds.sizes["time"] == 5
    np.testing.assert_allclose(ds.time.values, [0.0, 0.2, 0.4, 0.6, 0.8])
    np.testing.assert_array_equal(ds.truth.isel(trajectory=0).values, traj.read(1, 3, 12, 2))
    assert ds.attrs["time_step_frames"] == 2 and ds.attrs["start_frame"] == 1
    with pytest.raises(
        ValueError, match=r"5 steps of 2 frames from frame 3 do not fit trajectories \[0, 1\]"
    ):
        run_rollout(
            [ckpt],
            data["card"],
            start=1,
            steps=5,
            out=tmp_path / "x.nc",
            plots=False,
            progress=False,
        )
    with pytest.raises(ValueError, match=r"trajectories \[7\] out of range"):
        run_rollout(
            [ckpt],
            data["card"],
            trajectories=[7],
            out=tmp_path / "x.nc",
            plots=False,
            progress=False,
        )


def test_trajectory_batches_match_one_batch(data, tmp_path):
    kw = {"plots": False, "progress": False, "steps": 4}
    whole, _ = run_rollout([data["ckpt"]], data["card"], out=tmp_path / "a.nc", **kw)
    split, _ = run_rollout([data["ckpt"]], data["card"], out=tmp_path / "b.nc", batch_size=1, **kw)
    # float32 FFTs round differently for other batch sizes (max difference here about 5e-7)
    xr.testing.assert_allclose(whole, split, rtol=1e-4, atol=1e-5)


def test_mismatched_checkpoints(data, tmp_path):
    ckpt = torch.load(data["ckpt"], weights_only=True)
    ckpt["hyper_parameters"]["data_spec"]["dt"] = 0.2
    other_dt = tmp_path / "dt.ckpt"
    torch.save(ckpt, other_dt)
    with pytest.raises(ValueError, match=rf"{other_dt}: dt 0.2 differs from .*0.1"):
        load_ensemble([data["ckpt"], str(other_dt)])
    ckpt = torch.load(data["ckpt"], weights_only=True)
    ckpt["hyper_parameters"]["data_spec"]["card_hash"] = "0" * 64
    old_card = tmp_path / "card.ckpt"
    torch.save(ckpt, old_card)
    with pytest.warns(CardMismatchWarning, match="different version of card"):
        run_rollout(
            [str(old_card)],
            data["card"],
            steps=1,
            out=tmp_path / "r.nc",
            plots=False,
            progress=False,
        )
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_ensemble([str(tmp_path / "missing.ckpt")])


def _write_1d(root, n_traj=2, nx=32, frames=8):
    x = (np.arange(nx) + 0.5) / nx
    t = np.arange(frames) * 0.5
    for split in ("train", "valid", "test"):
        for j in range(n_traj):
            c = 0.5 + 0.5 * j
            u = np.sin(2 * np.pi * (x[None] - c * t[:, None]))
            write_well(
                root / "data" / split / f"case_{j}.hdf5",
                dataset_name="wave1d",
                time=t,
                coords={"x": x},
                t0_fields={"u": u[None]},
                params={"c": c},
                attrs={"dt": 0.5},
            )
    card = root / "card.yaml"
    card.write_text(
        yaml.safe_dump(
            {
                "name": "wave1d",
                "path": str(root),
                "fields": ["u"],
                "params": ["c"],
                "dt": 0.5,
                "frames": frames,
                "periodic": True,
            }
        )
    )
    return str(card)


def test_one_dimensional_end_to_end(tmp_path):
    card = _write_1d(tmp_path / "wave1d")
    spec = SciflowData(card).spec
    ckpt = save_checkpoint(Surrogate(TINY_FNO, data_spec=spec), tmp_path / "m.ckpt")
    ds, summary = run_rollout([ckpt], card, samples=1, out=tmp_path / "w.nc", progress=False)
    assert ds["mean"].dims == ("trajectory", "time", "channel", "x") and ds.sizes["time"] == 8
    for name in ("w_fields.png", "w_errors.png", "w_spacetime.png"):
        assert (tmp_path / name).stat().st_size > 5_000
    assert summary["steps"] == 7


def test_spread_correction_fitted_on_valid_and_applied_to_test(data, tmp_path):
    """The correction fitted on the validation split's rollout rescales the test rollout's members
    about an unchanged mean (std by the step's factor) and is recorded; a correction shorter than
    the rollout, or one applied to a single member, is refused naming the file."""
    from sciflow.spread_correction import SpreadCorrection, fit_spread_correction

    torch.manual_seed(1)
    noisy = save_checkpoint(Surrogate(TINY_FNO, stepper=NOISY, data_spec=data["spec"]), tmp_path / "noisy.ckpt")
    kw = {"samples": 3, "steps": 4, "plots": False, "progress": False}
    valid, _ = run_rollout([noisy], data["card"], split="valid", out=tmp_path / "valid.nc", seed=1, **kw)
    corr = fit_spread_correction(valid, window=3)
    valid.close()
    path = corr.save(tmp_path / "spread.json")
    plain, _ = run_rollout([noisy], data["card"], out=tmp_path / "plain.nc", seed=0, **kw)
    fixed, _ = run_rollout([noisy], data["card"], out=tmp_path / "fixed.nc", seed=0, spread_correction=path, **kw)
    np.testing.assert_allclose(fixed["mean"].values, plain["mean"].values, rtol=1e-5, atol=1e-6)
    f = corr.factors[None, :5, None, None, None]
    np.testing.assert_allclose(fixed["std"].values, plain["std"].values * f, rtol=1e-4, atol=1e-6)
    assert fixed.attrs["spread_correction"] == str(path) and plain.attrs["spread_correction"] == ""
    short = SpreadCorrection(corr.factors[:3], members=3).save(tmp_path / "short.json")
    with pytest.raises(ValueError, match="short.json: covers 2 steps, the rollout has 4"):
        run_rollout([noisy], data["card"], out=tmp_path / "x.nc", spread_correction=short, **kw)
    with pytest.raises(ValueError, match="two or more members"):
        run_rollout([data["ckpt"]], data["card"], out=tmp_path / "y.nc", spread_correction=path,
                    steps=4, plots=False, progress=False)

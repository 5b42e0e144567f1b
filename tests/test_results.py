"""The results collector, netCDF round trip and summary, on hand-made steps with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import xarray as xr

from sciflow.results import RolloutCollector, read_results, summarize, write_results
from sciflow.rollout import Step

X = np.linspace(0.0, 1.0, 8)
Y = np.linspace(0.0, 2.0, 6)


def _truth(B=2, steps=3, C=2, S=(8, 6), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, steps + 1, C, *S, generator=g, dtype=torch.float64).float()


def _collector(truth, M=1, **kw):
    B, T, C = truth.shape[:3]
    S = truth.shape[3:]
    coords = {"x": X[: S[0]], "y": Y[: S[1]]} if len(S) == 2 else {"x": X[: S[0]]}
    return RolloutCollector(
        truth[:, 0],
        steps=T - 1,
        dt=0.5,
        channels=[f"c{i}" for i in range(C)],
        coords=coords,
        n_members=M,
        truth=truth,
        **kw,
    )


def _feed(col, members_fn, steps, alive_fn=None):
    for k in range(1, steps + 1):
        m = members_fn(k)
        alive = torch.ones(m.shape[:2], dtype=torch.bool) if alive_fn is None else alive_fn(k)
        col.update(Step(index=k, time=0.5 * k, members=m, alive=alive))


def test_dataset_layout():
    truth = _truth()
    mask = np.ones((2, 8, 6), bool)
    mask[:, 2:4, 1:3] = False
    col = _collector(
        truth,
        M=4,
        samples=2,
        mask=mask,
        params=np.array([[1.0, 2.0], [3.0, 4.0]]),
        param_names=["Re", "U"],
        trajectories=[5, 9],
        keep_members=True,
        attrs={"card": "synthetic", "seed": 3},
    )
    _feed(col, lambda k: truth[:, k].unsqueeze(0).repeat(4, 1, 1, 1, 1), 3)
    ds = col.dataset()
    assert dict(ds.sizes) == {
        "trajectory": 2,
        "time": 4,
        "channel": 2,
        "x": 8,
        "y": 6,
        "member": 4,
        "param": 2,
        "coverage_level": 2,
        "probability": 19,
        "rank": 5,
    }
    np.testing.assert_allclose(ds.time.values, [0.0, 0.5, 1.0, 1.5])
    assert ds.step.values.tolist() == [0, 1, 2, 3] and ds.step.dims == ("time",)
    assert ds.trajectory.values.tolist() == [5, 9]
    assert ds.channel.values.tolist() == ["c0", "c1"]
    np.testing.assert_array_equal(ds.x.values, X)
    np.testing.assert_array_equal(ds.y.values, Y)
    assert ds.member_model.values.tolist() == [0, 0, 1, 1]
    assert ds.member_sample.values.tolist() == [0, 1, 0, 1]
    assert ds.param.values.tolist() == ["Re", "U"]
    for name in ("truth", "mean", "std"):
        assert ds[name].dims == ("trajectory", "time", "channel", "x", "y")
    assert ds.members.dims == ("member", "trajectory", "time", "channel", "x", "y")
    assert ds.alive.dims == ("member", "trajectory", "time") and bool(ds.alive.all())
    assert ds.mask.dims == ("trajectory", "x", "y") and ds.params.dims == ("trajectory", "param")
    for name in (
        "nmse",
        "nrmse",
        "vrmse",
        "correlation",
        "mae",
        "nmse_copy",
        "crps",
        "spread",
        "skill",
        "spread_skill",
        "sample_correlation",
    ):
        assert ds[name].dims == ("trajectory", "time"), name
    assert ds.coverage.dims == ds.interval_width.dims == ("trajectory", "time", "coverage_level")
    assert ds.coverage_level.values.tolist() == [0.5, 0.9]
    assert ds.reliability.dims == ("trajectory", "time", "probability")
    assert ds.rank_histogram.dims == ("trajectory", "time", "rank") and ds["rank"].values.tolist() == [0, 1, 2, 3, 4]
    assert ds.attrs["card"] == "synthetic" and ds.attrs["seed"] == 3 and ds.attrs["steps"] == 3
    assert ds.attrs["dt"] == 0.5 and ds.attrs["n_members"] == 4 and "sciflow_version" in ds.attrs
    # perfect members: zero error, zero spread, correlation one
    np.testing.assert_allclose(ds.nmse.values, 0.0, atol=1e-12)
    np.testing.assert_allclose(ds.correlation.values, 1.0, atol=1e-9)
    np.testing.assert_allclose(ds.crps.values, 0.0, atol=1e-9)


def test_deterministic_members_have_zero_std_and_equal_mean():
    truth = _truth()
    pred = truth + 0.3
    col = _collector(truth, M=3, keep_members=True)
    _feed(col, lambda k: pred[:, k].unsqueeze(0).expand(3, -1, -1, -1, -1), 3)
    ds = col.dataset()
    assert float(abs(ds["std"]).max()) == 0.0
    for m in range(3):
        xr.testing.assert_equal(ds.members.isel(member=m, drop=True), ds["mean"])
    np.testing.assert_allclose(
        ds["mean"].isel(time=slice(1, None)).values, pred[:, 1:].numpy(), rtol=1e-6
    )
    # t = 0 holds the initial state
    np.testing.assert_array_equal(ds["mean"].isel(time=0).values, truth[:, 0].numpy())


def test_single_member_has_no_ensemble_scores_and_zero_std():
    truth = _truth()
    col = _collector(truth, M=1)
    _feed(col, lambda k: truth[:, k].unsqueeze(0) * 2, 3)
    ds = col.dataset()
    assert "crps" not in ds and "spread_skill" not in ds and "members" not in ds
    assert float(abs(ds["std"]).max()) == 0.0


def test_scores_against_closed_forms():
    truth = torch.ones(1, 3, 1, 8, 6) * 2.0
    truth[..., ::2, :] = -2.0  # a non-constant field so that correlation is defined
    col = _collector(truth, M=2)
    # members truth/2 +- 1: mean truth/2, unbiased std sqrt(2), nmse 1/4, correlation 1
    _feed(col, lambda k: torch.stack([truth[:, k] / 2 + 1, truth[:, k] / 2 - 1]), 2)
    ds = col.dataset()
    later = ds.isel(time=slice(1, None))
    np.testing.assert_allclose(later["std"].values, math.sqrt(2.0), rtol=1e-6)
    np.testing.assert_allclose(later.nmse.values, 0.25)
    np.testing.assert_allclose(later.nrmse.values, 0.5)
    np.testing.assert_allclose(later.correlation.values, 1.0)
    # spread^2 = (M + 1) / M * var = 1.5 * 2 = 3; skill^2 = mse = 1
    np.testing.assert_allclose(later.spread.values, math.sqrt(3.0))
    np.testing.assert_allclose(later.skill.values, 1.0)
    np.testing.assert_allclose(later.spread_skill.values, math.sqrt(3.0))
    # fair CRPS, |y| = 2: members at y/2 +- 1 are 0 and 2 away -> mean 1; spread term 2 / 2 = 1 -> 0
    np.testing.assert_allclose(later.crps.values, 0.0, atol=1e-12)


def test_mask_excludes_solid_cells_from_scores():
    truth = torch.ones(1, 2, 1, 8, 6)
    mask = np.ones((1, 8, 6), bool)
    mask[0, :4] = False
    pred = truth.clone()
    pred[..., :4, :] = 100.0  # wrong only where solid
    col = _collector(truth, M=1, mask=mask)
    _feed(col, lambda k: pred[:, k].unsqueeze(0), 1)
    assert col.dataset().nmse.isel(time=1).values.tolist() == [0.0]


def test_stopped_members_are_left_out():
    truth = _truth(B=2, steps=2)
    good = truth + 0.1

    def members_fn(k):
        return torch.stack(
            [good[:, k], good[:, k] + 0.2, torch.full_like(good[:, k], float("nan"))]
        )

    def alive_fn(k):
        return torch.tensor([[True, True], [True, True], [False, False]])

    col = _collector(truth, M=3, keep_members=True)
    _feed(col, members_fn, 2, alive_fn)
    ds = col.dataset()
    np.testing.assert_allclose(
        ds["mean"].isel(time=2).values, (good[:, 2] + 0.1).numpy(), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(ds["std"].isel(time=2).values, 0.2 / math.sqrt(2), rtol=1e-4)
    assert np.isfinite(ds.crps.values).all() and np.isfinite(ds.nmse.values).all()
    assert ds.alive.isel(time=2).values.tolist() == [[True, True], [True, True], [False, False]]
    # every member of trajectory 1 stopped: its statistics are NaN, trajectory 0 unaffected
    col = _collector(truth, M=2)
    _feed(
        col,
        lambda k: torch.stack([good[:, k], good[:, k]]),
        2,
        lambda k: torch.tensor([[True, False], [True, False]]),
    )
    ds = col.dataset()
    assert np.isnan(ds["mean"].isel(trajectory=1, time=1).values).all()
    assert (
        np.isnan(ds.nmse.isel(trajectory=1, time=1))
        and np.isfinite(ds.nmse.isel(trajectory=0)).all()
    )


def test_chunked_updates_fill_the_batch():
    truth = _truth(B=3, steps=2)
    col = _collector(truth, M=1)
    for b in (slice(0, 2), slice(2, 3)):
        for k in (1, 2):
            col.update(
                Step(
                    k,
                    0.5 * k,
                    truth[b, k].unsqueeze(0),
                    torch.ones(1, b.stop - b.start, dtype=torch.bool),
                ),
                batch=b,
            )
    np.testing.assert_array_equal(col.dataset()["mean"].values, truth.numpy())


def test_netcdf_round_trip(tmp_path):
    truth = _truth()
    col = _collector(
        truth,
        M=2,
        keep_members=True,
        mask=np.ones((2, 8, 6), bool),
        params=np.ones((2, 1)),
        param_names=["Re"],
        attrs={
            "checkpoints": ["a.ckpt"],
            "card": "synthetic",
            "card_hash": "abc",
            "seed": 0,
            "projected": False,
            "note": None,
            "blowup": 1e3,
        },
    )
    g = torch.Generator().manual_seed(1)
    _feed(col, lambda k: truth[:, k] + 0.1 * torch.randn(2, *truth[:, k].shape, generator=g), 3)
    ds = col.dataset()
    path = write_results(ds, tmp_path / "sub" / "r.nc")
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == [
        "r.nc"
    ]  # no temp file left
    back = read_results(path)
    xr.testing.assert_identical(back, ds)
    assert back.attrs == ds.attrs
    assert back.attrs["checkpoints"] == ["a.ckpt"] and back.attrs["projected"] is False
    assert back.alive.dtype == bool and back.mask.dtype == bool


def test_failed_write_leaves_nothing(tmp_path):
    truth = _truth(steps=1)
    col = _collector(truth, attrs={"bad": object()})
    _feed(col, lambda k: truth[:, k].unsqueeze(0), 1)
    with pytest.raises(ValueError, match="attribute 'bad'"):
        write_results(col.dataset(), tmp_path / "r.nc")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="no such results file"):
        read_results(tmp_path / "r.nc")


def test_summarize_values():
    T = 5
    truth = torch.ones(2, T + 1, 1, 8, 6)
    truth[..., ::2, :] = -1.0
    col = _collector(truth, M=1)
    # the prediction's error grows: pred = truth + k * noise, so correlation falls with k
    noise = torch.randn(1, 1, 8, 6, generator=torch.Generator().manual_seed(0))
    _feed(col, lambda k: (truth[:, k] + 0.5 * k * noise).unsqueeze(0), T)
    ds = col.dataset()
    s = summarize(ds)
    json.dumps(s, allow_nan=False)
    assert s["trajectories"] == 2 and s["steps"] == T and s["members"] == 1 and s["dt"] == 0.5
    assert s["nmse_mean"] == pytest.approx(float(ds.nmse.isel(time=slice(1, None)).mean()))
    assert s["nmse_last"] == pytest.approx(float(ds.nmse.isel(time=-1).mean()))
    assert s["nmse_step1"] == pytest.approx(float(ds.nmse.isel(time=1).mean()))
    corr = ds.correlation.mean("trajectory").values
    first_below = (
        float(ds.time.values[np.argmax(corr < 0.8)]) if (corr < 0.8).any() else float(ds.time[-1])
    )
    assert s["high_correlation_time_0.8"] == first_below == 1.0  # correlation 0.89 then 0.68
    assert s["high_correlation_time_0.9"] == 0.5
    assert s["alive_fraction_last"] == 1.0
    assert "crps_mean" not in s


def test_summarize_ensemble_and_nan():
    truth = _truth(B=2, steps=2)
    col = _collector(truth, M=2)
    _feed(
        col,
        lambda k: torch.stack([truth[:, k] + 1, truth[:, k] - 1]),
        2,
        lambda k: torch.tensor([[True, True], [True, False]]),
    )
    s = summarize(col.dataset())
    # trajectory 1 has one live member: no spread there, so ensemble scores of it are NaN
    assert s["crps_mean"] is None and s["alive_fraction_last"] == 0.75
    assert s["nmse_mean"] is not None and s["stopped_trajectories"] == 0
    col = _collector(truth, M=2)
    _feed(
        col,
        lambda k: torch.stack([truth[:, k] + 1, truth[:, k] - 1]),
        2,
        lambda k: torch.tensor([[True, False], [True, False]]),
    )
    s = summarize(col.dataset())
    assert s["nmse_mean"] is None and s["stopped_trajectories"] == 1
    assert s["high_correlation_time_0.8"] == 0.5  # the stopped trajectory pulls the mean down
    # members y and -y: mean 0, so skill^2 = mean(y^2); unbiased var 2 y^2, spread^2 = 1.5 var
    col = _collector(truth, M=2)
    _feed(col, lambda k: torch.stack([truth[:, k], -truth[:, k]]), 2)
    s = summarize(col.dataset())
    assert s["spread_skill"] == pytest.approx(math.sqrt(3.0))
    assert s["sample_decorrelation_time_0.8"] == 0.5  # the members are anticorrelated at once
    # members shifted by constants stay perfectly correlated: never below, so the last time
    col = _collector(truth, M=2)
    _feed(col, lambda k: torch.stack([truth[:, k] + 1, truth[:, k] - 1]), 2)
    assert summarize(col.dataset())["sample_decorrelation_time_0.8"] == 1.0


def test_one_dimensional():
    truth = torch.randn(2, 3, 1, 8)
    col = _collector(truth, M=1)
    _feed(col, lambda k: truth[:, k].unsqueeze(0), 2)
    ds = col.dataset()
    assert ds["mean"].dims == ("trajectory", "time", "channel", "x") and "y" not in ds.coords


def test_bad_input():
    truth = _truth()
    with pytest.raises(ValueError, match=r"truth must be \(B, steps \+ 1, C, \*S\)"):
        RolloutCollector(
            truth[:, 0], steps=5, dt=0.5, channels=["a", "b"], coords={"x": X, "y": Y}, truth=truth
        )
    with pytest.raises(ValueError, match=r"initial must be \(B, C=3"):
        RolloutCollector(
            truth[:, 0], steps=3, dt=0.5, channels=["a", "b", "c"], coords={"x": X, "y": Y}
        )
    with pytest.raises(ValueError, match="mask must be"):
        _collector(truth, mask=np.ones((2, 8, 5), bool))
    col = _collector(truth, M=2)
    with pytest.raises(ValueError, match="members"):
        col.update(Step(1, 0.5, truth[:, 1].unsqueeze(0), torch.ones(1, 2, dtype=torch.bool)))
    with pytest.raises(ValueError, match="outside 1..3"):
        col.update(
            Step(4, 2.0, truth[:, 1].expand(2, -1, -1, -1, -1), torch.ones(2, 2, dtype=torch.bool))
        )
    with pytest.raises(ValueError, match="step 1 of trajectory 0 was never recorded"):
        col.dataset()

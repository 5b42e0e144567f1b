"""The results collector, netCDF round trip and summary, on hand-made steps with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import xarray as xr

from sciflow import metrics
from sciflow.results import (
    DEFAULT_SCORES,
    RolloutCollector,
    Score,
    read_results,
    summarize,
    write_results,
)
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


def test_copy_baseline_and_mae_per_step():
    truth = _truth(B=2, steps=3)
    pred = truth + 0.25
    col = _collector(truth, M=1)
    _feed(col, lambda k: pred[:, k].unsqueeze(0), 3)
    ds = col.dataset()
    np.testing.assert_allclose(ds.mae.isel(time=slice(1, None)).values, 0.25, rtol=1e-6)
    # copying the initial state: NMSE of truth[0] against truth[k], field by field, averaged
    for k in range(4):
        y, x0 = truth[:, k].double(), truth[:, 0].double()
        want = (((x0 - y) ** 2).mean(dim=(2, 3)) / (y**2).mean(dim=(2, 3))).mean(-1)
        np.testing.assert_allclose(ds.nmse_copy.isel(time=k).values, want.numpy(), rtol=1e-5)
    s = summarize(ds)
    assert s["nmse_copy_step1"] == pytest.approx(float(ds.nmse_copy.isel(time=1).mean()))
    assert s["nmse_step1_vs_copy"] == pytest.approx(s["nmse_step1"] / s["nmse_copy_step1"])


def test_calibration_scores_per_step_match_the_metrics():
    truth = _truth(B=2, steps=2, seed=3)
    g = torch.Generator().manual_seed(4)
    members = [truth[:, k] + torch.randn(5, *truth[:, k].shape, generator=g) for k in range(3)]
    col = _collector(truth, M=5)
    _feed(col, lambda k: members[k], 2)
    ds = col.dataset()
    x, y = members[2].double(), truth[:, 2].double()
    cov, width = metrics.interval_coverage(x, y, (0.5, 0.9))
    np.testing.assert_allclose(ds.coverage.isel(time=2).values, cov.numpy())
    np.testing.assert_allclose(ds.interval_width.isel(time=2).values, width.numpy())
    np.testing.assert_allclose(ds.reliability.isel(time=2).values, metrics.reliability_curve(x, y)[1].numpy())
    np.testing.assert_allclose(ds.rank_histogram.isel(time=2).values, metrics.rank_histogram(x, y).numpy())
    np.testing.assert_allclose(ds.crps.isel(time=2).values, metrics.crps_ensemble(x, y).numpy())
    s = summarize(ds)
    assert len(s["reliability"]) == 19 and len(s["rank_histogram"]) == 6
    assert s["coverage_0.9_mean"] == pytest.approx(float(ds.coverage.sel(coverage_level=0.9)[:, 1:].mean()))
    assert 0 <= s["calibration_error"] < 0.5
    json.dumps(s, allow_nan=False)


def test_rank_histogram_needs_every_member_and_coverage_uses_the_alive_ones():
    truth = _truth(B=2, steps=1)
    g = torch.Generator().manual_seed(5)
    m = truth[:, 1] + torch.randn(3, *truth[:, 1].shape, generator=g)
    col = _collector(truth, M=3)
    _feed(col, lambda k: m, 1, lambda k: torch.tensor([[True, True], [True, True], [True, False]]))
    ds = col.dataset().isel(time=1)
    assert np.isnan(ds.rank_histogram.values[1]).all() and np.isfinite(ds.rank_histogram.values[0]).all()
    cov, _ = metrics.interval_coverage(m[:2, 1:2].double(), truth[1:2, 1].double())
    np.testing.assert_allclose(ds.coverage.values[1], cov[0].numpy())


def test_censored_correlation_times_are_marked():
    truth = _truth(B=2, steps=3)
    col = _collector(truth, M=1)
    _feed(col, lambda k: truth[:, k].unsqueeze(0) * 1.1, 3)  # perfectly correlated throughout
    s = summarize(col.dataset())
    assert s["high_correlation_time_0.8"] == 1.5 and s["high_correlation_time_0.8_censored"] is True


def test_a_score_added_to_the_list_becomes_a_variable():
    def energy(c):
        return {"energy_error": (c.mean**2 - c.truth**2).mean(dim=tuple(range(1, c.truth.ndim))).numpy()}

    extra = Score(outputs={"energy_error": None}, compute=energy, long_names={"energy_error": "energy error"})
    truth = _truth(B=2, steps=2)
    col = _collector(truth, M=1, scores=[*DEFAULT_SCORES, extra])
    _feed(col, lambda k: 2 * truth[:, k].unsqueeze(0), 2)
    ds = col.dataset()
    want = (3 * truth[:, 2].double() ** 2).mean(dim=(1, 2, 3)).numpy()
    np.testing.assert_allclose(ds.energy_error.isel(time=2).values, want, rtol=1e-6)
    assert ds.energy_error.attrs["long_name"] == "energy error"


def _stream(path, truth, B_batches, M=2, run_key="k", stop_after=None):
    """Collect into ``path`` in trajectory batches; stop (as a kill would) after ``stop_after``."""
    B = truth.shape[0]
    col = RolloutCollector(steps=truth.shape[1] - 1, dt=0.5, channels=["c0", "c1"], coords={"x": X, "y": Y},
                           n_members=M, n_trajectories=B, scored=True, path=path, run_key=run_key,
                           keep_members=True)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(M, *truth.shape, generator=g)
    for i, b in enumerate(B_batches):
        if col.complete[b].all():
            continue
        if stop_after is not None and i >= stop_after:
            col.close()
            return col
        col.begin(b, truth[b, 0])
        for k in range(1, truth.shape[1]):
            members = truth[b, k] + 0.1 * noise[:, b, k]
            col.update(Step(k, 0.5 * k, members, torch.ones(M, b.stop - b.start, dtype=torch.bool)), b,
                       truth=truth[b, k])
        col.end(b)
    return col


def test_streamed_results_equal_the_in_memory_ones(tmp_path):
    truth = _truth(B=3, steps=3)
    batches = [slice(0, 2), slice(2, 3)]
    path = tmp_path / "r.nc"
    ds = _stream(path, truth, batches).dataset()
    assert path.is_file() and not (tmp_path / "r.nc.partial").exists()
    mem = RolloutCollector(truth[:, 0], steps=3, dt=0.5, channels=["c0", "c1"], coords={"x": X, "y": Y},
                           n_members=2, truth=truth, keep_members=True)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(2, *truth.shape, generator=g)
    for b in batches:
        for k in range(1, 4):
            mem.update(Step(k, 0.5 * k, truth[b, k] + 0.1 * noise[:, b, k], torch.ones(2, b.stop - b.start,
                                                                                          dtype=torch.bool)), b)
    want = mem.dataset()
    xr.testing.assert_allclose(ds.load().drop_attrs(), want.drop_attrs())
    assert ds.attrs == want.attrs
    assert ds.alive.dtype == bool and ds.channel.values.tolist() == ["c0", "c1"]
    ds.close()


def test_a_killed_stream_leaves_no_result_and_a_rerun_continues(tmp_path):
    truth = _truth(B=3, steps=3)
    batches = [slice(0, 1), slice(1, 2), slice(2, 3)]
    path = tmp_path / "r.nc"
    path.write_text("the previous result")
    _stream(path, truth, batches, stop_after=2)  # two batches done, then killed
    assert path.read_text() == "the previous result"  # untouched until the new one is whole
    partial = tmp_path / "r.nc.partial"
    assert partial.is_file()
    with pytest.raises(ValueError, match="never recorded"):
        _stream(path, truth, batches, stop_after=2).dataset()
    col = _stream(path, truth, batches)  # the rerun: only the last batch is computed
    ds = col.dataset()
    assert not partial.exists()
    whole = _stream(tmp_path / "whole.nc", truth, batches).dataset()
    xr.testing.assert_identical(ds.load(), whole.load())
    # a partial file of another run is started over, not continued
    _stream(tmp_path / "o.nc", truth, batches, stop_after=1)
    col = _stream(tmp_path / "o.nc", truth, batches, run_key="other", stop_after=0)
    assert not col.complete.any()
    # a partial file a kill left unreadable is started over
    (tmp_path / "u.nc.partial").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    col = _stream(tmp_path / "u.nc", truth, batches, stop_after=0)
    assert not col.complete.any()

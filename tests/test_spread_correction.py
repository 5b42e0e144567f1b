"""Spread correction: fitted factors against closed forms, the collector applying them (mean kept,
spread scaled, an under-dispersed ensemble brought to a spread-skill ratio of 1 on fresh draws),
the file round trip, bad input, and the CLI verbs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

from sciflow.cli import main
from sciflow.results import RolloutCollector
from sciflow.rollout import Step
from sciflow.spread_correction import SpreadCorrection, SpreadCorrectionError, fit_spread_correction


def _scores(spread: np.ndarray, skill: np.ndarray, members: int = 5) -> xr.Dataset:
    """Results with only what the fit reads: spread and skill ``(trajectory, time)``."""
    B, T1 = spread.shape
    return xr.Dataset(
        {"spread": (("trajectory", "time"), spread), "skill": (("trajectory", "time"), skill)},
        coords={"member": np.arange(members), "time": np.arange(T1) * 0.1},
        attrs={"split": "valid"},
    )


def test_fit_is_the_ratio_of_averaged_squares():
    # spread half the skill at every step: factors 2; step 0 (initial condition) stays 1
    skill = np.full((4, 6), 0.3)
    skill[:, 0] = 0.0
    corr = fit_spread_correction(_scores(skill / 2, skill), window=1)
    assert corr.factors[0] == 1.0
    np.testing.assert_allclose(corr.factors[1:], 2.0)
    # a ratio of averages over trajectories, not an average of ratios
    spread = np.array([[0, 1.0, 1.0], [0, 3.0, 3.0]])
    skill = np.array([[0, 1.0, 1.0], [0, 1.0, 1.0]])
    corr = fit_spread_correction(_scores(spread, skill), window=1)
    np.testing.assert_allclose(corr.factors[1:], np.sqrt(1.0 / 5.0))
    # a window of 3 averages the squares of steps k-1..k+1 (shrinking at the ends)
    spread = np.array([[0, 1.0, 2.0, 1.0]])
    skill = np.ones((1, 4))
    corr = fit_spread_correction(_scores(spread, skill), window=3)
    np.testing.assert_allclose(corr.factors[1:], [np.sqrt(1 / 2.5), np.sqrt(1 / 2.0), np.sqrt(1 / 2.5)])
    assert corr.source.endswith("(valid split)") and corr.members == 5


def _rollout(truth: torch.Tensor, scale: float, M: int, seed: int, correction=None, path=None) -> xr.Dataset:
    """Members ``scale * z`` (z standard normal) against a standard-normal truth: an ensemble whose
    spread is ``scale`` times too small, scored by the collector."""
    B, T1 = truth.shape[:2]
    col = RolloutCollector(truth[:, 0], steps=T1 - 1, dt=0.1, channels=["u"], coords={"x": np.arange(truth.shape[-1])},
                           n_members=M, truth=truth, spread_correction=correction, keep_members=True, path=path)
    g = torch.Generator().manual_seed(seed)
    for k in range(1, T1):
        x = scale * torch.randn(M, B, 1, truth.shape[-1], generator=g)
        col.update(Step(k, 0.1 * k, x, torch.ones(M, B, dtype=torch.bool)))
    return col.dataset()


@pytest.mark.parametrize("M", [2, 5, 10])
def test_an_under_dispersed_ensemble_is_corrected_on_fresh_draws(M):
    g = torch.Generator().manual_seed(1)
    B, T, N = 8, 6, 400
    truth_fit = torch.randn(B, T + 1, 1, N, generator=g)
    truth_test = torch.randn(B, T + 1, 1, N, generator=g)
    before = _rollout(truth_fit, 0.3, M, seed=2)
    ratio = lambda ds: np.sqrt(float((ds.spread[:, 1:] ** 2).mean()) / float((ds.skill[:, 1:] ** 2).mean()))  # noqa: E731
    assert ratio(before) < 0.5
    corr = fit_spread_correction(before, window=3)
    after = _rollout(truth_test, 0.3, M, seed=3, correction=corr)
    reference = _rollout(truth_test, 0.3, M, seed=3)
    assert abs(ratio(after) - 1.0) < 0.05  # Monte-Carlo error of 8 x 6 x 400 cells
    # the mean is what it was; each member's deviation from it is scaled by the step's factor
    np.testing.assert_allclose(after["mean"].values, reference["mean"].values, atol=1e-5)
    np.testing.assert_allclose(after["std"][:, 1:].values,
                               reference["std"][:, 1:].values * corr.factors[None, 1:, None, None], rtol=1e-4)
    dev = after["members"] - after["mean"]
    dev0 = reference["members"] - reference["mean"]
    np.testing.assert_allclose(dev[:, :, 2].values, dev0[:, :, 2].values * corr.factors[2], rtol=1e-3, atol=1e-5)
    # coverage of the 90 % interval moves towards nominal
    cov = lambda ds: float(ds.coverage.sel(coverage_level=0.9)[:, 1:].mean())  # noqa: E731
    assert abs(cov(after) - 0.9) < abs(cov(reference) - 0.9)


def test_file_round_trip_and_bad_files(tmp_path):
    corr = SpreadCorrection(np.array([1.0, 2.0, 1.5]), members=4, source="valid.nc (valid split)", window=3)
    path = corr.save(tmp_path / "spread.json")
    back = SpreadCorrection.load(path)
    np.testing.assert_array_equal(back.factors, corr.factors)
    assert (back.members, back.source, back.window) == (4, corr.source, 3)
    with pytest.raises(SpreadCorrectionError, match="no such file"):
        SpreadCorrection.load(tmp_path / "missing.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(SpreadCorrectionError, match="junk.json"):
        SpreadCorrection.load(tmp_path / "junk.json")
    body = json.loads(path.read_text())
    body["factors"][1] = -1.0
    (tmp_path / "neg.json").write_text(json.dumps(body))
    with pytest.raises(SpreadCorrectionError, match="step 1"):
        SpreadCorrection.load(tmp_path / "neg.json")
    del body["factors"]
    (tmp_path / "nokey.json").write_text(json.dumps(body))
    with pytest.raises(SpreadCorrectionError, match="missing key 'factors'"):
        SpreadCorrection.load(tmp_path / "nokey.json")
    with pytest.raises(SpreadCorrectionError, match="covers 2 steps; step 3"):
        corr.apply(torch.zeros(2, 1, 1, 3), torch.zeros(1, 1, 3), 3)


def test_bad_fits_are_refused():
    with pytest.raises(SpreadCorrectionError, match="no 'spread'"):
        fit_spread_correction(xr.Dataset({"skill": (("trajectory", "time"), np.ones((2, 3)))}))
    zero = np.zeros((2, 3))
    with pytest.raises(SpreadCorrectionError, match="no ensemble spread around step 1"):
        fit_spread_correction(_scores(zero, np.ones((2, 3))), window=1)
    with pytest.raises(SpreadCorrectionError, match="odd"):
        fit_spread_correction(_scores(np.ones((2, 3)), np.ones((2, 3))), window=2)
    truth = torch.randn(1, 4, 1, 5)
    short = SpreadCorrection(np.ones(3), members=2)
    with pytest.raises(ValueError, match="covers 2 steps, the rollout has 3"):
        _rollout(truth, 1.0, 2, seed=0, correction=short)


def test_calibrate_verb(tmp_path, capsys):
    g = torch.Generator().manual_seed(4)
    truth = torch.randn(4, 5, 1, 50, generator=g)
    ds = _rollout(truth, 0.5, 4, seed=5, path=tmp_path / "valid.nc")
    ds.close()
    out = tmp_path / "spread.json"
    assert main(["calibrate", str(tmp_path / "valid.nc"), "--out", str(out), "--window", "3"]) == 0
    corr = SpreadCorrection.load(out)
    assert corr.steps == 4 and np.all(corr.factors[1:] > 1.3)
    assert "spread-correction" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="does not exist"):
        main(["calibrate", str(tmp_path / "nope.nc"), "--out", str(out)])

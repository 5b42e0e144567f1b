"""Conservation in rollouts end to end: `run_rollout(project=...)` and `sciflow rollout --project`
put the per-step error of each card law in the results, the summary and a plot; a projection
holds the law to round-off where the unconstrained model drifts; bad requests name the law."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sciflow.cli import build_parser, main
from sciflow.constraints import LawError
from sciflow.data.datamodule import SciflowData
from sciflow.data.format import write_well
from sciflow.evaluate import run_rollout
from sciflow.rollout_conservation import PROJECT_CHOICES
from sciflow.surrogate import Surrogate
from tests.test_evaluate import save_checkpoint

TINY = {"class_path": "fno", "init_args": {"width": 4, "modes": 2, "n_layers": 1}}
LAW = {"kind": "integral", "field": "u", "description": "the mean of u is conserved (periodic, no flux)"}


def _card(root: Path, laws: list[dict]) -> str:
    card = root / f"card{len(list(root.glob('card*.yaml')))}.yaml"
    card.write_text(yaml.safe_dump({"name": "blobs", "path": str(root), "fields": ["u"], "params": ["c"],
                                    "dt": 0.01, "frames": 10, "periodic": True, "conservation": laws}))
    return str(card)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Periodic blobs u(x, y, t) on 16 x 16 (3 test trajectories of 10 frames), a card with the
    integral of u as its law, and an untrained tiny FNO (its steps do not conserve the mean)."""
    root = tmp_path_factory.mktemp("conserve")
    x = (np.arange(16) + 0.5) / 16
    X, Y = np.meshgrid(x, x, indexing="ij")
    t = np.arange(10) * 0.01
    for split, count in (("train", 2), ("valid", 1), ("test", 3)):
        k = np.arange(count)[:, None, None, None]
        u = 1.0 + np.sin(2 * np.pi * (X - t[None, :, None, None] - k / 5)) * np.cos(2 * np.pi * Y)
        write_well(root / "data" / split / "blobs.hdf5", dataset_name="blobs", time=t, coords={"x": x, "y": x},
                   t0_fields={"u": u}, params={"c": np.ones(count)}, attrs={"dt": 0.01})
    card = _card(root, [LAW])
    torch.manual_seed(0)
    model = Surrogate(TINY, data_spec=SciflowData(card).spec)
    return root, card, save_checkpoint(model, root / "model.ckpt")


def _run(setup, tmp_path, project, card=None, **kw):
    root, default_card, ckpt = setup
    return run_rollout([ckpt], card or default_card, steps=6, out=tmp_path / f"{project}.nc", project=project,
                       progress=False, **kw)


def test_unconstrained_drift_is_reported_and_a_projection_removes_it(setup, tmp_path):
    free, s_free = _run(setup, tmp_path, "none")
    hard, s_hard = _run(setup, tmp_path, "hardc")
    for ds in (free, hard):
        assert ds.conservation_rel.dims == ("trajectory", "time", "law")
        assert ds.conservation_rel.shape == (3, 7, 1)
        assert ds.conservation_rel.isel(time=0).max() < 1e-14  # the initial state defines the amount
    law = str(free.law.values[0])
    assert free.attrs["projection"] == "none" and hard.attrs["projection"] == "hardc"
    assert float(free.conservation_rel.isel(time=slice(1, None)).min()) > 1e-6
    assert float(hard.conservation_rel.max()) < 1e-13
    assert s_free["conservation_rel_max"][law] > 1e-6 > 1e-13 > s_hard["conservation_rel_max"][law]
    assert s_hard["projection"] == "hardc"
    # the projection moved the states (the mean of u changed back), the rest of the scores is there
    assert not np.allclose(free["mean"].values, hard["mean"].values)
    assert np.isfinite(hard.nmse.values).all()
    assert (tmp_path / "hardc_conservation.png").stat().st_size > 0


def test_probconserv_and_sigma_g(setup, tmp_path):
    exact, _ = _run(setup, tmp_path, "probconserv")
    assert float(exact.conservation_rel.max()) < 1e-13
    loose, _ = _run(setup, tmp_path, "hardc", sigma_g=1.0, plots=False)
    free, _ = _run(setup, tmp_path, "none", plots=False)
    # constraint noise: a partial correction, between none and exact
    mid = float(loose.conservation_rel.isel(time=-1).max())
    assert 1e-13 < mid < float(free.conservation_rel.isel(time=-1).max())
    assert loose.attrs["sigma_g"] == 1.0


def test_a_card_without_laws_monitors_nothing_and_refuses_a_projection(setup, tmp_path):
    root, _, _ = setup
    bare = _card(root, [])
    ds, summary = _run(setup, tmp_path, "none", card=bare, plots=False)
    assert "conservation_rel" not in ds and "conservation_rel_max" not in summary
    with pytest.raises(LawError, match="names no conservation laws"):
        _run(setup, tmp_path, "hardc", card=bare, plots=False)


def test_a_law_on_a_field_the_model_lacks_is_skipped_when_monitoring_and_named_when_projecting(setup, tmp_path):
    root, _, _ = setup
    other = _card(root, [{"kind": "integral", "field": "rho"}])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds, _ = _run(setup, tmp_path, "none", card=other, plots=False)
    assert "conservation_rel" not in ds
    assert any("conservation not monitored" in str(w.message) for w in caught)
    with pytest.raises(LawError, match="rho"):
        _run(setup, tmp_path, "hardc", card=other, plots=False)


def test_cli_project_choices_and_one_line_errors(setup, tmp_path, capsys):
    root, card, ckpt = setup
    rollout = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "rollout")[1]
    choices = next(a.choices for a in rollout._actions if a.dest == "project")
    assert tuple(choices) == PROJECT_CHOICES
    bare = _card(root, [])
    with pytest.raises(SystemExit) as e:
        main(["rollout", "--ckpt", ckpt, "--data.card", bare, "--steps", "2", "--project", "hardc",
              "--no-plots", "--out", str(tmp_path / "x.nc")])
    assert "names no conservation laws" in str(e.value.code)
    assert main(["rollout", "--ckpt", ckpt, "--data.card", card, "--steps", "2", "--project", "hardc",
                 "--no-plots", "--out", str(tmp_path / "y.nc")]) == 0
    assert '"conservation_rel_max"' in capsys.readouterr().out

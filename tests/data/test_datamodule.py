"""``SciflowData`` on the synthetic dataset: the data spec and the loaders."""

from __future__ import annotations

import shutil

import pytest
import torch

from sciflow.data.datamodule import SciflowData


def test_spec(synthetic_card):
    dm = SciflowData(card=str(synthetic_card), batch_size=4)
    spec = dm.spec
    assert spec["card"] == "synthetic" and len(spec["card_hash"]) == 64
    assert spec["channels"] == ["velocity_x", "velocity_y", "pressure"]  # the card's field order
    assert spec["params"] == ["speed", "decay"]
    assert spec["spatial_dims"] == ["x", "y"] and spec["spatial_shape"] == [16, 16]
    assert spec["has_mask"] is True and spec["periodic"] is False
    assert spec["history"] == 1 and spec["time_step"] == 1
    assert spec["dt"] == pytest.approx(0.1)
    assert spec["stats"]["channels"] == spec["channels"] and spec["stats"]["n_trajectories"] == 6
    assert (synthetic_card.parent / "stats.yaml").is_file()
    assert all(type(v) in (str, int, float, bool, list, dict) for v in spec.values())  # plain types
    dm2 = SciflowData(card=str(synthetic_card), history=2, time_step=3)
    assert dm2.spec["dt"] == pytest.approx(0.3) and dm2.spec["history"] == 2
    assert dm2.spec["stats"]["delta_step"] == 3


def test_loaders(synthetic_card):
    dm = SciflowData(card=str(synthetic_card), history=2, time_step=2, rollout_steps=3, batch_size=4)
    dm.setup("fit")
    # train: 6 trajectories x starts t0 with t0 + 4 <= 11 -> 8 each
    assert len(dm.train_set) == 6 * 8
    batch = next(iter(dm.train_dataloader()))
    assert batch["input"].shape == (4, 2, 3, 16, 16) and batch["target"].shape == (4, 1, 3, 16, 16)
    assert batch["params"].shape == (4, 2) and batch["mask"].shape == (4, 16, 16)
    assert batch["mask"].dtype == torch.bool and not batch["mask"].all()
    one_step, rollout = dm.val_dataloader()
    # one-step: starts every time_step frames; rollout: one window from frame 0 per trajectory
    assert len(one_step.dataset) == 2 * 4
    assert len(rollout.dataset) == 2
    rb = next(iter(rollout))
    assert rb["target"].shape == (2, 3, 3, 16, 16) and rb["t0"].tolist() == [0, 0]
    # each batch says what it is for, so the model needs no loader index
    assert rb["task"] == ["rollout", "rollout"] and set(next(iter(one_step))["task"]) == {"one_step"}
    # rollout targets are every time_step-th frame after the history
    traj = rollout.dataset.dataset.traj
    full = torch.from_numpy(traj.read(0))
    torch.testing.assert_close(rb["input"][0], full[[0, 2]])
    torch.testing.assert_close(rb["target"][0], full[[4, 6, 8]])
    dm.setup("test")
    assert [len(dl.dataset) for dl in dm.test_dataloader()] == [8, 2]
    assert "synthetic" in repr(dm)


def test_field_subset_and_missing_split(synthetic_card):
    dm = SciflowData(card=str(synthetic_card), fields=["pressure"])
    assert dm.spec["channels"] == ["pressure"]
    shutil.rmtree(synthetic_card.parent / "data" / "valid")
    with pytest.raises(FileNotFoundError, match=r"dataset 'synthetic': no files in .*valid"):
        SciflowData(card=str(synthetic_card)).setup("validate")

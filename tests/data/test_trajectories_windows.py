"""``Trajectories`` over several files and ``Windows`` against hand-computed frame indices."""

from __future__ import annotations

import numpy as np
import pytest

from sciflow.data.format import write_well
from sciflow.data.reader import DataFormatError
from sciflow.data.trajectories import Trajectories, Windows, split_files

NX, NY = 3, 2


def _file(path, *, first: int, n: int, frames: int, t1: str = "velocity", params=("U",),
          shape=(NX, NY)):
    """Trajectory k holds the value 100 * (first + k) + frame everywhere (pressure) and the
    negative of it (velocity), so every read can be checked by index."""
    k = np.arange(first, first + n)[:, None]
    val = (100.0 * k + np.arange(frames)[None, :])[:, :, None, None] * np.ones(shape)
    return write_well(
        path, dataset_name="w", time=np.arange(frames) * 0.1, coords={"x": np.arange(shape[0]), "y": np.arange(shape[1])},
        t0_fields={"pressure": val}, t1_fields={t1: np.stack([-val, 2 * val], -1)},
        params={p: np.arange(first, first + n, dtype=float) + j for j, p in enumerate(params)},
        attrs={"dt": 0.1},
    )


def _frames_of(window_part: np.ndarray) -> list[int]:
    return [int(v) % 100 for v in window_part[:, 0, 0, 0]]


def test_trajectories_across_files(tmp_path):
    _file(tmp_path / "data/train/a.hdf5", first=0, n=2, frames=6)
    _file(tmp_path / "data/train/b.hdf5", first=2, n=3, frames=6)
    tr = Trajectories(split_files(tmp_path, "train"))
    assert len(tr) == 5
    assert tr.channel_names == ["pressure", "velocity_x", "velocity_y"]
    assert tr.param_names == ["U"] and tr.spatial_shape == (NX, NY) and tr.n_dims == 2
    for i in range(5):
        item = tr[i]
        assert item["fields"].shape == (6, 3, NX, NY)
        assert float(item["fields"][4, 0, 0, 0]) == 100 * i + 4
        assert float(item["fields"][4, 1, 1, 1]) == -(100 * i + 4)
        assert float(item["fields"][4, 2, 1, 1]) == 2 * (100 * i + 4)
        assert float(item["params"][0]) == i
        assert bool(item["mask"].all()) and not tr.has_mask
    np.testing.assert_array_equal(tr.read(3, 1, 5, 2)[:, 0, 0, 0], [301, 303])
    assert tr.dt() == pytest.approx(0.1)
    sub = Trajectories(split_files(tmp_path, "train"), fields=["velocity"])
    assert sub.channel_names == ["velocity_x", "velocity_y"]


def test_trajectories_reject_mismatched_files(tmp_path):
    a = _file(tmp_path / "a.hdf5", first=0, n=1, frames=4)
    b = _file(tmp_path / "b.hdf5", first=1, n=1, frames=4, t1="momentum")
    with pytest.raises(DataFormatError, match=r"b\.hdf5: channels \['pressure', 'momentum_x', 'momentum_y'\] differ"):
        Trajectories([a, b])
    c = _file(tmp_path / "c.hdf5", first=1, n=1, frames=4, params=("U", "rho"))
    with pytest.raises(DataFormatError, match=r"c\.hdf5: parameters \['U', 'rho'\] differ"):
        Trajectories([a, c])
    d = _file(tmp_path / "d.hdf5", first=1, n=1, frames=4, shape=(NX, NY + 1))
    with pytest.raises(DataFormatError, match=r"d\.hdf5: spatial shape"):
        Trajectories([a, d])
    with pytest.raises(DataFormatError, match=r"b\.hdf5: field\(s\) \['velocity'\] not found"):
        Trajectories([a, b], fields=["velocity"])
    with pytest.raises(ValueError, match="no files"):
        Trajectories([])


def test_windows_hand_computed(tmp_path):
    _file(tmp_path / "data/train/a.hdf5", first=0, n=1, frames=12)
    _file(tmp_path / "data/train/b.hdf5", first=1, n=1, frames=9)
    tr = Trajectories(split_files(tmp_path, "train"))

    # history 2, horizon 1, step 3: frames t0, t0+3 -> t0+6; starts every 2 frames
    w = Windows(tr, history=2, horizon=1, step=3, stride=2)
    # 12 frames: t0 + 6 <= 11 -> t0 in 0, 2, 4;  9 frames: t0 + 6 <= 8 -> t0 in 0, 2
    assert w.index == [(0, 0), (0, 2), (0, 4), (1, 0), (1, 2)]
    item = w[2]
    assert _frames_of(item["input"].numpy()) == [4, 7] and _frames_of(item["target"].numpy()) == [10]
    assert item["traj"] == 0 and item["t0"] == 4
    item = w[4]
    assert _frames_of(item["input"].numpy()) == [2, 5] and _frames_of(item["target"].numpy()) == [8]
    assert float(item["input"][0, 0, 0, 0]) == 102 and float(item["params"][0]) == 1

    # history 1, horizon 3, step 2, stride 4, from frame 1
    w = Windows(tr, history=1, horizon=3, step=2, stride=4, start=1)
    # span 7: t0 + 6 <= 11 -> 1, 5;  t0 + 6 <= 8 -> 1
    assert w.index == [(0, 1), (0, 5), (1, 1)]
    assert _frames_of(w[1]["input"].numpy()) == [5] and _frames_of(w[1]["target"].numpy()) == [7, 9, 11]
    assert w[1]["target"].shape == (3, 3, NX, NY)

    # every window, capped per trajectory
    w = Windows(tr, history=1, horizon=1, max_windows_per_trajectory=2)
    assert w.index == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert len(Windows(tr)) == 11 + 8


def test_windows_bad_arguments(tmp_path):
    tr = Trajectories([_file(tmp_path / "a.hdf5", first=0, n=1, frames=5)])
    for kw in ({"history": 0}, {"horizon": 0}, {"step": 0}, {"stride": 0}):
        with pytest.raises(ValueError, match=f"{next(iter(kw))} must be >= 1"):
            Windows(tr, **kw)
    with pytest.raises(ValueError, match=r"no window of 7 frames .* 5 frames"):
        Windows(tr, history=2, horizon=1, step=3)

"""``WellFile`` across processes: pickled copies and forked DataLoader workers read the same data."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sciflow.data.reader import DataFormatError, WellFile
from sciflow.data.trajectories import Trajectories, Windows, split_files


def test_pickle_drops_the_handle_and_reads_the_same(synthetic_card):
    root = synthetic_card.parent
    wf = WellFile(split_files(root, "train")[0])
    before = wf.read(0, 2, 6)
    assert wf._handle is not None  # opened by the read
    clone = pickle.loads(pickle.dumps(wf))
    assert clone._handle is None
    np.testing.assert_array_equal(clone.read(0, 2, 6), before)
    np.testing.assert_array_equal(clone.mask(0), wf.mask(0))
    np.testing.assert_array_equal(clone.params(0), wf.params(0))
    assert clone.channel_names == wf.channel_names
    wf.close()
    np.testing.assert_array_equal(wf.read(0, 2, 6), before)  # reopens after close


@pytest.mark.parametrize("open_in_parent", [False, True])
def test_forked_workers_read_the_same_windows(synthetic_card, open_in_parent):
    root = synthetic_card.parent
    windows = Windows(Trajectories(split_files(root, "train")), history=2, horizon=1, step=1, stride=3)
    if open_in_parent:
        windows[0]  # the parent holds open handles when the workers fork
    reference = [windows[j] for j in range(len(windows))]
    loader = DataLoader(windows, batch_size=5, num_workers=2, multiprocessing_context="fork")
    seen = [item for batch in loader for item in _unbatch(batch)]
    assert len(seen) == len(reference)
    for got, want in zip(seen, reference):
        assert got["traj"] == want["traj"] and got["t0"] == want["t0"]
        torch.testing.assert_close(got["input"], want["input"], rtol=0, atol=0)
        torch.testing.assert_close(got["target"], want["target"], rtol=0, atol=0)
        torch.testing.assert_close(got["params"], want["params"], rtol=0, atol=0)
        assert torch.equal(got["mask"], want["mask"])


def _unbatch(batch: dict) -> list[dict]:
    n = len(batch["traj"])
    return [{k: (v[i].item() if k in ("traj", "t0") else v[i]) for k, v in batch.items()} for i in range(n)]


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.hdf5"):
        WellFile(tmp_path / "nope.hdf5")
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"not hdf5 at all" * 100)
    with pytest.raises(DataFormatError, match="junk.hdf5: cannot read"):
        WellFile(junk)

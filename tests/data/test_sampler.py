"""The training order: a function of (seed, epoch), split over ranks, resumable mid-epoch, also
through a DataLoader with worker processes."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from sciflow.data.sampler import EpochSampler


def order(n: int, seed: int, epoch: int, **kw) -> list[int]:
    s = EpochSampler(range(n), seed=seed, **kw)
    s.set_epoch(epoch)
    return list(s)


def test_order_depends_only_on_seed_and_epoch():
    assert order(50, 0, 3) == order(50, 0, 3)
    assert order(50, 0, 3) != order(50, 0, 4)
    assert order(50, 0, 3) != order(50, 7, 3)
    assert sorted(order(50, 0, 3)) == list(range(50))
    torch.manual_seed(123)  # the global generator plays no part
    assert order(50, 0, 3) == order(50, 0, 3)
    assert order(10, 0, 0, shuffle=False) == list(range(10))


def test_ranks_split_the_epoch_order():
    parts = [order(11, 5, 2, num_replicas=2, rank=r) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 6  # padded to an even split, as DistributedSampler
    assert set(parts[0]) | set(parts[1]) == set(range(11))


def test_resume_skips_the_consumed_samples_once():
    full = order(30, 1, 2)
    s = EpochSampler(range(30), seed=1, resume=(2, 8))
    s.set_epoch(2)
    assert list(s) == full[8:]
    assert list(s) == full, "the skip applies to the interrupted epoch only once"
    later = EpochSampler(range(30), seed=1, resume=(2, 8))
    later.set_epoch(3)  # the interrupted epoch had ended: nothing to skip
    assert list(later) == order(30, 1, 3)
    with pytest.raises(ValueError, match="resume"):
        EpochSampler(range(3), resume=(0, -1))


@pytest.mark.parametrize("workers", [0, 2])
def test_resumed_loader_yields_the_remaining_batches(workers):
    data = torch.arange(40.0)
    uninterrupted = list(DataLoader(data, batch_size=4, sampler=_sampler(None), num_workers=workers))
    resumed = list(DataLoader(data, batch_size=4, sampler=_sampler((0, 3 * 4)), num_workers=workers))
    assert len(resumed) == len(uninterrupted) - 3
    for a, b in zip(resumed, uninterrupted[3:]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("workers", [0, 2])
def test_datamodule_resumes_the_order_of_a_later_epoch(synthetic_card, workers):
    """A checkpoint taken 3 batches into epoch 1: the resumed training loader yields the rest of
    epoch 1's order at once, even though its workers fetch indices before Lightning sets the epoch."""
    from sciflow.data.datamodule import SciflowData

    def loader(state):  # noqa: ANN001
        dm = SciflowData(str(synthetic_card), batch_size=4, num_workers=workers, seed=5)
        dm.setup("fit")
        if state:
            dm.load_state_dict(state)
        return dm.train_dataloader()

    full = loader(None)
    full.sampler.set_epoch(1)
    expected = [b["t0"] * 100 + b["traj"] for b in full][3:]
    resumed = [b["t0"] * 100 + b["traj"] for b in loader({"seed": 5, "epoch": 1, "batches": 3, "batch_size": 4})]
    assert len(resumed) == len(expected)
    for a, b in zip(resumed, expected):
        assert torch.equal(a, b)


def _sampler(resume):  # noqa: ANN001
    s = EpochSampler(range(40), seed=4, resume=resume)
    s.set_epoch(0)
    return s

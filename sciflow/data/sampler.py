"""The training order: a function of the seed and the epoch, resumable in the middle of an epoch.

Lightning restores a run's counters from a checkpoint but not where the sampler stood inside an
epoch, so a run resumed mid-epoch would see the epoch's first batches again. Here the order of
epoch ``e`` is fixed by ``(seed, e)`` alone (torch's ``DistributedSampler`` recipe, so ranks split
it the same way), and a sampler built for a resumed run skips the samples the checkpointed run had
already consumed, once, in the epoch it stopped in.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

from torch.utils.data import DistributedSampler


class EpochSampler(DistributedSampler):
    """Shuffled (or in-order) indices of ``dataset`` for one rank; epoch ``e``'s order depends only
    on ``seed`` and ``e`` (set by Lightning through :meth:`set_epoch`).

    Args:
        dataset: anything with ``len``.
        seed: order seed; the same seed gives the same order in every epoch of every rerun.
        shuffle: permute (True) or keep the dataset order.
        num_replicas, rank: the data-parallel world; each rank gets every ``num_replicas``-th
            index of the (padded) epoch order, as ``DistributedSampler`` does.
        resume: ``(epoch, samples)``: in ``epoch``, skip this rank's first ``samples`` indices
            (they were trained before the checkpoint); applied once.
    """

    def __init__(self, dataset: Sized, *, seed: int = 0, shuffle: bool = True, num_replicas: int = 1,
                 rank: int = 0, resume: tuple[int, int] | None = None):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=False)
        if resume is not None and (resume[0] < 0 or resume[1] < 0):
            raise ValueError(f"EpochSampler: resume (epoch, samples) must be >= 0, got {resume}")
        self.resume = resume

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        if self.resume is not None and self.epoch >= self.resume[0]:
            if self.epoch == self.resume[0]:
                indices = indices[self.resume[1]:]
            self.resume = None
        return iter(indices)


__all__ = ["EpochSampler"]

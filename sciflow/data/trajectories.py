"""Trajectories over Well-layout files, and the training windows cut from them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sciflow.data.errors import DataError, DataFormatError, DataNotFoundError, DataValueError
from sciflow.data.reader import WellFile

# frame spacings closer than this (relative) are the same: float32 time axes round at ~1e-7
DT_RTOL = 1e-4


def split_files(root: str | os.PathLike, split: str) -> list[Path]:
    """The HDF5 files of one split of a dataset folder (``<root>/data/<split>/*.hdf5``), sorted."""
    folder = Path(root) / "data" / split
    return sorted([*folder.glob("*.hdf5"), *folder.glob("*.h5")])


class Trajectories(Dataset):
    """All trajectories of one or more files, as one indexable collection.

    Every file must have the same channels (for the selected ``fields``), spatial shape, parameter
    names and frame spacing ``dt``; the error says which file differs and how.

    Item ``i``: ``{"fields": (T, C, *S) float32, "params": (P,) float32, "mask": (*S) bool,
    "time": (T,) float64}``.
    """

    def __init__(self, files: Sequence[str | os.PathLike], fields: list[str] | None = None):
        if not files:
            raise DataNotFoundError("Trajectories: no files given (is the split folder empty?)")
        self.files = [WellFile(f) for f in files]
        self.fields = fields
        ref = self.files[0]
        self.channel_names = [c for info in ref.select(fields) for c in info.channels]
        self.param_names = list(ref.param_names)
        self.spatial_shape = ref.spatial_shape
        self.spatial_dims = list(ref.spatial_dims)
        for wf in self.files[1:]:
            chans = [c for info in wf.select(fields) for c in info.channels]
            for what, mine, theirs in (
                ("channels", chans, self.channel_names),
                ("parameters", wf.param_names, self.param_names),
                ("spatial shape", wf.spatial_shape, self.spatial_shape),
            ):
                if list(mine) != list(theirs):
                    raise DataFormatError(f"{wf.path}: {what} {mine} differ from {ref.path}'s {theirs}")
        check_same_dt(self.files)
        self.index = [(f, b) for f, wf in enumerate(self.files) for b in range(wf.n_trajectories)]
        self.has_mask = any(wf.mask_info is not None for wf in self.files)

    def __len__(self) -> int:
        return len(self.index)

    def close(self) -> None:
        """Close this process's HDF5 handles (they reopen on the next read): lets a user fix a
        file with h5py in write mode after an error, which HDF5 refuses while it is open."""
        for wf in self.files:
            wf.close()

    @property
    def n_dims(self) -> int:
        return len(self.spatial_shape)

    def n_steps(self, i: int) -> int:
        return self.files[self.index[i][0]].n_steps

    def dt(self, i: int = 0) -> float:
        return self.files[self.index[i][0]].dt

    def mask(self, i: int) -> np.ndarray:
        """Fluid mask ``(*S)`` bool of trajectory ``i`` (all True when the file has none)."""
        f, b = self.index[i]
        m = self.files[f].mask(b)
        return np.ones(self.spatial_shape, bool) if m is None else m

    def params(self, i: int) -> np.ndarray:
        f, b = self.index[i]
        return self.files[f].params(b)

    def read(self, i: int, start: int = 0, stop: int | None = None, step: int = 1) -> np.ndarray:
        """Frames ``start:stop:step`` of trajectory ``i``: ``(t, C, *S)`` float32."""
        f, b = self.index[i]
        return self.files[f].read(b, start, stop, step, fields=self.fields)

    def __getitem__(self, i: int) -> dict[str, Any]:
        f, b = self.index[i]
        return {
            "fields": torch.from_numpy(self.read(i)),
            "params": torch.from_numpy(self.params(i).astype(np.float32)),
            "mask": torch.from_numpy(self.mask(i)),
            "time": torch.from_numpy(self.files[f].time),
        }


def check_same_dt(files: Sequence[WellFile], rtol: float = DT_RTOL) -> None:
    """Raise :class:`DataValueError` naming two files whose frame spacing differs (files of one
    frame have none and are skipped): a model trained on mixed steps learns neither."""
    timed = [wf for wf in files if np.isfinite(wf.dt)]
    for wf in timed[1:]:
        a, b = timed[0].dt, wf.dt
        if abs(a - b) > rtol * max(abs(a), abs(b)):
            raise DataValueError(
                f"frame spacing differs between files of one dataset: {timed[0].path} has dt = {a:.6g}, "
                f"{wf.path} has dt = {b:.6g}; resample them to one dt or keep them in separate datasets"
            )


class Windows(Dataset):
    """Fixed-length windows of ``history`` input frames followed by ``horizon`` target frames.

    Frames inside a window are ``step`` stored frames apart (the model's time step); window starts
    are ``stride`` stored frames apart, from ``start``. Item: ``{"input": (h, C, *S), "target":
    (k, C, *S), "params": (P,), "mask": (*S) bool, "traj": int, "t0": int}``.
    """

    def __init__(self, trajectories: Trajectories, history: int = 1, horizon: int = 1, step: int = 1,
                 stride: int = 1, start: int = 0, max_windows_per_trajectory: int | None = None):
        for name, v, lo in (("history", history, 1), ("horizon", horizon, 1), ("step", step, 1),
                            ("stride", stride, 1), ("start", start, 0)):
            if not isinstance(v, int | np.integer) or v < lo:
                raise DataError(f"Windows: {name} must be >= {lo} (an integer), got {v!r}")
        self.traj = trajectories
        self.history, self.horizon, self.step, self.stride = history, horizon, step, stride
        span = (history + horizon - 1) * step + 1
        self.index: list[tuple[int, int]] = []
        for i in range(len(trajectories)):
            starts = list(range(start, trajectories.n_steps(i) - span + 1, stride))
            if max_windows_per_trajectory is not None:
                starts = starts[:max_windows_per_trajectory]
            self.index += [(i, t) for t in starts]
        if not self.index:
            raise DataError(
                f"Windows: no window of {span} frames (history {history} + horizon {horizon}, step {step}) "
                f"fits from frame {start} in trajectories of "
                f"{min(trajectories.n_steps(i) for i in range(len(trajectories)))} frames "
                f"({trajectories.files[0].path}{' ...' if len(trajectories.files) > 1 else ''})"
            )
        self.span = span

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, j: int) -> dict[str, Any]:
        i, t0 = self.index[j]
        frames = self.traj.read(i, t0, t0 + self.span, self.step)
        return {
            "input": torch.from_numpy(frames[: self.history]),
            "target": torch.from_numpy(frames[self.history:]),
            "params": torch.from_numpy(self.traj.params(i).astype(np.float32)),
            "mask": torch.from_numpy(self.traj.mask(i)),
            "traj": i,
            "t0": t0,
        }

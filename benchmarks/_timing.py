"""Wall and CPU seconds of a call, with a GPU's queued work included."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def sync(device: torch.device | str) -> None:
    """Wait for the work queued on ``device`` (nothing to wait for on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device | str) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of ``fn()``; on a GPU synchronised before and after, so the wall
    time covers the kernels the call queued."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu

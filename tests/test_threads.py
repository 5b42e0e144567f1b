"""The default torch thread count: the cores other work leaves idle, shared among this machine's
training processes, never above torch's own default; explicit requests win."""

from __future__ import annotations

import pytest
import torch

from sciflow.threads import configure_threads, default_threads


@pytest.mark.parametrize(("cores", "load", "torch_default", "processes", "expected"), [
    (2, 0.0, 2, 1, 2),    # idle 2-core machine: torch's default
    (2, 0.4, 2, 1, 2),    # a little background noise is not a busy core
    (2, 1.3, 2, 1, 1),    # one core busy elsewhere
    (2, 9.0, 2, 1, 1),    # overloaded: never fewer than one
    (8, 0.0, 4, 1, 4),    # never above torch's default (physical cores)
    (8, 0.0, 4, 4, 2),    # four DDP ranks share the cores
    (8, 6.2, 4, 2, 1),    # two idle cores for two ranks
    (1, 0.0, 1, 2, 1),
])
def test_default_threads(cores, load, torch_default, processes, expected):
    assert default_threads(processes, cores=cores, load=load, torch_default=torch_default) == expected


def test_configure_threads_prefers_explicit_requests(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert configure_threads(1) == (1, "as requested") and torch.get_num_threads() == 1
    assert configure_threads() == (2, "from OMP_NUM_THREADS") and torch.get_num_threads() == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    n, why = configure_threads()
    assert n == default_threads() and "default for" in why and "--threads" in why
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
        configure_threads(0)

from __future__ import annotations

import pytest
import torch

from tests.synthetic import make_dataset


@pytest.fixture(scope="module", autouse=True)
def _one_thread_per_module():
    # the same for module-scoped fixtures (datasets, models trained once per module), which run
    # before the per-test fixture below
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    # One intra-op thread per test process: the suite runs in parallel processes (pytest -n), and
    # oversubscribed cores make small-tensor training many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def synthetic_card(tmp_path):
    """Path of a card for a tiny synthetic dataset written under tmp_path."""
    return make_dataset(tmp_path / "synthetic")

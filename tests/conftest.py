from __future__ import annotations

import pytest
import torch

from tests.synthetic import make_dataset


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def synthetic_card(tmp_path):
    """Path of a card for a tiny synthetic dataset written under tmp_path."""
    return make_dataset(tmp_path / "synthetic")

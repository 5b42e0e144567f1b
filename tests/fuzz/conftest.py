from __future__ import annotations

import os

import pytest

from tests.fuzz.harness import write_report


@pytest.fixture(autouse=True)
def _fuzz_report():
    """With SCIFLOW_FUZZ_REPORT=path, the tally so far is written after every fuzz test."""
    yield
    path = os.environ.get("SCIFLOW_FUZZ_REPORT")
    if path:
        write_report(path)

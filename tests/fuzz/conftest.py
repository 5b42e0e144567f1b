from __future__ import annotations

import os

import pytest

from tests.fuzz.harness import write_report


@pytest.fixture(scope="session", autouse=True)
def _fuzz_report():
    yield
    path = os.environ.get("SCIFLOW_FUZZ_REPORT")
    if path:
        write_report(path)

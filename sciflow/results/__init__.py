"""Rollout results: the collector (per-step statistics and scores, in memory or streamed to
netCDF), the score registry, netCDF files and the summary of plain numbers.

See :mod:`sciflow.results.collector` for the layout of a results dataset.
"""

from sciflow.results.collector import RolloutCollector
from sciflow.results.files import (
    decode_attrs,
    encode_attrs,
    open_results,
    read_results,
    write_results,
)
from sciflow.results.scores import DEFAULT_SCORES, EXTRA_DIMS, Score, StepContext
from sciflow.results.summary import THRESHOLDS, summarize

__all__ = [
    "DEFAULT_SCORES",
    "EXTRA_DIMS",
    "THRESHOLDS",
    "RolloutCollector",
    "Score",
    "StepContext",
    "decode_attrs",
    "encode_attrs",
    "open_results",
    "read_results",
    "summarize",
    "write_results",
]

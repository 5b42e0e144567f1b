"""Numerical solvers that generate training data, looked up by problem name."""

from __future__ import annotations

import importlib

from sciflow.data.case import BoundarySpec, Case
from sciflow.solvers.base import Problem

# problem name -> "module:Class"; classes are imported only when asked for, so that importing
# sciflow does not pay for every solver.
PROBLEMS: dict[str, str] = {
    "cavity": "sciflow.solvers.cavity:Cavity",
    "cylinder": "sciflow.solvers.cylinder:Cylinder",
    "dam": "sciflow.solvers.dam:Dam",
    "ks": "sciflow.solvers.ks:KS",
    "tube": "sciflow.solvers.tube:Tube",
}


def get_problem(name: str) -> Problem:
    """Instantiate the registered problem ``name`` (e.g. ``"cavity"``)."""
    try:
        target = PROBLEMS[name]
    except KeyError:
        raise KeyError(f"unknown problem {name!r}; known: {sorted(PROBLEMS)}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["PROBLEMS", "BoundarySpec", "Case", "Problem", "get_problem"]

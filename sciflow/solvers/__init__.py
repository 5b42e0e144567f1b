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
    "heat": "sciflow.solvers.gpme:Heat",
    "heat_fv": "sciflow.solvers.gpme:HeatFV",
    "ks": "sciflow.solvers.ks:KS",
    "pme": "sciflow.solvers.gpme:PorousMedium",
    "pme_fv": "sciflow.solvers.gpme:PorousMediumFV",
    "stefan": "sciflow.solvers.gpme:Stefan",
    "stefan_fv": "sciflow.solvers.gpme:StefanFV",
    "sph_cavity": "sciflow.solvers.sph_cavity:LidDrivenCavity",
    "sph_dam": "sciflow.solvers.sph_dam:DamBreak",
    "sph_tgv": "sciflow.solvers.sph_tgv:TaylorGreen",
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

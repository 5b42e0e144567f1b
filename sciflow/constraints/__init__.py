"""Conservation laws as linear constraints ``G u = b(t)`` and the ProbConserv update.

- laws (one job each): :class:`Integral`, :class:`CrossSectionFlux`, :class:`VertexDivergence`,
  stacked by :class:`LawSet`; built from a card's ``conservation:`` entries by
  :func:`constraints_from_card`;
- ``b(t)``: :class:`Budget` (initial amount + cumulative boundary flux);
- the update: :func:`probconserv_update` (mean and variance), :func:`project_members` (every
  ensemble member, HardC or variance-weighted);
- over a rollout: :class:`ConservationMonitor` (targets and errors) and the ``project`` hook
  :func:`projection_hook`.
"""

from sciflow.constraints.base import LinearLaw
from sciflow.constraints.budget import Budget, BudgetSpec
from sciflow.constraints.build import (
    KINDS,
    Constraint,
    Grid,
    LawError,
    constraints_from_card,
    grid_from_trajectories,
)
from sciflow.constraints.cross_section import CrossSectionFlux
from sciflow.constraints.divergence import VertexDivergence
from sciflow.constraints.integral import Integral
from sciflow.constraints.lawset import LawSet, stack
from sciflow.constraints.projection import (
    METHODS,
    ConservationErrors,
    ConservationMonitor,
    ConservationProjection,
    projection_hook,
)
from sciflow.constraints.solve import ConvergenceWarning, solve_normal
from sciflow.constraints.update import (
    ensemble_moments,
    probconserv_update,
    project,
    project_members,
    weights_from_variance,
)

__all__ = [
    "KINDS",
    "METHODS",
    "Budget",
    "BudgetSpec",
    "ConservationErrors",
    "ConservationMonitor",
    "ConservationProjection",
    "Constraint",
    "ConvergenceWarning",
    "CrossSectionFlux",
    "Grid",
    "Integral",
    "LawError",
    "LawSet",
    "LinearLaw",
    "VertexDivergence",
    "constraints_from_card",
    "ensemble_moments",
    "grid_from_trajectories",
    "probconserv_update",
    "project",
    "project_members",
    "projection_hook",
    "solve_normal",
    "stack",
    "weights_from_variance",
]

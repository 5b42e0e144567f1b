"""Conservation laws from a dataset card's ``conservation:`` entries and the data's grid.

Each entry names a ``kind`` and a ``field``; the kinds (:data:`KINDS`) are

- ``integral``: the integral of a scalar field keeps its initial amount plus what enters through
  the boundary: ``cumulative_flux`` (a formula in the parameters and ``t``, the amount entered
  since ``t = 0``; default 0) and ``outflow`` (``{side, fields}``: the outflow through one side,
  the product of the scalar and the normal velocity summed over that side's cells, taken from the
  rollout's own states);
- ``integral_with_flux``: the same, with at least one flux given;
- ``cross_section_flux``: the flux of a vector field through every section normal to ``axis``
  equals ``value`` (a formula in the parameters; default the initial flux); sections through
  solid cells are left out;
- ``divergence_free``: the vertex divergence of a 2D vector field is zero
  (:mod:`sciflow.constraints.divergence`).

``quadrature`` says what the stored numbers are: ``cells`` (cell averages: ``h`` per cell) or
``points`` (point values on a grid that includes both ends: the trapezoid rule); the default is
``points``, ProbConserv's convention, and periodic data need no choice. A law that names a field
the data lack, an axis they do not have, or a grid it cannot integrate (not uniform, too short)
is refused here, with the card, the law and the field in the message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sciflow.constraints.base import LinearLaw
from sciflow.constraints.budget import BudgetSpec
from sciflow.constraints.cross_section import CrossSectionFlux
from sciflow.constraints.divergence import VertexDivergence
from sciflow.constraints.expressions import ExpressionError, evaluate, names_in
from sciflow.constraints.integral import Integral
from sciflow.metrics.conservation import cell_average_weights, trapezoid_weights

QUADRATURES = ("cells", "points")
SIDES = {"left": (0, 0), "right": (0, -1), "bottom": (1, 0), "top": (1, -1)}


class LawError(ValueError):
    """A card's conservation law does not fit the data; the message names the law and field."""


@dataclass
class Grid:
    """What the laws need to know about the data, per batch element.

    Attributes:
        channels: the state's channel names (``velocity_x``, ``velocity_y``, ``pressure`` ...).
        spatial_dims: axis names, x first.
        coords: one mapping per batch element, axis name -> ``(n,)`` coordinates.
        params: ``(B, P)`` operating parameters, named by ``param_names``.
        mask: ``(B, *S)`` bool fluid cells, or None.
        periodic: whether the domain is periodic.
    """

    channels: Sequence[str]
    spatial_dims: Sequence[str]
    coords: Sequence[Mapping[str, np.ndarray]]
    params: np.ndarray
    param_names: Sequence[str]
    mask: np.ndarray | None = None
    periodic: bool = False

    @property
    def batch(self) -> int:
        return len(self.coords)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(self.coords[0][d]) for d in self.spatial_dims)

    def names(self) -> dict[str, np.ndarray]:
        """Parameter name -> ``(B,)`` values, for formulas."""
        p = np.asarray(self.params, dtype=np.float64).reshape(self.batch, -1)
        return {n: p[:, i] for i, n in enumerate(self.param_names)}

    def mask_tensor(self) -> Tensor | None:
        return None if self.mask is None else torch.as_tensor(np.asarray(self.mask, dtype=bool))


@dataclass
class Constraint:
    """One card entry as a law ``G u = b(t)``: the law and how its ``b`` is made."""

    kind: str
    field: str
    law: LinearLaw
    budget: BudgetSpec
    entry: dict[str, Any] = field(default_factory=dict)


def grid_from_trajectories(traj: Any, indices: Sequence[int], periodic: bool = False) -> Grid:
    """The :class:`Grid` of trajectories ``indices`` of a :class:`~sciflow.data.Trajectories`."""
    coords = []
    for i in indices:
        f, b = traj.index[i]
        coords.append(traj.files[f].coords_of(b))
    return Grid(
        channels=list(traj.channel_names),
        spatial_dims=list(traj.spatial_dims),
        coords=coords,
        params=np.stack([traj.params(i) for i in indices]),
        param_names=list(traj.param_names),
        mask=np.stack([traj.mask(i) for i in indices]) if traj.has_mask else None,
        periodic=periodic,
    )


# -- helpers ---------------------------------------------------------------------------------------

class _Where:
    """The law's place in its card, for messages."""

    def __init__(self, card: str, index: int, entry: Mapping[str, Any]):
        self.text = f"card {card!r}, conservation law {index} ({entry.get('kind')!r} of field {entry.get('field')!r})"

    def fail(self, msg: str) -> LawError:
        return LawError(f"{self.text}: {msg}")


def _scalar_channel(grid: Grid, name: str, where: _Where) -> int:
    if name in grid.channels:
        return list(grid.channels).index(name)
    vec = [f"{name}_{d}" for d in grid.spatial_dims]
    if all(c in grid.channels for c in vec):
        raise where.fail(f"field {name!r} is a vector; this law needs a scalar field")
    raise where.fail(f"the data have no field {name!r} (channels: {list(grid.channels)})")


def _vector_channels(grid: Grid, name: str, where: _Where) -> list[int]:
    vec = [f"{name}_{d}" for d in grid.spatial_dims]
    if all(c in grid.channels for c in vec):
        return [list(grid.channels).index(c) for c in vec]
    if name in grid.channels:
        raise where.fail(f"field {name!r} is a scalar; this law needs a vector field")
    raise where.fail(f"the data have no field {name!r} (channels: {list(grid.channels)})")


def _spacing(grid: Grid, where: _Where) -> np.ndarray:
    """``(B, D)`` cell sizes; the grid must be uniform along every axis."""
    out = np.zeros((grid.batch, len(grid.spatial_dims)))
    for b, coords in enumerate(grid.coords):
        for a, d in enumerate(grid.spatial_dims):
            x = np.asarray(coords[d], dtype=np.float64)
            if x.size < 2:
                raise where.fail(f"axis {d!r} has {x.size} point(s); a law needs at least 2")
            h = (x[-1] - x[0]) / (x.size - 1)
            # coordinates are stored in float32: allow its rounding, not a stretched grid
            if not h > 0 or np.max(np.abs(np.diff(x) - h)) > 1e-4 * abs(h):
                raise where.fail(f"axis {d!r} of batch element {b} is not a uniform grid; the law cannot integrate it")
            out[b, a] = h
    return out


def _weights(grid: Grid, h: np.ndarray, quadrature: str, axes: Sequence[int], where: _Where) -> Tensor:
    """``(B, *S)`` weights integrating over ``axes`` (1 along the others), mask folded in."""
    if quadrature not in QUADRATURES:
        raise where.fail(f"quadrature {quadrature!r} unknown; use one of {list(QUADRATURES)}")
    shape = grid.shape
    rows = []
    for b in range(grid.batch):
        w = torch.ones((), dtype=torch.float64)
        for a, n in enumerate(shape):
            if a not in axes:
                axis = torch.ones(n, dtype=torch.float64)
            elif grid.periodic or quadrature == "cells":
                axis = cell_average_weights(n, float(h[b, a]))
            else:
                axis = trapezoid_weights(n, float(h[b, a]))
            w = w[..., None] * axis
        rows.append(w)
    w = torch.stack(rows)
    mask = grid.mask_tensor()
    return w if mask is None else w * mask


def _formula(expr: Any, grid: Grid, where: _Where, key: str, with_time: bool) -> Callable[[np.ndarray], np.ndarray]:
    known = set(grid.param_names) | ({"t"} if with_time else set())
    try:
        unknown = names_in(str(expr), f"{where.text}: {key}") - known
    except ExpressionError as e:
        raise LawError(str(e)) from None
    if unknown:
        raise where.fail(f"{key} {expr!r} uses {sorted(unknown)}, which are not parameters"
                         f"{' or t' if with_time else ''} (parameters: {list(grid.param_names)})")
    names = grid.names()

    def f(t: np.ndarray) -> np.ndarray:
        return evaluate(expr, {**names, "t": np.asarray(t, dtype=np.float64)}, f"{where.text}: {key}")

    try:  # refuse what cannot be evaluated now, not in the middle of a rollout
        f(np.zeros(grid.batch))
    except ExpressionError as e:
        raise LawError(str(e)) from None
    return f


def _outflow(spec: Any, grid: Grid, scalar: int, h: np.ndarray, where: _Where) -> Callable[[Tensor], Tensor]:
    if not isinstance(spec, Mapping) or set(spec) - {"side", "velocity"} or "side" not in spec:
        raise where.fail(f"outflow must be {{side: left|right|bottom|top, velocity: <vector field>}}, got {spec!r}")
    if spec["side"] not in SIDES or len(grid.spatial_dims) != 2:
        raise where.fail(f"outflow side {spec['side']!r}: needs a 2D grid and one of {sorted(SIDES)}")
    axis, index = SIDES[spec["side"]]
    normal = _vector_channels(grid, str(spec.get("velocity", "velocity")), where)[axis]
    sign = 1.0 if index == -1 else -1.0  # outward normal
    across = torch.as_tensor(h[:, 1 - axis], dtype=torch.float64)
    mask = grid.mask_tensor()

    def rate(u: Tensor) -> Tensor:
        a = u[..., scalar, :, :] * u[..., normal, :, :]
        if mask is not None:
            a = a * mask.to(a.device)
        side = a[..., index, :] if axis == 0 else a[..., :, index]
        return -sign * side.sum(-1) * across.to(a.device)  # inflow positive

    return rate


# -- the kinds ---------------------------------------------------------------------------------------

def _integral(entry: Mapping[str, Any], grid: Grid, where: _Where, needs_flux: bool) -> tuple[LinearLaw, BudgetSpec]:
    c = _scalar_channel(grid, str(entry["field"]), where)
    h = _spacing(grid, where)
    w = _weights(grid, h, str(entry.get("quadrature", "points")), range(len(grid.shape)), where)
    flux = entry.get("cumulative_flux")
    F = None if flux is None else _formula(flux, grid, where, "cumulative_flux", with_time=True)
    rates = [] if entry.get("outflow") is None else [_outflow(entry["outflow"], grid, c, h, where)]
    if needs_flux and F is None and not rates:
        raise where.fail("gives neither cumulative_flux nor outflow: no way to tell what enters or leaves")
    law = Integral(w, c, len(grid.channels), name=f"integral of {entry['field']}")
    return law, BudgetSpec("initial", cumulative_flux=F, rates=rates)


def _cross_section(entry: Mapping[str, Any], grid: Grid, where: _Where) -> tuple[LinearLaw, BudgetSpec]:
    chans = _vector_channels(grid, str(entry["field"]), where)
    axis_name = str(entry.get("axis", grid.spatial_dims[0]))
    if axis_name not in grid.spatial_dims:
        raise where.fail(f"axis {axis_name!r} is not one of the data's axes {list(grid.spatial_dims)}")
    axis = list(grid.spatial_dims).index(axis_name)
    h = _spacing(grid, where)
    others = [a for a in range(len(grid.shape)) if a != axis]
    w = _weights(grid, h, str(entry.get("quadrature", "points")), others, where)
    mask = grid.mask_tensor()
    # a section that cuts an obstacle carries the flux only through part of its width: left out
    sections = None if mask is None else mask.all(dim=tuple(1 + a for a in others))
    law = CrossSectionFlux(w, chans[axis], len(grid.channels), axis=axis, sections=sections,
                           name=f"flux of {entry['field']} through sections normal to {axis_name}")
    if entry.get("value") is None:
        return law, BudgetSpec("initial")
    value = _formula(entry["value"], grid, where, "value", with_time=False)(np.zeros(grid.batch))
    value = np.broadcast_to(value, (grid.batch,))
    return law, BudgetSpec("fixed", value=torch.as_tensor(value.copy())[:, None].expand(-1, law.n_constraints))


def _divergence(entry: Mapping[str, Any], grid: Grid, where: _Where) -> tuple[LinearLaw, BudgetSpec]:
    if len(grid.spatial_dims) != 2:
        raise where.fail(f"the vertex divergence needs a 2D grid, the data have axes {list(grid.spatial_dims)}")
    chans = _vector_channels(grid, str(entry["field"]), where)
    h = _spacing(grid, where)
    law = VertexDivergence(torch.as_tensor(h), (chans[0], chans[1]), len(grid.channels), grid.shape,
                           grid.mask_tensor(), name=f"divergence of {entry['field']}")
    return law, BudgetSpec("zero")


KINDS: dict[str, Callable[[Mapping[str, Any], Grid, _Where], tuple[LinearLaw, BudgetSpec]]] = {
    "integral": lambda e, g, w: _integral(e, g, w, needs_flux=False),
    "integral_with_flux": lambda e, g, w: _integral(e, g, w, needs_flux=True),
    "cross_section_flux": _cross_section,
    "divergence_free": _divergence,
}
_KEYS = {"kind", "field", "description", "quadrature", "cumulative_flux", "outflow", "axis", "value"}


def _has_field(grid: Grid, name: str) -> bool:
    return name in grid.channels or all(f"{name}_{d}" in grid.channels for d in grid.spatial_dims)


def constraints_from_card(entries: Sequence[Mapping[str, Any]], grid: Grid, *, card: str = "card",
                          kinds: Sequence[str] | None = None, skip_missing: bool = False) -> list[Constraint]:
    """One :class:`Constraint` per card entry (``kinds``: keep only those kinds).

    Raises :class:`LawError` naming the card, the law and the field when a law does not fit the
    data, and when no entry is left. ``skip_missing=True`` leaves out, instead of refusing, the
    laws of fields the states do not carry (a model trained on a card's velocity only, monitored
    against the card's laws); a projection should refuse them.
    """
    out = []
    for i, entry in enumerate(entries):
        where = _Where(card, i, entry)
        if not isinstance(entry, Mapping) or "kind" not in entry or "field" not in entry:
            raise LawError(f"card {card!r}, conservation law {i}: needs 'kind' and 'field', got {entry!r}")
        kind = str(entry["kind"])
        if kind not in KINDS:
            raise where.fail(f"unknown kind {kind!r}; known: {sorted(KINDS)}")
        unknown = set(entry) - _KEYS
        if unknown:
            raise where.fail(f"unknown key(s) {sorted(unknown)}; known: {sorted(_KEYS)}")
        if kinds is not None and kind not in kinds:
            continue
        if skip_missing and not _has_field(grid, str(entry["field"])):
            continue
        law, budget = KINDS[kind](entry, grid, where)
        out.append(Constraint(kind, str(entry["field"]), law, budget, dict(entry)))
    if not out:
        wanted = "" if kinds is None else f" of kind(s) {list(kinds)}"
        raise LawError(f"card {card!r}: no conservation law{wanted} to apply")
    return out


__all__ = ["KINDS", "Constraint", "Grid", "LawError", "constraints_from_card", "grid_from_trajectories"]

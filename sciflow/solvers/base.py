"""What every data-generating solver returns, and how a problem describes its sweep.

A solver knows no file format: it returns a :class:`~sciflow.data.case.Case` (plain numpy arrays,
x-first axes; the contract lives in the data layer) and the sweep driver writes it through
:mod:`sciflow.data.format`.
"""

from __future__ import annotations

from typing import Protocol

from sciflow.data.case import Case


class Problem(Protocol):
    """A family of cases: a name, its parameter vector and a way to simulate one case.

    The sweep (which parameter values, how many cases, frame spacing) lives in the dataset card
    and is driven by :mod:`sciflow.solvers.sweep`; a problem only turns one parameter set into a
    :class:`Case`. ``simulate`` is deterministic given its arguments (``seed`` drives any random
    initial condition or symmetry-breaking perturbation).
    """

    name: str
    param_names: list[str]

    def simulate(
        self,
        params: dict[str, float],
        *,
        grid: tuple[int, ...],
        frames: int,
        frame_dt: float,
        seed: int = 0,
    ) -> Case: ...

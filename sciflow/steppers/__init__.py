"""Steppers: how an operator is trained and stepped (deterministic, flow matching, PDE-Refiner,
CRPS-trained ensemble).

Particle operators have their own stepper, :class:`sciflow.steppers.particle.ParticleStepper`
(GNS kinematics and training noise), built by the particle surrogate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sciflow.registry import build
from sciflow.steppers.base import Stepper

STEPPERS: dict[str, str] = {
    "deterministic": "sciflow.steppers.deterministic:Deterministic",
    "flow_matching": "sciflow.steppers.flow_matching:FlowMatching",
    "refiner": "sciflow.steppers.refiner:Refiner",
    "crps": "sciflow.steppers.crps:CRPSEnsemble",
}


def build_stepper(spec: Mapping[str, Any] | str | None, *, operator: Mapping[str, Any], **sizes: Any) -> Stepper:
    """Build a stepper from its spec (default deterministic) around the operator spec.

    ``sizes`` are the data-derived arguments (``n_channels, n_dims, n_params, history, has_mask,
    periodic, residual_scale``).
    """
    return build(spec or "deterministic", STEPPERS, "stepper", Stepper, sizes, operator=operator)


__all__ = ["STEPPERS", "Stepper", "build_stepper"]

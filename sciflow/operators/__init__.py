"""Neural operators: plain ``nn.Module``s mapping ``(B, C_in, *S)`` (+ ``cond: (B, D)``) to
``(B, C_out, *S)``, and a registry to build them from a config spec.

Every registered class takes ``(in_channels, out_channels, n_dims, cond_dim=0, *, periodic=...,
<hyperparameters>)``; the sizes are injected from the data by :func:`build_operator`, configs
give only hyperparameters.

Particle operators (GNS, the reduced-order sparse-to-dense operator) have their own contract
(:mod:`sciflow.operators.particle`: a particle cloud in, a normalised acceleration per particle
out), their own registry :data:`PARTICLE_OPERATORS` and builder :func:`build_particle_operator`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from sciflow.registry import build, resolve_class

# Lazy "module:Class" references, so importing the registry does not import every operator.
OPERATORS: dict[str, str] = {
    "fno": "sciflow.operators.fno:FNO",
    "unet": "sciflow.operators.unet:UNet",
    "factformer": "sciflow.operators.factformer:FactFormer",
    "ifactformer": "sciflow.operators.factformer:IFactFormer",
}

# Sizes that come from the data, never from a config.
INJECTED = ("in_channels", "out_channels", "n_dims", "cond_dim")

PARTICLE_OPERATORS: dict[str, str] = {
    "gns": "sciflow.operators.gns:GNS",
    "reduced_order": "sciflow.operators.reduced_order:ReducedOrder",
}

# What a particle dataset decides for a particle operator.
PARTICLE_INJECTED = ("dim", "history", "cond_dim", "bounds", "periodic", "radius", "dx")


def get_operator_class(class_path: str) -> type[nn.Module]:
    """Resolve a registry key (``"fno"``) or a dotted path (``"sciflow.operators.fno.FNO"``)."""
    return resolve_class(class_path, OPERATORS, "operator", nn.Module)


def build_operator(
    spec: Mapping[str, Any] | str,
    *,
    in_channels: int,
    out_channels: int,
    n_dims: int,
    cond_dim: int,
) -> nn.Module:
    """Build an operator from ``{"class_path": ..., "init_args": {...}}`` (or a bare registry key).

    ``init_args`` holds hyperparameters only (it may be missing); the data-derived sizes are
    passed here. Unknown names in the spec or in ``init_args`` raise a ``ValueError`` that
    names them.
    """
    sizes = {"in_channels": in_channels, "out_channels": out_channels, "n_dims": n_dims, "cond_dim": cond_dim}
    return build(spec, OPERATORS, "operator", nn.Module, sizes)


def build_particle_operator(spec: Mapping[str, Any] | str, **injected: Any) -> nn.Module:
    """Build a particle operator from its spec; ``injected`` holds exactly
    :data:`PARTICLE_INJECTED` (sizes and geometry from the data)."""
    if set(injected) != set(PARTICLE_INJECTED):
        raise ValueError(f"build_particle_operator: expected the data-derived arguments {list(PARTICLE_INJECTED)}, "
                         f"got {sorted(injected)}")
    return build(spec, PARTICLE_OPERATORS, "particle operator", nn.Module, injected)


__all__ = ["INJECTED", "OPERATORS", "PARTICLE_INJECTED", "PARTICLE_OPERATORS", "build_operator",
           "build_particle_operator", "get_operator_class"]

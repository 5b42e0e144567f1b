"""Neural operators: plain ``nn.Module``s mapping ``(B, C_in, *S)`` (+ ``cond: (B, D)``) to
``(B, C_out, *S)``, and a registry to build them from a config spec.

Every registered class takes ``(in_channels, out_channels, n_dims, cond_dim=0, *, periodic=...,
<hyperparameters>)``; the sizes are injected from the data by :func:`build_operator`, configs
give only hyperparameters.
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


__all__ = ["INJECTED", "OPERATORS", "build_operator", "get_operator_class"]

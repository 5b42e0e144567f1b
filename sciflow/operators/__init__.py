"""Neural operators: plain ``nn.Module``s mapping ``(B, C_in, *S)`` (+ ``cond: (B, D)``) to
``(B, C_out, *S)``, and a registry to build them from a config spec.

Every registered class takes ``(in_channels, out_channels, n_dims, cond_dim=0, *, periodic=...,
<hyperparameters>)``; the sizes are injected from the data by :func:`build_operator`, configs
give only hyperparameters.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

# Lazy "module:Class" references, so importing the registry does not import every operator.
OPERATORS: dict[str, str] = {
    "fno": "sciflow.operators.fno:FNO",
    "unet": "sciflow.operators.unet:UNet",
    "factformer": "sciflow.operators.factformer:FactFormer",
    "ifactformer": "sciflow.operators.factformer:IFactFormer",
}

# Sizes that come from the data, never from a config.
INJECTED = ("in_channels", "out_channels", "n_dims", "cond_dim")


def _import_path(path: str) -> type:
    """Import ``"pkg.module:Class"`` or ``"pkg.module.Class"``."""
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"cannot import {path!r}: expected 'package.module.Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"cannot import module {module_name!r} of class_path {path!r}: {err}"
        ) from err
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(
            f"module {module_name!r} has no attribute {attr!r} (class_path {path!r})"
        ) from None


def get_operator_class(class_path: str) -> type[nn.Module]:
    """Resolve a registry key (``"fno"``) or a dotted path (``"sciflow.operators.fno.FNO"``)."""
    if not isinstance(class_path, str) or not class_path:
        raise ValueError(f"class_path must be a non-empty string, got {class_path!r}")
    key = class_path.lower()
    if key in OPERATORS:
        return _import_path(OPERATORS[key])
    if "." not in class_path and ":" not in class_path:
        raise ValueError(
            f"unknown operator {class_path!r}; known operators: {', '.join(sorted(OPERATORS))} "
            "(or give a dotted path 'package.module.Class')"
        )
    cls = _import_path(class_path)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"class_path {class_path!r} does not name an nn.Module subclass")
    return cls


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
    if isinstance(spec, str):
        spec = {"class_path": spec}
    if not isinstance(spec, Mapping):
        raise ValueError(f"operator spec must be a mapping with 'class_path', got {spec!r}")
    extra = set(spec) - {"class_path", "init_args"}
    if extra:
        raise ValueError(
            f"operator spec has unknown keys {sorted(extra)}; expected 'class_path' and "
            "optionally 'init_args'"
        )
    if "class_path" not in spec:
        raise ValueError(f"operator spec needs a 'class_path'; got keys {sorted(spec)}")
    cls = get_operator_class(spec["class_path"])
    init_args = dict(spec.get("init_args") or {})

    injected = sorted(set(init_args) & set(INJECTED))
    if injected:
        raise ValueError(
            f"init_args of {spec['class_path']!r} must not set {injected}: these sizes are "
            "taken from the data"
        )
    params = inspect.signature(cls.__init__).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not takes_kwargs:
        allowed = {n for n in params if n != "self"} - set(INJECTED)
        unknown = sorted(set(init_args) - allowed)
        if unknown:
            raise ValueError(
                f"{cls.__name__} does not take init_args {unknown}; it takes {sorted(allowed)}"
            )
    return cls(
        in_channels=in_channels,
        out_channels=out_channels,
        n_dims=n_dims,
        cond_dim=cond_dim,
        **init_args,
    )


__all__ = ["OPERATORS", "build_operator", "get_operator_class"]

"""External body forces declared as data, never as code.

LagrangeBench lets a dataset folder carry a ``force.py`` that its loader imports and runs; sciflow
never executes code from a data folder. A dataset instead declares its forcing in
``metadata.json`` under ``external_force``, as one of the named laws below with its parameters:

- ``{"law": "none"}``: no body force;
- ``{"law": "gravity", "vector": [g_x, g_y(, g_z)]}``: a constant acceleration;
- ``{"law": "reverse_poiseuille", "magnitude": F, "axis": 0, "across": 1, "split": y_s}``: an
  acceleration ``+F`` along ``axis`` where ``x[across] < split`` and ``-F`` where it is not (the
  reverse Poiseuille forcing of LagrangeBench's RPF sets: F = 1, axis x, split at y = 1).

Each law maps positions ``(..., N, D)`` (numpy or torch) to accelerations of the same shape, in
the dataset's units (per unit mass, per second squared). Operators may use it as a node feature
(as GNS-style models do with ``force.py``), the SPH solver uses the same function to drive the flow.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

Array = TypeVar("Array")  # a numpy array or a torch tensor


def _torch(x: object):
    """The torch module when ``x`` is a tensor, else None (numpy callers never import torch)."""
    torch = sys.modules.get("torch")
    return torch if torch is not None and isinstance(x, torch.Tensor) else None


def _zeros(x: Array) -> Array:
    return (_torch(x) or np).zeros_like(x)


def _as(x: Array, values: Any) -> Array:
    torch = _torch(x)
    if torch is not None:
        return torch.as_tensor(values, dtype=x.dtype, device=x.device)
    return np.asarray(values, dtype=x.dtype)


def _none(x: Array, law: Mapping[str, Any]) -> Array:
    return _zeros(x)


def _gravity(x: Array, law: Mapping[str, Any]) -> Array:
    return _zeros(x) + _as(x, law["vector"])


def _reverse_poiseuille(x: Array, law: Mapping[str, Any]) -> Array:
    axis, across = int(law.get("axis", 0)), int(law.get("across", 1))
    F = float(law["magnitude"])
    out = _zeros(x)
    below = x[..., across] < float(law.get("split", 1.0))
    out[..., axis] = F * ((_torch(x) or np).where(below, 1.0, -1.0))
    return out


# name -> (function, required keys, optional keys)
FORCE_LAWS: dict[str, tuple[Callable[[Any, Mapping[str, Any]], Any], tuple[str, ...], tuple[str, ...]]] = {
    "none": (_none, (), ()),
    "gravity": (_gravity, ("vector",), ()),
    "reverse_poiseuille": (_reverse_poiseuille, ("magnitude",), ("axis", "across", "split")),
}


def validate_force(law: Mapping[str, Any] | None, dim: int, where: str = "external_force") -> dict[str, Any]:
    """Check a declared law against ``FORCE_LAWS`` and the dimension; return it as a plain dict.

    ``None`` means no forcing. Raises ``ValueError`` naming ``where`` and the key at fault.
    """
    if law is None:
        return {"law": "none"}
    if not isinstance(law, Mapping) or "law" not in law:
        raise ValueError(f"{where}: expected a mapping with a 'law' key (one of {sorted(FORCE_LAWS)}), found {law!r}")
    name = law["law"]
    if name not in FORCE_LAWS:
        raise ValueError(f"{where}.law: unknown force law {name!r}; known: {sorted(FORCE_LAWS)}")
    _, required, optional = FORCE_LAWS[name]
    missing = [k for k in required if k not in law]
    if missing:
        raise ValueError(f"{where}: law {name!r} needs key(s) {missing}")
    unknown = sorted(set(law) - {"law", *required, *optional})
    if unknown:
        raise ValueError(f"{where}: law {name!r} does not take key(s) {unknown}")
    if name == "gravity" and np.shape(law["vector"]) != (dim,):
        raise ValueError(f"{where}.vector: expected {dim} components (dim), found {law['vector']!r}")
    for k in ("axis", "across"):
        if k in law and not 0 <= int(law[k]) < dim:
            raise ValueError(f"{where}.{k}: {law[k]!r} is not an axis of a {dim}D box")
    return dict(law)


def body_force(law: Mapping[str, Any] | None, position: Array) -> Array:
    """Accelerations ``(..., N, D)`` of the declared law at ``position (..., N, D)``."""
    law = validate_force(law, int(position.shape[-1]))
    return FORCE_LAWS[law["law"]][0](position, law)

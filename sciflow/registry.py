"""Build classes from ``{"class_path": ..., "init_args": {...}}`` specs, with short registry names.

Configs name a class by a registry key (``"fno"``) or a dotted path, and give only its
hyperparameters; sizes that come from the data are injected by the caller. Errors name the spec
key or argument at fault.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any


def import_path(path: str) -> Any:
    """Import ``"pkg.module:Attr"`` or ``"pkg.module.Attr"``."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"cannot import {path!r}: expected 'package.module.Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import module {module_name!r} of class_path {path!r}: {err}") from err
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r} (class_path {path!r})") from None


def resolve_class(class_path: str, registry: Mapping[str, str], kind: str, base: type) -> type:
    """A registry key (case-insensitive) or a dotted path -> a subclass of ``base``."""
    if not isinstance(class_path, str) or not class_path:
        raise ValueError(f"{kind} class_path must be a non-empty string, got {class_path!r}")
    key = class_path.lower()
    if key in registry:
        return import_path(registry[key])
    if "." not in class_path and ":" not in class_path:
        raise ValueError(
            f"unknown {kind} {class_path!r}; known {kind}s: {', '.join(sorted(registry))} "
            "(or a dotted path 'package.module.Class')"
        )
    cls = import_path(class_path)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"class_path {class_path!r} does not name a {base.__name__} subclass")
    return cls


def build(spec: Mapping[str, Any] | str, registry: Mapping[str, str], kind: str, base: type,
          injected: Mapping[str, Any], **fixed: Any) -> Any:
    """Instantiate ``spec`` with its ``init_args`` plus the data-derived ``injected`` arguments.

    ``fixed`` are further constructor arguments the caller supplies (e.g. a sub-spec); like
    ``injected`` they may not be set in ``init_args``.
    """
    if isinstance(spec, str):
        spec = {"class_path": spec}
    if not isinstance(spec, Mapping):
        raise ValueError(f"{kind} spec must be a mapping with 'class_path', got {spec!r}")
    extra = set(spec) - {"class_path", "init_args"}
    if extra:
        raise ValueError(f"{kind} spec has unknown keys {sorted(extra)}; expected 'class_path' and 'init_args'")
    if "class_path" not in spec:
        raise ValueError(f"{kind} spec needs a 'class_path'; got keys {sorted(spec)}")
    cls = resolve_class(spec["class_path"], registry, kind, base)
    init_args = dict(spec.get("init_args") or {})
    reserved = sorted(set(init_args) & (set(injected) | set(fixed)))
    if reserved:
        raise ValueError(
            f"init_args of {spec['class_path']!r} must not set {reserved}: these are taken from the data"
        )
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        allowed = {n for n in params if n != "self"} - set(injected) - set(fixed)
        unknown = sorted(set(init_args) - allowed)
        if unknown:
            raise ValueError(f"{cls.__name__} does not take init_args {unknown}; it takes {sorted(allowed)}")
    return cls(**injected, **fixed, **init_args)

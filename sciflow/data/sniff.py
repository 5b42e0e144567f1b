"""Recognise foreign layouts, so that a reader handed one can say what it is and how to import it.

Only the top-level keys are looked at (cheap, and safe on a damaged file). The PDEBench importer
uses the same recognition, so ``sciflow data inspect`` and ``sciflow data import`` agree on what
a file is.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py

PDEBENCH_PER_FIELD_KEYS = ("density", "pressure", "Vx", "Vy", "Vz")


def pdebench_layout(f: h5py.Group) -> str | None:
    """``"tensor"``, ``"per-field"`` or ``"per-sample"`` when ``f`` is laid out as a PDEBench file,
    else None. A file in sciflow's own layout (it has ``t0_fields``) is never PDEBench."""
    try:
        keys = list(f.keys())
        if "t0_fields" in keys or "dimensions" in keys:
            return None
        if "tensor" in keys:
            return "tensor"
        if any(k in keys for k in PDEBENCH_PER_FIELD_KEYS):
            return "per-field"
        if any(k.isdigit() and isinstance(f.get(k), h5py.Group) for k in keys):
            return "per-sample"
    except Exception:  # noqa: BLE001 - a damaged file is simply not recognised
        return None
    return None


def foreign_hint(path: str | os.PathLike) -> str | None:
    """A sentence naming the foreign layout of ``path`` and the command that imports it, or None."""
    path = Path(path)
    if path.is_dir():
        if (path / "case.json").is_file() or any(path.glob("*/case.json")) or any(path.glob("*/*/case.json")):
            return (f"{path} is a CFDBench folder (case.json, u.npy, v.npy), not a file in sciflow's format; "
                    f"import it first: sciflow data import cfdbench {path} --out <dataset folder>")
        return None
    try:
        with h5py.File(path, "r") as f:
            layout = pdebench_layout(f)
    except Exception:  # noqa: BLE001 - unreadable files get the reader's own message
        return None
    if layout is None:
        return None
    return (f"{path} is a PDEBench file ({layout} layout), not a file in sciflow's format; import it "
            f"first: sciflow data import pdebench {path} --out <dataset folder>")

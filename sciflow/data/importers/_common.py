"""What both importers share: split assignment, output planning, the dataset card they write."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from sciflow.data.card import SPLITS
from sciflow.data.errors import DataError
from sciflow.data.format import atomic_path


def check_split(split: Sequence[float]) -> tuple[float, float, float]:
    """Validate ``(train, valid, test)`` fractions: three numbers >= 0 that sum to 1."""
    try:
        fr = tuple(float(s) for s in split)
    except (TypeError, ValueError) as e:
        raise DataError(f"split: expected three fractions (train, valid, test), found {split!r}") from e
    if len(fr) != 3 or any(not math.isfinite(s) or s < 0 for s in fr) or abs(sum(fr) - 1) > 1e-6:
        raise DataError(f"split: expected three fractions >= 0 summing to 1 (train, valid, test), found {split!r}")
    return fr  # type: ignore[return-value]


def _rank(seed: int, case_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"split/{seed}/{case_id}".encode()).digest()[:8], "little")


def assign_splits(ids: Sequence[str], split: Sequence[float], seed: int) -> dict[str, str]:
    """Map each id to ``train`` / ``valid`` / ``test``.

    Ids are ordered by a seeded hash of the id itself (not by position), then cut by the
    fractions: the same ids and seed always give the same splits, and a case keeps its rank when
    other cases are added. Once there are three ids, every split with a nonzero fraction gets at
    least one (a dataset with no validation case cannot be trained with the datamodule).
    """
    _, f_valid, f_test = check_split(split)
    if len(set(ids)) != len(ids):
        raise DataError("assign_splits: ids are not unique")
    order = sorted(ids, key=lambda c: _rank(seed, c))
    n = len(order)
    n_valid = round(n * f_valid)
    n_test = round(n * f_test)
    if n >= 3:
        n_valid = max(n_valid, 1 if f_valid > 0 else 0)
        n_test = max(n_test, 1 if f_test > 0 else 0)
    out = {}
    for k, cid in enumerate(order):
        out[cid] = "valid" if k < n_valid else "test" if k < n_valid + n_test else "train"
    return out


def prepare_outputs(out: Path, planned: dict[str, str]) -> dict[str, bool]:
    """Reconcile ``out/data`` with the planned files (file name -> split) before writing.

    A planned file that exists under its split is done (True: skip it). One that exists under
    another split (a different seed or case selection moved it) is moved, not rewritten. A file
    in ``out/data`` that is not planned means ``out`` holds another import: that is an error,
    since mixing two imports would silently train on both.
    """
    data = out / "data"
    existing: dict[str, Path] = {}
    for split in SPLITS:
        for p in sorted((data / split).glob("*.hdf5")) if (data / split).is_dir() else []:
            existing[p.name] = p
    stray = sorted(n for n in existing if n not in planned)
    if stray:
        raise FileExistsError(
            f"{data}: holds {len(stray)} file(s) that this import would not write (e.g. {stray[0]!r}); "
            f"import into an empty folder, or import the whole source again with the same selection"
        )
    done = {}
    for name, split in planned.items():
        target = data / split / name
        if name in existing and existing[name] != target:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(existing[name], target)
        done[name] = target.is_file()
    return done


def write_card(out: Path, card: dict[str, Any]) -> Path:
    """Write ``out/card.yaml`` atomically; return its path."""
    path = out / "card.yaml"
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(card, sort_keys=False, width=100))
    return path


def split_card(split: Sequence[float], seed: int) -> dict[str, float | int]:
    fr = check_split(split)
    return {"train": fr[0], "valid": fr[1], "test": fr[2], "seed": int(seed)}


def count_splits(assigned: Iterable[str]) -> dict[str, int]:
    counts = dict.fromkeys(SPLITS, 0)
    for s in assigned:
        counts[s] += 1
    return counts

"""Operating parameters of foreign files: where they can live, what was found, what is used.

A PDEBench-style file may carry a per-trajectory parameter in several places; this module finds
them, reads them for every trajectory, and reports each one, so that no parameter is dropped
without a word. A *source* says where a parameter lives:

``attr:KEY``
    attribute ``KEY`` of each sample group (per-sample layout), or of the file's root (other
    layouts: a number shared by every trajectory, or an array with one value per trajectory).
    ``attr:/KEY`` is always the root's.
``attr:KEY:PATH``
    attribute ``KEY`` holds YAML or JSON text (PDEBench stores its generator configuration so, as
    ``config``); ``PATH`` is a dotted path to a number inside it, e.g. ``attr:config:sim.k``.
``dataset:PATH[INDEX]``
    a dataset: at the root (``/params`` or ``params``, first axis = trajectory, ``(N,)`` or
    ``(N, P)`` with e.g. ``[:, 0]``), or inside each sample group (a number or ``(P,)`` with
    ``[0]``).

Found automatically (and used unless switched off): numeric attributes of every sample group,
numeric root attributes, numeric datasets with one value per trajectory (``(N,)`` at the root, a
scalar in each sample group). Found and reported but only used when named: numbers inside text
attributes, ``(N, P)`` / ``(P,)`` datasets, and numbers whose name marks them as a seed or index.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
import yaml

from sciflow.data.errors import DataError, DataFormatError, DataValueError

# numbers with these names identify a sample rather than describe its physics
_NOT_PHYSICS = re.compile(r"^(seed|random_seed|index|idx|id|sample|sample_id|latestindex)$", re.I)
_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_SOURCE = re.compile(r"^(?P<kind>attr|dataset):(?P<key>[^\[:]+)(?::(?P<path>[\w.\-]+))?(?P<index>\[[^\]]*\])?$")


@dataclass(frozen=True)
class ParamSource:
    """Where one parameter lives (see the module docstring for the syntax)."""

    kind: str  # "attr" | "dataset"
    key: str
    path: str | None = None  # dotted path inside a text attribute
    index: tuple[int | slice, ...] = ()

    def __str__(self) -> str:
        text = f"{self.kind}:{self.key}" + (f":{self.path}" if self.path else "")
        if self.index:
            text += "[" + ", ".join(":" if isinstance(i, slice) else str(i) for i in self.index) + "]"
        return text


def parse_source(text: str) -> ParamSource:
    """Parse ``attr:KEY``, ``attr:KEY:PATH`` or ``dataset:PATH[INDEX]``."""
    m = _SOURCE.match(text.strip())
    if m is None:
        raise DataError(f"parameter source {text!r}: expected attr:KEY, attr:KEY:PATH (a number inside "
                        f"a YAML/JSON attribute) or dataset:PATH[INDEX], e.g. dataset:params[:, 0]")
    index: list[int | slice] = []
    if m["index"]:
        for part in m["index"][1:-1].split(","):
            part = part.strip()
            if part == ":":
                index.append(slice(None))
            elif re.fullmatch(r"-?\d+", part):
                index.append(int(part))
            else:
                raise DataError(f"parameter source {text!r}: index {m['index']} may hold only integers and ':'")
    if m["path"] and m["kind"] != "attr":
        raise DataError(f"parameter source {text!r}: a ':PATH' inside a value is only for attributes")
    return ParamSource(m["kind"], m["key"].strip(), m["path"], tuple(index))


def parse_mapping(items: Sequence[str]) -> dict[str, ParamSource]:
    """``["k=attr:k", "Du=dataset:params[:, 1]"]`` -> ``{name: ParamSource}``."""
    out: dict[str, ParamSource] = {}
    for item in items:
        name, sep, src = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise DataError(f"--param-from expects NAME=SOURCE with NAME an identifier, got {item!r}")
        if name in out:
            raise DataError(f"--param-from names {name!r} twice")
        out[name] = parse_source(src)
    return out


@dataclass
class Found:
    """One parameter: its name, where it came from, its values ``(N,)`` and whether it is used."""

    name: str
    source: ParamSource | None  # None: a constant from the command line
    where: str  # readable, e.g. "attribute 'k' of each sample group"
    values: np.ndarray | None
    used: bool
    note: str = ""

    def describe(self) -> str:
        if self.values is None:
            span = ""
        elif np.all(self.values == self.values[0]):
            span = f" = {self.values[0]:.6g} (same for every trajectory)"
        else:
            span = f" = {self.values.min():.6g} .. {self.values.max():.6g} (varies)"
        status = "used" if self.used else "not used"
        return f"{self.name} <- {self.where}{span}: {status}" + (f" ({self.note})" if self.note else "")

    def record(self) -> dict[str, Any]:
        """Plain-type summary for the card."""
        rec: dict[str, Any] = {"name": self.name, "source": str(self.source) if self.source else "--param",
                               "used": self.used}
        if self.values is not None:
            rec["min"], rec["max"] = float(self.values.min()), float(self.values.max())
        if self.note:
            rec["note"] = self.note
        return rec


def _number(v: Any) -> float | None:
    """A finite-or-not real number from an attribute value, else None (text, arrays, bools)."""
    a = np.asarray(v)
    if a.dtype.kind in "iuf" and a.size == 1:
        return float(a.reshape(-1)[0])
    return None


def _text(v: Any) -> str | None:
    if isinstance(v, bytes):
        try:
            return v.decode()
        except UnicodeDecodeError:
            return None
    return v if isinstance(v, str) else None


def _numeric_leaves(obj: Any, prefix: str = "") -> dict[str, float]:
    """Dotted paths to the numbers inside parsed YAML/JSON."""
    out: dict[str, float] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(_numeric_leaves(v, f"{prefix}{k}."))
    elif (x := _as_float(obj)) is not None:
        out[prefix[:-1]] = x
    return out


def _as_float(v: Any) -> float | None:
    """A number from parsed YAML/JSON; YAML 1.1 reads ``5E-3`` (no dot) as text, so such text counts."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str) and _FLOAT_TEXT.match(v.strip()):
        return float(v)
    return None


def _parse_text(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{where}: not YAML or JSON text: {e}") from None


def _dig(obj: Any, path: str, where: str) -> float:
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            have = sorted(_numeric_leaves(obj))[:12]
            raise DataFormatError(f"{where}: no number at {path!r}; numbers found: {have}")
        cur = cur[part]
    x = _as_float(cur)
    if x is None:
        raise DataFormatError(f"{where}: {path!r} holds {_short(cur)}, not a number")
    return x


class ParamReader:
    """Reads parameter sources from one open file, for ``n`` trajectories (sample groups
    ``samples`` in the per-sample layout, else the first axis of root datasets)."""

    def __init__(self, f: h5py.File, src: str, n: int, samples: Sequence[str] = (), reserved: Sequence[str] = ()):
        self.f, self.src, self.n, self.samples = f, src, n, list(samples)
        self.reserved = set(reserved)  # datasets the layout reads as fields or coordinates

    def where(self, s: ParamSource) -> str:
        inside = f" (the number at {s.path})" if s.path else ""
        if s.kind == "attr":
            owner = "each sample group" if self.samples and not s.key.startswith("/") else "the file's root"
            return f"attribute {s.key.lstrip('/')!r} of {owner}{inside}"
        scope = "each sample group" if self.samples and not s.key.startswith("/") else "the file"
        return f"dataset {s.key.lstrip('/')!r}{str(s)[len('dataset:') + len(s.key):]} of {scope}"

    def read(self, s: ParamSource) -> np.ndarray:
        """The parameter's value for every trajectory: ``(N,)`` float64. Raises DataFormatError
        naming the file, group and key when the source is missing or not one number each."""
        if s.kind == "attr":
            values = self._attr(s)
        else:
            values = self._dataset(s)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise DataValueError(f"{self.src}: parameter from {self.where(s)} is {values[bad[0]]} for "
                                 f"trajectory {bad[0]}" + (f" (group {self.samples[bad[0]]!r})" if self.samples else ""))
        return values

    def _attr(self, s: ParamSource) -> np.ndarray:
        key = s.key.lstrip("/")
        if self.samples and not s.key.startswith("/"):
            out = np.empty(self.n)
            for i, g in enumerate(self.samples):
                out[i] = self._one_attr(self.f[g].attrs, key, s, f"{self.src}: group {g!r}")
            return out
        attrs = self.f.attrs
        where = f"{self.src}: root"
        if key not in attrs:
            raise DataFormatError(f"{where}: no attribute {key!r}; it has {sorted(attrs)}")
        a = np.asarray(attrs[key])
        if s.path is None and a.dtype.kind in "iuf" and a.shape == (self.n,):
            return a.astype(np.float64)
        return np.full(self.n, self._one_attr(attrs, key, s, where))

    def _one_attr(self, attrs: h5py.AttributeManager, key: str, s: ParamSource, where: str) -> float:
        if key not in attrs:
            raise DataFormatError(f"{where}: no attribute {key!r}; it has {sorted(attrs)}")
        v = attrs[key]
        if s.path is not None:
            text = _text(v)
            if text is None:
                raise DataFormatError(f"{where}: attribute {key!r} is not text, so it has no {s.path!r}")
            return _dig(_parse_text(text, f"{where}: attribute {key!r}"), s.path, f"{where}: attribute {key!r}")
        x = _number(v)
        if x is None:
            raise DataFormatError(f"{where}: attribute {key!r} = {_short(v)} is not one number"
                                  + ("; a number inside it is read with attr:KEY:PATH" if _text(v) else ""))
        return x

    def _dataset(self, s: ParamSource) -> np.ndarray:
        key = s.key.lstrip("/")
        per_sample = bool(self.samples) and not s.key.startswith("/") and key not in self.f
        if per_sample:
            out = np.empty(self.n)
            for i, g in enumerate(self.samples):
                where = f"{self.src}: group {g!r}"
                ds = self.f[g].get(key)
                if not isinstance(ds, h5py.Dataset):
                    raise DataFormatError(f"{where}: no dataset {key!r}; it has {sorted(self.f[g].keys())}")
                out[i] = self._scalar(ds, s, where)
            return out
        ds = self.f.get(key)
        where = f"{self.src}: dataset {key!r}"
        if not isinstance(ds, h5py.Dataset):
            raise DataFormatError(f"{self.src}: no dataset {key!r}; top-level keys: {sorted(self.f.keys())}")
        if ds.dtype.kind not in "iuf" or ds.ndim < 1 or ds.shape[0] != self.n:
            raise DataFormatError(f"{where}: expected numbers with one row per trajectory ({self.n}, ...), "
                                  f"found {ds.dtype} {ds.shape}")
        a = np.asarray(ds[()], dtype=np.float64)
        return self._index(a, s, where, lead=True)

    def _scalar(self, ds: h5py.Dataset, s: ParamSource, where: str) -> float:
        if ds.dtype.kind not in "iuf":
            raise DataFormatError(f"{where}: dataset {ds.name!r} holds {ds.dtype}, not numbers")
        return float(self._index(np.asarray(ds[()], dtype=np.float64), s, where, lead=False).reshape(()))

    def _index(self, a: np.ndarray, s: ParamSource, where: str, lead: bool) -> np.ndarray:
        idx = s.index
        if lead and idx and isinstance(idx[0], slice):
            idx = idx[1:]  # `[:, 0]`: the first axis is the trajectory
        try:
            out = a[(slice(None), *idx)] if lead else a[idx]
        except IndexError as e:
            raise DataFormatError(f"{where}: index {list(s.index)} does not fit shape {a.shape}: {e}") from None
        want = (self.n,) if lead else ()
        if out.shape != want:
            raise DataFormatError(f"{where}: {s} gives shape {out.shape}, expected {want} (one number per "
                                  f"trajectory); pick one column with an index, e.g. dataset:{s.key}[:, 0]")
        return out

    # -- discovery --------------------------------------------------------------------------------
    def discover(self) -> list[Found]:
        """Every parameter-like thing in the file, read (when cheap) and marked used or not."""
        found: list[Found] = []

        def add(name: str, s: ParamSource, auto: bool, note: str = "") -> None:
            values = None
            try:
                values = self.read(s)
            except DataError as e:
                auto, note = False, f"unreadable: {e}"
            if auto and _NOT_PHYSICS.match(name):
                auto, note = False, "its name marks a seed or an index"
            if auto and not name.isidentifier():
                auto, note = False, "not an identifier; rename it with --param-from NAME=" + str(s)
            found.append(Found(name, s, self.where(s), values, auto, note))

        if self.samples:
            first = self.f[self.samples[0]]
            for key, v in first.attrs.items():
                if _number(v) is not None:
                    add(key, ParamSource("attr", key), True)
                elif (text := _text(v)) is not None:
                    self._discover_text(found, key, text, f"{self.src}: group {self.samples[0]!r}")
            for key, ds in first.items():
                if isinstance(ds, h5py.Dataset) and key != "data" and ds.dtype.kind in "iuf":
                    if ds.shape in ((), (1,)):
                        add(key, ParamSource("dataset", key), True)
                    elif ds.ndim == 1:
                        found.append(Found(key, ParamSource("dataset", key), self.where(ParamSource("dataset", key)),
                                           None, False, f"{ds.shape[0]} numbers per group; pick one with "
                                           f"--param-from NAME=dataset:{key}[j]"))
        for key, v in self.f.attrs.items():
            a = np.asarray(v)
            if a.dtype.kind in "iuf" and (a.size == 1 or a.shape == (self.n,)):
                add(key, ParamSource("attr", "/" + key), True)
            elif (text := _text(v)) is not None:
                self._discover_text(found, "/" + key, text, f"{self.src}: root")
        for key, ds in self.f.items():
            if not isinstance(ds, h5py.Dataset) or key in self.reserved or ds.dtype.kind not in "iuf":
                continue
            if ds.shape == (self.n,):
                add(key, ParamSource("dataset", "/" + key), True)
            elif ds.ndim == 2 and ds.shape[0] == self.n and ds.shape[1] <= 64:
                found.append(Found(key, ParamSource("dataset", "/" + key), self.where(ParamSource("dataset", "/" + key)),
                                   None, False, f"{ds.shape[1]} columns; pick one with --param-from "
                                   f"NAME=dataset:{key}[:, j]"))
        return found

    def _discover_text(self, found: list[Found], key: str, text: str, where: str) -> None:
        try:
            leaves = _numeric_leaves(_parse_text(text, where))
        except DataFormatError:
            return
        if leaves:
            names = ", ".join(list(leaves)[:12]) + (" ..." if len(leaves) > 12 else "")
            owner = "each sample group" if self.samples and not key.startswith("/") else "the file's root"
            found.append(Found(key.lstrip("/"), ParamSource("attr", key, "PATH"),
                               f"text attribute {key.lstrip('/')!r} of {owner}", None, False,
                               f"holds the numbers {names}; use one with --param-from NAME=attr:{key}:PATH"))


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def resolve_params(
    reader: ParamReader,
    constants: Mapping[str, float],
    mapping: Mapping[str, ParamSource],
    auto: bool = True,
) -> tuple[dict[str, np.ndarray], list[Found]]:
    """The parameters to write, name -> ``(N,)`` values, and the report of everything found.

    ``constants`` (``--param NAME=VALUE``) and ``mapping`` (``--param-from``) are always used;
    discovered parameters are used when ``auto`` and not already named.
    """
    clash = sorted(set(constants) & set(mapping))
    if clash:
        raise DataError(f"parameter(s) {clash} given both as --param and --param-from")
    report: list[Found] = []
    values: dict[str, np.ndarray] = {}
    for name, v in constants.items():
        values[name] = np.full(reader.n, float(v))
        report.append(Found(name, None, "the command line (--param)", values[name], True))
    for name, s in mapping.items():
        values[name] = reader.read(s)
        report.append(Found(name, s, reader.where(s), values[name], True))
    taken = {(s.kind, s.key.lstrip("/"), s.path) for s in mapping.values()}
    for item in reader.discover():
        assert item.source is not None
        same_source = (item.source.kind, item.source.key.lstrip("/"), item.source.path) in taken
        if same_source:
            continue
        if item.used and (not auto or item.name in values):
            item.used = False
            item.note = "--no-auto-params" if not auto else f"the name {item.name!r} is already given"
        if item.used:
            values[item.name] = item.values  # type: ignore[assignment]
        report.append(item)
    return values, report

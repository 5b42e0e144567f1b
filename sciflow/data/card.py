"""Dataset cards: one YAML file per dataset that says what it is and how to get it.

A card names the fields and parameters, where the files live, how to generate them (problem,
parameter sweep per subset, frames, frame spacing) and how cases split into train/valid/test.
The card is the single source of a sweep: the generator reads it, checkpoints carry its hash.

``kind`` is ``grid`` (the default: dense fields in the Well layout) or ``particles`` (particle
trajectories in LagrangeBench's layout, :mod:`sciflow.data.particles`; ``fields`` may be left
out). ``solver`` holds problem settings that are the same for every case (resolution, steps per
frame) and are passed to the problem's ``simulate``.

Parameter sweeps: ``base`` gives every parameter's baseline value; each subset's ``vary`` maps a
parameter to either a list of values, ``{linspace: [a, b, n]}``, ``{logspace: [a, b, n]}``
(cartesian product across parameters), or ``{uniform: [a, b]}`` / ``{loguniform: [a, b]}``
(drawn per case). ``derived`` defines quantities from parameters by arithmetic (e.g.
``Re: rho * U * width / mu``) and ``limits`` keeps only cases whose derived or plain values lie
in ``[lo, hi]``.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import operator
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sciflow.data.errors import CardError

SPLITS = ("train", "valid", "test")
# what a card describes: dense-grid trajectories (the Well layout) or particle trajectories
# (LagrangeBench's layout, sciflow.data.particles)
CARD_KINDS = ("grid", "particles")
# keys a card may carry for readers that the code does not interpret
DESCRIPTIVE_KEYS = {"boundary_conditions", "notes", "reference", "references", "validation", "source",
                    "skipped", "differences", "units", "imported_from", "generator_notes"}


@dataclass(frozen=True)
class CaseSpec:
    """One case of a sweep: a stable id, its subset, split, parameters and seed."""

    case_id: str
    subset: str
    split: str
    params: dict[str, float]
    seed: int


@dataclass
class DatasetCard:
    """A parsed dataset card (see the module docstring for the keys)."""

    name: str
    path: Path
    fields: list[str]
    params: list[str]
    source: Path | None = None
    text: str = ""
    description: str = ""
    problem: str | None = None
    grid: list[int] = field(default_factory=list)
    dt: float | None = None
    frames: dict[str, int] = field(default_factory=dict)
    time_step: int = 1
    periodic: bool = False
    base: dict[str, float] = field(default_factory=dict)
    subsets: dict[str, dict[str, Any]] = field(default_factory=dict)
    derived: dict[str, str] = field(default_factory=dict)
    limits: dict[str, list[float]] = field(default_factory=dict)
    split: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "valid": 0.1, "test": 0.1})
    seed: int = 0
    trajectories_per_file: int = 1
    conservation: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "grid"
    solver: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        """sha256 of the card text: checkpoints record it so a model is tied to its data's card."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    def data_dir(self, root: str | os.PathLike | None = None) -> Path:
        """Folder holding ``data/{train,valid,test}`` and ``stats.yaml``.

        ``root`` wins; else ``$SCIFLOW_DATA/<name>`` when set; else the card's ``path`` (a relative
        ``path`` is relative to the card file's folder; the default is ``../data/<name>``, so the
        cards in ``datasets/`` put their data in ``data/<name>`` at the repository root).
        """
        if root is not None:
            return Path(root)
        env = os.environ.get("SCIFLOW_DATA")
        if env:
            return Path(env) / self.name
        return self.path

    def frames_for(self, split: str) -> int:
        if split not in self.frames:
            raise CardError(f"card {self.name!r}: no frame count for split {split!r} (key 'frames')")
        return self.frames[split]

    # -- sweeps --------------------------------------------------------------------------------
    def cases(self, subset: str, n: int | None = None) -> list[CaseSpec]:
        """The cases of ``subset`` (``all`` = every subset, shared out evenly), ``n`` of them.

        Cases are taken in a nested order (bit-reversed index over the subset's pool), so the
        first ``n`` are spread across the parameter range and a larger ``n`` keeps every case a
        smaller one chose. A case's id, parameters, seed and split depend only on the card and its
        place in that order, never on ``n``: growing a sweep adds cases and redoes nothing.
        """
        if n is not None and (not isinstance(n, int) or n < 0):
            raise CardError(f"card {self.name!r}: the number of cases must be an integer >= 0, got {n!r}")
        if subset == "all" and "all" not in self.subsets:
            names = list(self.subsets)
            if not names:
                raise CardError(f"card {self.name!r}: no subsets (key 'subsets'), so no sweep to run")
            if n is None:
                return [c for s in names for c in self.cases(s)]
            share = [n // len(names) + (k < n % len(names)) for k in range(len(names))]
            return [c for s, m in zip(names, share) for c in self.cases(s, m) if m > 0]
        if subset not in self.subsets:
            raise CardError(f"card {self.name!r}: unknown subset {subset!r}; known: {sorted(self.subsets)} or 'all'")
        spec = self.subsets[subset]
        unknown = set(spec) - {"vary", "cases", "description"}
        if unknown:
            raise CardError(f"card {self.name!r}: subsets.{subset} has unknown key(s) {sorted(unknown)}; "
                            f"expected vary, cases, description")
        pool = self._sweep(subset, spec)
        want = int(spec.get("cases", len(pool))) if n is None else n
        if want > len(pool):
            raise CardError(
                f"card {self.name!r}: subset {subset!r} has {len(pool)} cases within its limits, {want} asked for"
            )
        order = _nested_order(len(pool))[:want]
        chosen = sorted(zip(order, range(want)))  # (pool index, rank in the nested order)
        return [CaseSpec(pool[i][0], subset, self._split_at(rank), pool[i][1], pool[i][2]) for i, rank in chosen]

    def _split_at(self, rank: int) -> str:
        """Split of the case at ``rank`` in the nested order: the 2nd and 3rd cases go to valid and
        test so every sweep of three or more can be validated and tested, then a golden-ratio
        sequence keeps every prefix close to the card's fractions."""
        fv, ft = self.split.get("valid", 0.1), self.split.get("test", 0.1)
        if rank in (1, 2):
            return ("valid", "test")[rank - 1] if (fv, ft)[rank - 1] > 0 else "train"
        u = (rank * 0.6180339887498949 + 0.5 + 0.1234 * self.seed) % 1.0
        return "valid" if u < fv else "test" if u < fv + ft else "train"

    def _sweep(self, subset: str, spec: dict[str, Any]) -> list[tuple[str, dict[str, float], int]]:
        vary = spec.get("vary", {})
        if not isinstance(vary, dict):
            raise CardError(f"card {self.name!r}: subsets.{subset}.vary must map parameters to sweeps, found {vary!r}")
        cases = spec.get("cases", 1)
        if not _is_int(cases, 0):
            raise CardError(f"card {self.name!r}: subsets.{subset}.cases must be an integer >= 0, found {cases!r}")
        unknown = [p for p in vary if p not in self.params]
        if unknown:
            raise CardError(f"card {self.name!r}: subsets.{subset}.vary names unknown parameter(s) {unknown}")
        grid_axes: dict[str, list[float]] = {}
        random_axes: dict[str, tuple[str, list[float]]] = {}
        for p, v in vary.items():
            where = f"card {self.name!r}: subsets.{subset}.vary.{p}"
            if isinstance(v, list):
                if not v or not all(map(_is_num, v)):
                    raise CardError(f"{where}: expected a non-empty list of numbers, found {v!r}")
                grid_axes[p] = [float(x) for x in v]
            elif isinstance(v, dict) and len(v) == 1:
                kind, args = next(iter(v.items()))
                if kind in ("linspace", "logspace"):
                    if not (isinstance(args, list) and len(args) == 3 and _is_num(args[0]) and _is_num(args[1])
                            and _is_int(args[2], 1) and args[2] <= _MAX_AXIS):
                        raise CardError(f"{where}: {kind} takes [start, stop, n] with 1 <= n <= {_MAX_AXIS}, found {args!r}")
                    a, b, k = args
                    if kind == "logspace" and not (a > 0 and b > 0):
                        raise CardError(f"{where}: logspace needs start and stop > 0, found {args!r}")
                    grid_axes[p] = (np.linspace(a, b, int(k)) if kind == "linspace"
                                    else np.geomspace(a, b, int(k))).tolist()
                elif kind in ("uniform", "loguniform"):
                    if not (isinstance(args, list) and len(args) == 2 and all(map(_is_num, args))):
                        raise CardError(f"{where}: {kind} takes [low, high], found {args!r}")
                    if kind == "loguniform" and not (args[0] > 0 and args[1] > 0):
                        raise CardError(f"{where}: loguniform needs low and high > 0, found {args!r}")
                    random_axes[p] = (kind, [float(x) for x in args])
                else:
                    raise CardError(f"{where}: unknown sweep {kind!r} (list, linspace, logspace, uniform, loguniform)")
            else:
                raise CardError(f"{where}: expected a list or a one-key mapping, found {v!r}")
        size = int(np.prod([len(a) for a in grid_axes.values()])) * (cases if random_axes and not grid_axes else 1)
        if size > _MAX_POOL:
            raise CardError(f"card {self.name!r}: subsets.{subset} spans {size} cases, more than {_MAX_POOL}")
        missing = [p for p in self.params if p not in self.base and p not in vary]
        if missing:
            raise CardError(f"card {self.name!r}: parameter(s) {missing} have no base value and are not varied in {subset!r}")
        n_random = int(spec.get("cases", 1)) if random_axes and not grid_axes else 1
        rng = np.random.default_rng([self.seed, _stable_int(subset)])
        pool = []
        for k, combo in enumerate(itertools.product(*grid_axes.values())):
            for r in range(n_random):
                params = {p: float(self.base[p]) for p in self.params if p in self.base}
                params.update(dict(zip(grid_axes, combo)))
                for p, (kind, (a, b)) in random_axes.items():
                    params[p] = float(rng.uniform(a, b) if kind == "uniform" else np.exp(rng.uniform(np.log(a), np.log(b))))
                params = {p: params[p] for p in self.params}
                if self._within_limits(params):
                    case_id = f"{subset}_{k * n_random + r:05d}"
                    pool.append((case_id, params, _stable_int(f"{self.seed}/{case_id}") % (2**31)))
        return pool

    def derived_values(self, params: dict[str, float]) -> dict[str, float]:
        """Evaluate the card's ``derived`` expressions (e.g. Reynolds number) for ``params``."""
        return {k: _safe_eval(expr, params, f"card {self.name!r}: derived.{k}") for k, expr in self.derived.items()}

    def _within_limits(self, params: dict[str, float]) -> bool:
        values = {**params, **self.derived_values(params)}
        for k, (lo, hi) in self.limits.items():
            if k not in values:
                raise CardError(f"card {self.name!r}: limits.{k} names neither a parameter nor a derived value")
            if not lo <= values[k] <= hi:
                return False
        return True


_MAX_AXIS = 100_000  # values on one linspace / logspace axis
_MAX_POOL = 10_000_000  # cases in one subset's sweep, before limits


def _nested_order(n: int) -> list[int]:
    """0..n-1 sorted by bit-reversed index: every prefix is spread over the whole range."""
    bits = max(1, (n - 1).bit_length())
    return sorted(range(n), key=lambda i: int(format(i, f"0{bits}b")[::-1], 2))


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}


def _safe_eval(expr: str, names: dict[str, float], where: str) -> float:
    """Evaluate arithmetic over named values (+ - * / ** and parentheses only)."""

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise CardError(f"{where}: unknown name {node.id!r} in {expr!r}")
            return float(names[node.id])
        raise CardError(f"{where}: only arithmetic on parameter names is allowed, found {expr!r}")

    try:
        value = ev(ast.parse(str(expr), mode="eval"))
    except (SyntaxError, ValueError, RecursionError) as e:
        raise CardError(f"{where}: cannot parse {expr!r}: {e}") from e
    except (ZeroDivisionError, OverflowError, TypeError) as e:
        raise CardError(f"{where}: {expr!r} cannot be evaluated at {names}: {e}") from e
    if isinstance(value, complex):
        raise CardError(f"{where}: {expr!r} is not a real number at {names}")
    return float(value)


# -- loading -------------------------------------------------------------------------------------

def card_dirs() -> list[Path]:
    """Where cards are looked up by name: ``$SCIFLOW_CARDS``, ``./datasets``, the repository's."""
    dirs = []
    if os.environ.get("SCIFLOW_CARDS"):
        dirs.append(Path(os.environ["SCIFLOW_CARDS"]))
    dirs.append(Path.cwd() / "datasets")
    dirs.append(Path(__file__).resolve().parents[2] / "datasets")
    return dirs


def available_cards() -> dict[str, Path]:
    """Cards that can be loaded by name: name -> path (earlier folders of :func:`card_dirs` win)."""
    found: dict[str, Path] = {}
    for d in card_dirs():
        if d.is_dir():
            for q in sorted(d.glob("*.yaml")):
                found.setdefault(q.stem, q)
    return dict(sorted(found.items()))


def card_summary(card: DatasetCard) -> str:
    """One line about a card: the head of its description, its grid and fields."""
    head = str(card.description or "").strip().replace("\n", " ")
    for stop in (":", " (", ". ", " in the style of"):
        head = head.split(stop)[0]
    head = head if len(head) <= 60 else head[:57] + "..."
    grid = "x".join(str(n) for n in card.grid)
    return f"{head}; {grid + ', ' if grid else ''}fields {', '.join(map(str, card.fields))}"


def load_card(name_or_path: str | os.PathLike) -> DatasetCard:
    """Load a card from a YAML path or by dataset name (``cavity`` -> ``datasets/cavity.yaml``)."""
    p = Path(name_or_path)
    if not p.is_file():
        for d in card_dirs():
            if (d / f"{name_or_path}.yaml").is_file():
                p = d / f"{name_or_path}.yaml"
                break
        else:
            known = sorted({q.stem for d in card_dirs() if d.is_dir() for q in d.glob("*.yaml")})
            raise CardError(f"no dataset card {str(name_or_path)!r}: not a file, and not one of {known}")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise CardError(f"{p}: not UTF-8 text: {e}") from e
    except OSError as e:
        raise CardError(f"{p}: cannot read the card: {e}") from e
    try:
        raw = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as e:
        raise CardError(f"{p}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise CardError(f"{p}: expected a mapping at top level")
    return card_from_dict(raw, source=p, text=text)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)


def _is_int(v: Any, lo: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) and x for x in v)


# key -> (check, what it must be); absent keys take their defaults
_CHECKS: dict[str, tuple[Any, str]] = {
    "name": (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string"),
    "fields": (lambda v: _str_list(v) and len(v) > 0 and len(set(v)) == len(v), "a list of distinct field names"),
    "params": (lambda v: _str_list(v) and all(x.isidentifier() for x in v) and len(set(v)) == len(v),
               "a list of distinct parameter names (identifiers)"),
    "path": (lambda v: isinstance(v, str) and v != "", "a folder path"),
    "description": (lambda v: isinstance(v, str), "text"),
    "problem": (lambda v: v is None or (isinstance(v, str) and v != ""), "a problem name"),
    "grid": (lambda v: isinstance(v, list) and all(_is_int(n, 1) for n in v), "a list of positive integers"),
    "dt": (lambda v: v is None or (_is_num(v) and v > 0), "a positive number (seconds)"),
    "frames": (lambda v: _is_int(v, 1) or (isinstance(v, dict) and all(
        isinstance(k, str) and _is_int(n, 1) for k, n in v.items())), "an integer >= 1 or {split: integer}"),
    "time_step": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "periodic": (lambda v: isinstance(v, bool), "true or false"),
    "base": (lambda v: isinstance(v, dict) and all(isinstance(k, str) and _is_num(x) for k, x in v.items()),
             "a mapping of parameter -> number"),
    "subsets": (lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(s, dict)
                                                      for k, s in v.items()), "a mapping of subset -> {vary, cases}"),
    "derived": (lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(e, str | int | float)
                                                      for k, e in v.items()), "a mapping of name -> expression"),
    "limits": (lambda v: isinstance(v, dict) and all(isinstance(b, list) and len(b) == 2 and all(map(_is_num, b))
                                                     for b in v.values()), "a mapping of name -> [lo, hi]"),
    "split": (lambda v: isinstance(v, dict) and all(_is_num(x) for k, x in v.items() if k != "seed")
              and _is_int(v.get("seed", 0), 0), "{train, valid, test: fractions, seed: integer}"),
    "seed": (lambda v: _is_int(v, 0), "an integer >= 0"),
    "trajectories_per_file": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "conservation": (lambda v: isinstance(v, list) and all(isinstance(c, dict) for c in v), "a list of mappings"),
}


def card_from_dict(raw: dict[str, Any], *, source: Path | None = None, text: str | None = None) -> DatasetCard:
    where = str(source) if source else "card"
    if not isinstance(raw, dict):
        raise CardError(f"{where}: expected a mapping at top level")
    original = dict(raw)
    raw = dict(raw)
    kind = raw.setdefault("kind", "grid")
    if kind not in CARD_KINDS:
        raise CardError(f"{where}: kind {kind!r} is not one of {list(CARD_KINDS)}")
    if kind == "particles":
        raw.setdefault("fields", ["position"])  # a particle sample is positions (and types)
    for key in ("name", "fields"):
        if key not in raw:
            raise CardError(f"{where}: missing key {key!r}")
    for key, (ok, what) in _CHECKS.items():
        if key in raw and not ok(raw[key]):
            value = repr(raw[key])
            raise CardError(f"{where}: key {key!r} must be {what}, found {value[:80]}")
    if not isinstance(raw.get("solver", {}), dict):
        raise CardError(f"{where}: solver: expected a mapping of solver settings, found {raw['solver']!r}")
    frames = raw.pop("frames", {})
    if isinstance(frames, int):
        frames = dict.fromkeys(SPLITS, frames)
    split = raw.pop("split", {})
    fractions = {k: float(split.get(k, d)) for k, d in (("train", 0.8), ("valid", 0.1), ("test", 0.1))}
    if any(f < 0 for f in fractions.values()):
        raise CardError(f"{where}: split fractions {fractions} must be >= 0")
    if abs(sum(fractions.values()) - 1) > 1e-6:
        raise CardError(f"{where}: split fractions {fractions} do not sum to 1")
    known = set(DatasetCard.__dataclass_fields__)
    kwargs = {k: v for k, v in raw.items()
              if k in known and k not in ("source", "text", "extra", "path", "params", "seed")}
    extra = {k: v for k, v in raw.items() if k not in known}
    undocumented = sorted(set(extra) - DESCRIPTIVE_KEYS)
    if undocumented:
        warnings.warn(f"{where}: unknown key(s) {undocumented} kept as description only (a typo?)", stacklevel=2)
    # A relative path is relative to the card's own folder, wherever the command runs from.
    path = Path(raw.get("path", f"../data/{raw['name']}"))
    if not path.is_absolute() and source is not None:
        path = Path(os.path.normpath(source.parent / path))
    card = DatasetCard(
        **kwargs,
        path=path,
        frames={k: int(v) for k, v in frames.items()},
        split=fractions,
        seed=int(split.get("seed", raw.get("seed", 0))),
        source=source,
        text=text if text is not None else yaml.safe_dump(original, sort_keys=True),
        extra=extra,
        params=list(raw.get("params", [])),
    )
    return card

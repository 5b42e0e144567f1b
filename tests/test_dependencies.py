"""The dependency rules of the architecture, checked on the source: imports point down the data flow.

Every ``import`` and ``from ... import`` statement of every module is read with ``ast`` (imports
inside functions count too), so a lazy import cannot slip past the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sciflow"


def _imports(path: Path) -> set[str]:
    """Absolute module names imported anywhere in ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            # `from sciflow import cli` imports the module sciflow.cli
            names.update(f"{target}.{a.name}" for a in node.names)
    return names


def _modules(*parts: str) -> list[Path]:
    root = PACKAGE.joinpath(*parts)
    return sorted(root.rglob("*.py")) if root.is_dir() else [root.with_suffix(".py")]


def _violations(files: list[Path], forbidden: str) -> list[str]:
    bad = []
    for f in files:
        hits = sorted(n for n in _imports(f) if n == forbidden or n.startswith(forbidden + "."))
        if hits:
            bad.append(f"{f.relative_to(PACKAGE.parent)} imports {hits}")
    return bad


RULES = [
    # (importing modules, forbidden package, why)
    (("data",), "sciflow.solvers", "the data layer never imports solvers (the case contract lives in data)"),
    (("operators",), "sciflow.surrogate", "operators are plain nn.Modules"),
    (("operators",), "sciflow.steppers", "operators know nothing of steppers"),
    (("operators",), "sciflow.data", "operators know nothing of data"),
    (("steppers",), "sciflow.surrogate", "steppers are plain PyTorch"),
    (("metrics",), "sciflow.surrogate", "metrics are pure functions of tensors"),
    (("constraints",), "sciflow.surrogate", "constraints are pure functions of tensors"),
]


@pytest.mark.parametrize("parts, forbidden, why", RULES, ids=[f"{r[0][0]}-not-{r[1]}" for r in RULES])
def test_layer_does_not_import(parts, forbidden, why):
    files = _modules(*parts)
    assert files, f"no modules under sciflow/{'/'.join(parts)}"
    assert _violations(files, forbidden) == [], why


def test_library_never_imports_the_cli():
    files = [f for f in PACKAGE.rglob("*.py") if f.name != "cli.py" and f.name != "__main__.py"]
    assert _violations(files, "sciflow.cli") == []


def test_the_scan_sees_lazy_and_relative_imports(tmp_path, monkeypatch):
    """The checker itself: a lazy import inside a function and a relative import are both found."""
    pkg = tmp_path / "sciflow" / "data"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text("def g():\n    from sciflow.solvers import sweep\n\nfrom ..solvers import base\nfrom .. import cli\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", tmp_path / "sciflow")
    found = _imports(f)
    assert "sciflow.solvers" in found and "sciflow.solvers.base" in found and "sciflow.cli" in found
    assert _violations([f], "sciflow.solvers")

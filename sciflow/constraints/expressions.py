"""Safe evaluation of the formulas a card writes for a law's right-hand side.

A card gives a conserved amount or a boundary flux as arithmetic in the case's parameters and the
time ``t`` (e.g. ``u_in * diameter``, ``m ** (1 + 1 / m) / (m + 1) * t ** (1 + 1 / m)``).
Allowed: numbers, names, ``+ - * / **``, parentheses and calls of the functions in
:data:`FUNCTIONS`; nothing else is evaluated. Values are numpy arrays, so one evaluation covers a
whole batch of cases.
"""

from __future__ import annotations

import ast
import importlib
import math
import operator
from collections.abc import Callable, Mapping

import numpy as np
from scipy import special

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}

#: function name -> callable, or ``"module:attr"`` imported on first use (special functions that
#: belong to a problem, e.g. the front constant of the Stefan problem's similarity solution)
FUNCTIONS: dict[str, Callable | str] = {
    "sqrt": np.sqrt,
    "exp": np.exp,
    "log": np.log,
    "sin": np.sin,
    "cos": np.cos,
    "abs": np.abs,
    "erf": special.erf,
    "stefan_alpha": "sciflow.solvers.gpme_exact:stefan_alpha",
}
CONSTANTS = {"pi": math.pi}


class ExpressionError(ValueError):
    """A formula uses something other than arithmetic, known functions and known names."""


def _function(name: str, where: str) -> Callable:
    if name not in FUNCTIONS:
        raise ExpressionError(f"{where}: unknown function {name!r}; known: {sorted(FUNCTIONS)}")
    f = FUNCTIONS[name]
    if isinstance(f, str):
        module, attr = f.split(":")
        f = getattr(importlib.import_module(module), attr)
    return f


def names_in(expr: str, where: str = "expression") -> set[str]:
    """The variable names a formula uses (functions and constants excluded)."""
    tree = _parse(expr, where)
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - called - set(CONSTANTS)


def _parse(expr: str, where: str) -> ast.Expression:
    try:
        return ast.parse(str(expr), mode="eval")
    except SyntaxError as e:
        raise ExpressionError(f"{where}: cannot parse {expr!r}: {e.msg}") from None


def evaluate(expr: str | float, names: Mapping[str, np.ndarray | float], where: str = "expression") -> np.ndarray:
    """Evaluate ``expr`` with ``names`` (arrays broadcast together); returns a float64 array."""
    if isinstance(expr, int | float):
        return np.asarray(float(expr))

    def ev(node: ast.AST):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id in names:
                return np.asarray(names[node.id], dtype=np.float64)
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            raise ExpressionError(f"{where}: unknown name {node.id!r} in {expr!r}; known: {sorted(names)}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            return _function(node.func.id, where)(*[ev(a) for a in node.args])
        raise ExpressionError(
            f"{where}: only arithmetic, parameter names and the functions {sorted(FUNCTIONS)} are "
            f"allowed, found {ast.unparse(node)!r} in {expr!r}"
        )

    with np.errstate(all="ignore"):
        out = np.asarray(ev(_parse(expr, where)), dtype=np.float64)
    return out


__all__ = ["CONSTANTS", "FUNCTIONS", "ExpressionError", "evaluate", "names_in"]

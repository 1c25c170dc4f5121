"""Every condition and rollout reason the operator can write into status, read from its
source with the `ast` module (no reason list is kept by hand anywhere)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

OPERATOR = Path(__file__).resolve().parents[2] / "operator" / "kinfer_operator"
SOURCES = (
    "status/*.py",
    "rollout/*.py",
    "reconcile/run.py",
    "world/pods.py",
)
"""Where status is decided: conditions (status/), the rollout state (rollout/), refusals of
a spec (reconcile/run.py) and the reasons named after pod problems (world/pods.py)."""
NOT_STATUS = frozenset({"Event"})
"""Callables whose `reason` is not a status reason: Kubernetes Events."""


def _literal(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _literals_of(node: ast.expr) -> set[str]:
    """The strings a `reason = ...` assignment can bind: a literal, or either branch of
    `"A" if ... else "B"`."""
    if isinstance(node, ast.IfExp):
        return _literals_of(node.body) | _literals_of(node.orelse)
    value = _literal(node)
    return {value} if value is not None else set()


def _callee(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _reason_positions(trees: list[ast.Module]) -> dict[str, int]:
    """Index of the `reason` parameter of each function, method and dataclass defined here."""
    positions: dict[str, int] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names = [a.arg for a in (*node.args.posonlyargs, *node.args.args)]
                if names[:1] in (["self"], ["cls"]):
                    names = names[1:]
                if "reason" in names:
                    positions[node.name] = names.index("reason")
            elif isinstance(node, ast.ClassDef):
                fields = [
                    s.target.id
                    for s in node.body
                    if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
                ]
                if "reason" in fields:
                    positions[node.name] = fields.index("reason")
    return positions


def _table_heads(tree: ast.Module, names: set[str]) -> Iterator[str]:
    """First strings of the (reason, ...) pairs in module-level tables with these names."""
    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else []
        if isinstance(stmt, ast.AnnAssign):
            targets = [stmt.target]
        if not any(isinstance(t, ast.Name) and t.id in names for t in targets):
            continue
        value = stmt.value
        if isinstance(value, ast.Tuple | ast.List):
            for item in value.elts:
                if isinstance(item, ast.Tuple) and item.elts:
                    head = _literal(item.elts[0])
                    if head is not None:
                        yield head


def reasons_in(trees: list[ast.Module]) -> set[str]:
    """String literals that reach a `reason`: as an argument in its place or by keyword, as a
    parameter's default, bound to a local `reason`, or returned by a `*_reason` function (and
    the tables it reads)."""
    positions = _reason_positions(trees)
    found: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _callee(node) not in NOT_STATUS:
                for kw in node.keywords:
                    if kw.arg == "reason" and (value := _literal(kw.value)) is not None:
                        found.add(value)
                index = positions.get(_callee(node))
                if index is not None and index < len(node.args):
                    found.update(_literals_of(node.args[index]))
            elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "reason" for t in node.targets
            ):
                found.update(_literals_of(node.value))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = node.args
                plain = [*args.posonlyargs, *args.args]
                pairs = [
                    *zip(plain[len(plain) - len(args.defaults) :], args.defaults, strict=True),
                    *((a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d),
                ]
                for arg, default in pairs:
                    if arg.arg == "reason" and (value := _literal(default)) is not None:
                        found.add(value)
                if node.name.endswith("_reason"):
                    for inner in ast.walk(node):
                        if isinstance(inner, ast.Return) and (v := _literal(inner.value)):
                            found.add(v)
                    read = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                    found.update(_table_heads(tree, read))
    return found


def operator_trees() -> list[ast.Module]:
    files = sorted({p for pattern in SOURCES for p in OPERATOR.glob(pattern)})
    return [ast.parse(p.read_text(), filename=str(p)) for p in files]


def status_reasons() -> set[str]:
    return reasons_in(operator_trees())

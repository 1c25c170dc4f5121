"""Layers only point down (CONVENTIONS.md 8): every import of every operator module, including
imports made only for type checking, goes to a lower layer or stays inside its own package.
Units of one layer (status and rollout, say) do not import each other either."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import kinfer_operator

ROOT = Path(kinfer_operator.__file__).parent
LAYERS: list[set[str]] = [
    {"__init__", "runtime_contract", "events"},
    {"api"},
    {"model", "metrics"},
    {"naming", "references"},
    {"children"},
    {"world"},
    {"status", "rollout", "_kube"},
    {"reconcile"},
    {"handlers"},
    {"main", "plugin", "__main__"},
]
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _unit(module: str) -> str:
    """`kinfer_operator.status.compute` -> `status`."""
    return module.split(".")[1]


def _imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "kinfer_operator":  # `from kinfer_operator import naming`
                found += [
                    f"kinfer_operator.{a.name if a.name in RANK else '__init__'}"
                    for a in node.names
                ]
            elif node.module.startswith("kinfer_operator."):
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("kinfer_operator.")]
    return found


def _violations(root: Path = ROOT) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).with_suffix("")
        here = _unit(".".join(relative.parts)) if len(relative.parts) > 1 else "__init__"
        assert here in RANK, f"{path}: add its package or module to LAYERS"
        for target in _imports(path):
            there = _unit(target)
            if there != here and RANK[there] >= RANK[here]:
                problems.append(f"{relative} ({here}) imports {target} ({there})")
    return problems


def test_every_import_points_to_a_lower_layer() -> None:
    assert _violations() == []


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    """Guard against a check that can never fail: an upward import is reported."""
    copy = tmp_path / "kinfer_operator"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "status" / "probe.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from kinfer_operator.reconcile.plan import Plan\n"
    )
    assert _violations(copy) == [
        "kinfer_operator/status/probe (status) imports kinfer_operator.reconcile.plan (reconcile)"
    ]

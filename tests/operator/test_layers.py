"""Layers only point down, in the operator and in the runtime: every import of every module,
relative ones and those made only for type checking included, goes to a lower layer or stays
inside its own unit (a top-level module or package). Units of one layer (status and rollout,
say) do not import each other either. README.md, "Code layout", says what each layer is."""

from __future__ import annotations

import ast
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import kinfer_operator
import kinfer_runtime

HOW_TO_FIX = (
    "layers only point down: move the code to the lower layer (README.md, "
    '"Code layout" under "Development", lists the layers)'
)


@dataclass(frozen=True)
class Layering:
    """A package's units (its top-level modules and packages), lowest layer first."""

    package: str
    layers: list[set[str]]
    rank: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        rank = {unit: i for i, layer in enumerate(self.layers) for unit in layer}
        object.__setattr__(self, "rank", rank)


OPERATOR = Layering(
    "kinfer_operator",
    [
        {"__init__", "runtime_contract", "events"},
        {"api"},
        {"model", "metrics", "election", "tracing"},
        {"naming", "references"},
        {"children"},
        {"world"},
        {"status", "rollout", "_kube"},
        {"reconcile"},
        {"handlers"},
        {"main", "plugin", "__main__"},
    ],
)
RUNTIME = Layering(
    "kinfer_runtime",
    [
        # Foundations: wire-independent types, errors and small I/O helpers.
        {"__init__", "errors", "datatypes", "termination"},
        {"_http", "_post", "_objectstore", "_gpu_metrics", "tracing"},
        {"schemas", "metrics", "_download", "_sts"},
        # Backends load and run a model; sources fetch one; mirror copies requests.
        {"backends", "sources", "mirror"},
        # Bundles (manifest, extraction) and the handler API over a backend's signature.
        {"bundle", "handlers"},
        # The data plane (registry, batching, validation, warm-up) over the backends.
        {"dataplane", "config", "cachefill", "demo"},
        # REST and gRPC routes over the data plane; service assembles the data plane.
        {"routes", "service"},
        {"app"},
        {"server"},
        {"cli"},
        {"__main__"},
    ],
)
ROOTS = {
    "kinfer_operator": Path(kinfer_operator.__file__).parent,
    "kinfer_runtime": Path(kinfer_runtime.__file__).parent,
}


def _unit(module: str) -> str:
    """`kinfer_operator.status.compute` -> `status`; the package itself -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_of(path: Path, root: Path) -> tuple[str, list[str]]:
    """The dotted name of a source file, and the package its relative imports start from."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts), parts[:-1]  # a package's `__init__` starts from the package


def _resolve(node: ast.ImportFrom, package: list[str]) -> str | None:
    """The absolute module a `from` import names; None when it climbs out of the package."""
    if node.level == 0:
        return node.module
    if node.level - 1 >= len(package):
        return None
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports(path: Path, layering: Layering, root: Path) -> list[str]:
    """Every module of the package that `path` imports, resolved to an absolute name."""
    top = layering.package
    _, package = _module_of(path, root)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = _resolve(node, package)
            if module == top:  # `from kinfer_operator import naming`, `from .. import world`
                found += [
                    f"{top}.{a.name if a.name in layering.rank else '__init__'}" for a in node.names
                ]
            elif module is not None and module.startswith(f"{top}."):
                found.append(module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith(f"{top}.")]
    return found


def _violations(layering: Layering, root: Path | None = None) -> list[str]:
    root = root or ROOTS[layering.package]
    problems = []
    for path in sorted(root.rglob("*.py")):
        module, _ = _module_of(path, root)
        here = _unit(module)
        assert here in layering.rank, f"{path}: add its package or module to the layers"
        for target in _imports(path, layering, root):
            there = _unit(target)
            if there != here and layering.rank[there] >= layering.rank[here]:
                relative = path.relative_to(root.parent).with_suffix("")
                problems.append(f"{relative} ({here}) imports {target} ({there})")
    return problems


def _copy(layering: Layering, tmp_path: Path) -> Path:
    copy = tmp_path / layering.package
    shutil.copytree(ROOTS[layering.package], copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_every_operator_import_points_to_a_lower_layer() -> None:
    problems = _violations(OPERATOR)
    assert problems == [], HOW_TO_FIX


def test_every_runtime_import_points_to_a_lower_layer() -> None:
    problems = _violations(RUNTIME)
    assert problems == [], HOW_TO_FIX


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    """Guard against a check that can never fail: an upward import is reported."""
    copy = _copy(OPERATOR, tmp_path)
    (copy / "status" / "probe.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from kinfer_operator.reconcile.plan import Plan\n"
    )
    assert _violations(OPERATOR, copy) == [
        "kinfer_operator/status/probe (status) imports kinfer_operator.reconcile.plan (reconcile)"
    ]


def test_the_check_catches_a_relative_upward_import(tmp_path: Path) -> None:
    """`from ..x import y` and `from .. import x` are resolved, not skipped."""
    copy = _copy(OPERATOR, tmp_path)
    (copy / "status" / "probe.py").write_text(
        "from ..reconcile.plan import Plan\nfrom .. import handlers\nfrom . import compute\n"
    )
    assert _violations(OPERATOR, copy) == [
        "kinfer_operator/status/probe (status) imports kinfer_operator.reconcile.plan (reconcile)",
        "kinfer_operator/status/probe (status) imports kinfer_operator.handlers (handlers)",
    ]


def test_the_check_resolves_relative_imports_in_a_package_init(tmp_path: Path) -> None:
    """In `world/__init__.py`, `.` is `world` itself: `from ..reconcile import x` climbs one."""
    copy = _copy(OPERATOR, tmp_path)
    init = copy / "world" / "__init__.py"
    init.write_text(init.read_text() + "from ..reconcile import plan as _plan\n")
    assert _violations(OPERATOR, copy) == [
        "kinfer_operator/world/__init__ (world) imports kinfer_operator.reconcile (reconcile)"
    ]


def test_the_check_catches_an_upward_import_in_the_runtime(tmp_path: Path) -> None:
    """A backend reaching up into the data plane is reported."""
    copy = _copy(RUNTIME, tmp_path)
    (copy / "backends" / "probe.py").write_text(
        "from kinfer_runtime.dataplane.registry import ModelRegistry\n"
    )
    assert _violations(RUNTIME, copy) == [
        "kinfer_runtime/backends/probe (backends) imports "
        "kinfer_runtime.dataplane.registry (dataplane)"
    ]

"""Evaluates the chart's ValidatingAdmissionPolicy CEL (charts/kinfer/files/policy/rules.yaml)
the way the API server does, so unit tests exercise the very expressions the chart ships.

cel-python implements standard CEL; the few Kubernetes CEL library functions the rules use
(split, trim, join) are added here with Kubernetes' semantics. Variables are evaluated in
order; matchConditions first (a false one means the policy does not apply); every failed
validation yields its messageExpression.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import celpy
import yaml
from celpy import celtypes

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "charts" / "kinfer" / "files" / "policy" / "rules.yaml"


def pinned_kubernetes_minor() -> str:
    """The e2e cluster's Kubernetes as major.minor.0 (kubernetes-validate's schema sets)."""
    for line in (REPO / "e2e" / "tools" / "versions.env").read_text().splitlines():
        if line.startswith("K8S_VERSION="):
            major, minor, *_ = line.partition("=")[2].strip().split(".")
            return f"{major}.{minor}.0"
    raise AssertionError("K8S_VERSION missing from e2e/tools/versions.env")


def _split(text: celtypes.StringType, sep: celtypes.StringType) -> celtypes.ListType:
    return celtypes.ListType([celtypes.StringType(p) for p in str(text).split(str(sep))])


def _trim(text: celtypes.StringType) -> celtypes.StringType:
    return celtypes.StringType(str(text).strip())


def _join(items: celtypes.ListType, sep: celtypes.StringType) -> celtypes.StringType:
    return celtypes.StringType(str(sep).join(str(i) for i in items))


KUBERNETES_LIBRARY: dict[str, Any] = {"split": _split, "trim": _trim, "join": _join}


def _value(result: Any, expression: str) -> Any:
    if isinstance(result, (celpy.CELEvalError, Exception)):
        raise AssertionError(f"CEL error in {expression!r}: {result}")
    return result


@dataclass
class Policy:
    """One policy of rules.yaml (`model` or `scale`), compiled."""

    section: str
    rules: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.rules = yaml.safe_load(RULES.read_text())[self.section]
        self._env = celpy.Environment()
        self._programs: dict[str, celpy.Runner] = {}

    def _eval(self, expression: str, activation: dict[str, Any]) -> Any:
        if expression not in self._programs:
            ast = self._env.compile(expression)
            self._programs[expression] = self._env.program(ast, functions=KUBERNETES_LIBRARY)
        try:
            result = self._programs[expression].evaluate(activation)
        except celpy.CELEvalError as err:
            raise AssertionError(f"CEL error in {expression!r}: {err}") from err
        return _value(result, expression)

    def expressions(self) -> Sequence[str]:
        """Every CEL expression of this policy."""
        found = [c["expression"] for c in self.rules.get("matchConditions", [])]
        found += [v["expression"] for v in self.rules.get("variables", [])]
        for v in self.rules["validations"]:
            found += [v["expression"], v["messageExpression"]]
        return found

    def admit(
        self,
        obj: dict[str, Any],
        params: dict[str, Any] | None = None,
        *,
        old: dict[str, Any] | None = None,
    ) -> list[str]:
        """The refusal messages for this request; [] when admitted (or not matched)."""
        request = {"operation": "CREATE" if old is None else "UPDATE"}
        activation: dict[str, Any] = {
            "object": celpy.json_to_cel(obj),
            "oldObject": celpy.json_to_cel(old),
            "params": celpy.json_to_cel(params),
            "request": celpy.json_to_cel(request),
        }
        for condition in self.rules.get("matchConditions", []):
            if not self._eval(condition["expression"], activation):
                return []
        variables: dict[str, Any] = {}
        for variable in self.rules.get("variables", []):
            activation["variables"] = celtypes.MapType(
                {celtypes.StringType(k): v for k, v in variables.items()}
            )
            variables[variable["name"]] = self._eval(variable["expression"], activation)
        activation["variables"] = celtypes.MapType(
            {celtypes.StringType(k): v for k, v in variables.items()}
        )
        return [
            str(self._eval(v["messageExpression"], activation))
            for v in self.rules["validations"]
            if not self._eval(v["expression"], activation)
        ]

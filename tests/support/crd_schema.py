"""The InferenceModel CRD's structural schema, applied the way the API server applies it.

The fake API (fake_kube.py) prunes, defaults and validates the model's status against it,
and the fuzz tests generate specs from it, so both follow the generated CRD in crds/ rather
than a hand-written copy. CEL rules (x-kubernetes-validations) are not evaluated here: the
pydantic models mirror the ones the operator relies on.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft4Validator, FormatChecker

__all__ = ["apply_defaults", "prune", "spec_schema", "status_problems", "status_schema"]

CRD = Path(__file__).resolve().parents[2] / "crds" / "inferencemodels.serving.kinfer.io.yaml"

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_FORMATS = FormatChecker(formats=())


@_FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    """metav1.Time as the API server parses it (RFC 3339)."""
    return not isinstance(value, str) or bool(_RFC3339.match(value))


@cache
def _root() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    return dict(version["schema"]["openAPIV3Schema"])


def spec_schema() -> dict[str, Any]:
    """spec's schema as generated from the pydantic API (shared: do not modify it)."""
    return dict(_root()["properties"]["spec"])


def status_schema() -> dict[str, Any]:
    """status's schema as generated from the pydantic API (shared: do not modify it)."""
    return dict(_root()["properties"]["status"])


def _keeps_unknown(schema: dict[str, Any]) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


def prune(schema: dict[str, Any], value: Any) -> Any:
    """`value` without the fields the schema does not declare: the API server drops them
    silently on every write, so a writer that keeps sending them never converges."""
    if isinstance(value, dict) and schema.get("type") == "object" and not _keeps_unknown(schema):
        props: dict[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        out = {}
        for key, item in value.items():
            if key in props:
                out[key] = prune(props[key], item)
            elif isinstance(extra, dict):
                out[key] = prune(extra, item)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(schema["items"], item) for item in value]
    return value


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """`value` with the schema's defaults filled in, outermost first (a defaulted object
    gets its own fields' defaults too), as the API server does on every read and write."""
    if isinstance(value, dict) and schema.get("type") == "object":
        out = dict(value)
        for key, sub in (schema.get("properties") or {}).items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            if key in out:
                out[key] = apply_defaults(sub, out[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in set(out) - set(schema.get("properties") or {}):
                out[key] = apply_defaults(extra, out[key])
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def _list_problems(schema: dict[str, Any], value: Any, path: str) -> Iterator[str]:
    """Duplicates in x-kubernetes-list-type map/set lists, which JSON Schema cannot express."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, item in value.items():
            if key in props:
                yield from _list_problems(props[key], item, f"{path}.{key}")
    elif isinstance(value, list):
        kind = schema.get("x-kubernetes-list-type")
        if kind == "map":
            keys = schema["x-kubernetes-list-map-keys"]
            seen = [tuple(item.get(k) for k in keys) for item in value if isinstance(item, dict)]
            for dup in sorted({k for k in seen if seen.count(k) > 1}, key=str):
                yield f"{path}: Duplicate value: {dict(zip(keys, dup, strict=True))}"
        elif kind == "set":
            for twice in sorted({str(v) for v in value if value.count(v) > 1}):
                yield f"{path}: Duplicate value: {twice}"
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                yield from _list_problems(schema["items"], item, f"{path}[{i}]")


@cache
def _status_validator() -> Draft4Validator:
    return Draft4Validator(status_schema(), format_checker=_FORMATS)


def status_problems(status: Any) -> list[str]:
    """Why the API server would refuse this (pruned, defaulted) status; empty when valid."""
    found = [
        f"status.{'.'.join(str(p) for p in err.absolute_path)}: {err.message}"
        for err in _status_validator().iter_errors(status)
    ]
    return found + list(_list_problems(status_schema(), status, "status"))

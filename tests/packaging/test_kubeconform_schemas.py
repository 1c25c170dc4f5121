"""The offline schema writer that e2e/chart-check.sh feeds to kubeconform."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    # tests/packaging is not a package (and `packaging` names a PyPI library): load by path.
    path = Path(__file__).with_name("kubeconform_schemas.py")
    spec = importlib.util.spec_from_file_location("kubeconform_schemas", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


schemas = _load()


def _crd(openapi: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget"},
            "versions": [{"name": "v1", "schema": {"openAPIV3Schema": openapi}}],
        },
    }


@pytest.mark.parametrize(
    ("api_version", "suffix"),
    [("v1", "-v1"), ("apps/v1", "-apps-v1"), ("serving.kinfer.io/v1alpha1", "-serving-v1alpha1")],
)
def test_kind_suffix_matches_kubeconform_file_names(api_version: str, suffix: str) -> None:
    assert schemas.kind_suffix(api_version) == suffix


def test_strict_rejects_unknown_fields_except_where_preserved() -> None:
    out = schemas.strict(
        {
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {"a": {"type": "string"}}},
                "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                        "properties": {"b": {"type": "string"}}},
                "map": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
    )  # fmt: skip
    assert out["additionalProperties"] is False
    assert out["properties"]["spec"]["additionalProperties"] is False
    assert "additionalProperties" not in out["properties"]["raw"]
    assert out["properties"]["map"]["additionalProperties"] == {"type": "string"}


def test_crd_schema_pins_api_version_and_kind() -> None:
    ((name, schema),) = schemas.crd_schemas([_crd({"type": "object", "properties": {}})])
    assert name == "widget-example-v1.json"
    assert schema["properties"]["kind"]["enum"] == ["Widget"]
    assert schema["properties"]["apiVersion"]["enum"] == ["example.com/v1"]


def test_a_schema_the_api_server_rejects_is_named_not_skipped() -> None:
    bad = _crd({"type": "object", "properties": {"x": {"type": "number", "exclusiveMinimum": 0}}})
    with pytest.raises(schemas.InvalidCRDSchema, match="properties/x/exclusiveMinimum"):
        list(schemas.crd_schemas([bad]))


def test_generated_crds_convert() -> None:
    docs = [d for p in sorted((REPO / "crds").glob("*.yaml")) for d in yaml.safe_load_all(p.open())]
    names = [name for name, _ in schemas.crd_schemas(d for d in docs if d)]
    assert "inferencemodel-serving-v1alpha1.json" in names

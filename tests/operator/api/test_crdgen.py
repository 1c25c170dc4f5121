"""The generated CRD: freshness, structure and the pieces kubectl relies on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from kinfer_operator.api.crdgen import (
    CRD_FILENAME,
    PEERING_FILENAME,
    build_crd,
    render_crd,
    render_peering_crds,
)

REPO = Path(__file__).resolve().parents[3]


def _schema() -> dict[str, Any]:
    return dict(build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def _walk(node: dict[str, Any], path: str = ""):  # type: ignore[no-untyped-def]
    yield path, node
    for key, child in (node.get("properties") or {}).items():
        yield from _walk(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def test_checked_in_crd_matches_the_pydantic_api() -> None:
    checked_in = (REPO / "crds" / CRD_FILENAME).read_text()
    assert checked_in == render_crd(), "crds/ is stale: run `make crds`"
    peering = (REPO / "crds" / PEERING_FILENAME).read_text()
    assert peering == render_peering_crds(), "crds/ is stale: run `make crds`"


def test_every_spec_and_status_field_has_a_description() -> None:
    schema = _schema()
    missing = [
        path
        for root in ("spec", "status")
        for path, node in _walk(schema["properties"][root], root)
        if "description" not in node and not path.endswith(("[]", "{}"))
    ]
    assert missing == []


def test_schema_is_structural_without_refs_or_nullable_unions() -> None:
    text = render_crd()
    assert "$ref" not in text
    assert "null" not in text
    for path, node in _walk(_schema()):
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path


def test_printer_columns_cover_rollout_state() -> None:
    columns = build_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    names = [c["name"] for c in columns if not c.get("priority")]
    for wanted in ("Ready", "Stable", "Canary", "Weight", "Replicas", "GPU", "Age"):
        assert wanted in names


def test_scale_subresource_points_at_replicas_and_selector() -> None:
    version = build_crd()["spec"]["versions"][0]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }


def test_names_have_short_names_and_kinfer_category() -> None:
    names = build_crd()["spec"]["names"]
    assert "im" in names["shortNames"]
    assert names["categories"] == ["kinfer"]


def test_cross_field_rules_are_cel_validations() -> None:
    schema = _schema()
    spec_rules = [r["rule"] for r in schema["properties"]["spec"]["x-kubernetes-validations"]]
    assert any("replicas" in r and "autoscaling" in r for r in spec_rules)
    autoscaling = schema["properties"]["spec"]["properties"]["autoscaling"]
    rules = [r["rule"] for r in autoscaling["x-kubernetes-validations"]]
    assert "self.minReplicas <= self.maxReplicas" in rules
    batching = schema["properties"]["spec"]["properties"]["runtime"]["properties"]["batching"]
    rules = [r["rule"] for r in batching["x-kubernetes-validations"]]
    assert any("self.defaultPriorityLevel <= " in r for r in rules)


def test_nested_objects_default_to_empty_so_inner_defaults_apply() -> None:
    runtime = _schema()["properties"]["spec"]["properties"]["runtime"]["properties"]
    assert runtime["batching"]["default"] == {}
    assert runtime["batching"]["properties"]["maxBatchSize"]["default"] == 32


def test_conditions_are_a_map_list_keyed_by_type() -> None:
    conditions = _schema()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def _node(path: str) -> dict[str, Any]:
    node = _schema()
    for key in path.split("."):
        node = node["items"] if key == "[]" else node["properties"][key]
    return node


ADMISSION_RULES = [
    # (schema node, fieldPath the API server names, a word of the rule)
    ("spec.rollout.canary", ".steps", "isSorted"),
    ("spec.rollout.shadow", ".maxConcurrency", "self.maxConcurrency <= self.maxQueue"),
    ("spec.rollout.analysis.custom.[]", ".min", "self.min <= self.max"),
    ("spec.runtime.resources", ".requests", "compareTo"),
    ("spec.runtime.resources", ".limits", "hugepages-"),
    ("spec.runtime.env.[]", ".name", "KINFER_MODEL_URI"),
    ("spec.runtime.env.[]", ".name", "startsWith('OTEL_')"),
    ("spec", ".runtime.responseCache", "self.model.deterministic"),
    ("spec.scheduling", ".nodeSelector", "matches"),
    ("spec.scheduling.tolerations.[]", ".value", "Exists"),
    ("spec.scheduling.tolerations.[]", ".tolerationSeconds", "NoExecute"),
    ("spec.scheduling.tolerations.[]", ".operator", "self.key"),
    ("spec.runtime.gpu", ".resourceName", "kubernetes.io/"),
    ("spec.model", ".uri", "https?://[^/?#]+/"),
    ("spec.model", ".uri", "^azure://[a-z0-9]"),
    ("spec.autoscaling", ".idleSeconds", "self.minReplicas == 0"),
]


@pytest.mark.parametrize(("path", "field_path", "fragment"), ADMISSION_RULES)
def test_cel_rules_name_the_field_they_check(path: str, field_path: str, fragment: str) -> None:
    rules = _node(path).get("x-kubernetes-validations", [])
    matching = [r for r in rules if r.get("fieldPath") == field_path and fragment in r["rule"]]
    assert matching, f"{path}: no rule on {field_path} with {fragment!r}"
    assert all(r["message"] for r in matching)


def test_quantities_must_not_be_negative() -> None:
    for side in ("requests", "limits"):
        rules = _node(f"spec.runtime.resources.{side}")["additionalProperties"][
            "x-kubernetes-validations"
        ]
        assert any("compareTo(quantity('0')) >= 0" in r["rule"] for r in rules)


PATTERNS = [
    ("spec.runtime.serviceAccountName", "my-sa", "My_SA"),
    ("spec.scheduling.priorityClassName", "high", "High Priority"),
    ("spec.runtime.gpu.resourceName", "amd.com/gpu", "gpu"),
    ("spec.runtime.gpu.productLabel", "nvidia.com/gpu.product", "bad key!"),
    ("spec.scheduling.tolerations.[].key", "example.com/dedicated", "-bad-"),
    ("spec.scheduling.tolerations.[].value", "gpu", "not a value!"),
]


@pytest.mark.parametrize(("path", "good", "bad"), PATTERNS)
def test_name_fields_carry_the_kubernetes_pattern(path: str, good: str, bad: str) -> None:
    pattern = _node(path)["pattern"]
    assert re.match(pattern, good) and not re.match(pattern, bad)


def test_node_selector_values_are_label_values() -> None:
    values = _node("spec.scheduling.nodeSelector")["additionalProperties"]
    assert values["maxLength"] == 63
    assert not re.match(values["pattern"], "has space")


def test_lists_keyed_by_name_refuse_duplicates() -> None:
    for path in ("spec.runtime.env", "spec.rollout.analysis.custom"):
        node = _node(path)
        assert node["x-kubernetes-list-type"] == "map"
        assert node["x-kubernetes-list-map-keys"] == ["name"]
    assert _node("spec.runtime.imagePullSecrets")["x-kubernetes-list-type"] == "set"


def test_kubectl_get_shows_the_ready_reason() -> None:
    columns = build_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    reason = next(c for c in columns if c["name"] == "Reason")
    assert reason["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert not reason.get("priority")

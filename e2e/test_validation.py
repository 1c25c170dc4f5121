"""Invalid manifests are refused by the real API server, each with a message naming the field.

This exercises the generated CRD's OpenAPI schema and CEL rules; nothing here involves the
operator, and nothing is created.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import kubectl, kubectl_apply

BASE: dict[str, Any] = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "examples" / "resnet-gpu.yaml").read_text()
)


def _mutate(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    *parents, leaf = path.split(".")
    node = doc
    for key in parents:
        node = node.setdefault(key, {})
    if value is _DELETE:
        node.pop(leaf)
    else:
        node[leaf] = value
    return doc


_DELETE = object()
AUTOSCALING = {"minReplicas": 2, "maxReplicas": 4}
CANARY = {"canary": {"stepWeight": 25}}
CHECK = {"name": "queue", "query": "sum(q)", "min": 2, "max": 1}
GATEWAY = {"mode": "GatewayAPI", "gateway": {"parentRefs": [{"name": "gw"}]}}

CASES = [
    ("missing-uri", _mutate("spec.model.uri", _DELETE), ["spec.model.uri", "Required"]),
    ("uri-scheme", _mutate("spec.model.uri", "ftp://bucket/m.onnx"), ["spec.model.uri"]),
    ("object-store-key", _mutate("spec.model.uri", "s3://bucket"), ["spec.model.uri", "<key>"]),
    (
        "endpoint-on-http",
        _mutate("spec.model.endpoint", "http://10.0.0.1:9000"),
        ["spec.model.endpoint", "s3://"],
    ),
    (
        "azure-container-name",
        _mutate("spec.model.uri", "azure://Models/m.onnx"),
        ["spec.model.uri", "azure://<container>/<blob>"],
    ),
    (
        "azure-without-account",
        _mutate("spec.model.uri", "azure://models/m.onnx"),
        ["spec.model.uri", "storage account"],
    ),
    (
        "cache-without-sha256",
        _mutate("spec.model.cache", {"claimName": "models"}),
        ["spec.model.cache", "sha256"],
    ),
    (
        "format-enum",
        _mutate("spec.model.format", "tensorflow"),
        ["spec.model.format", "Unsupported value"],
    ),
    ("sha256-pattern", _mutate("spec.model.sha256", "abc"), ["spec.model.sha256"]),
    ("gpu-negative", _mutate("spec.runtime.gpu.count", -1), ["spec.runtime.gpu.count"]),
    (
        "batch-zero",
        _mutate("spec.runtime.batching.maxBatchSize", 0),
        ["spec.runtime.batching.maxBatchSize"],
    ),
    (
        "quantity",
        _mutate("spec.runtime.resources.requests", {"cpu": "lots"}),
        ["spec.runtime.resources.requests", "quantity"],
    ),
    (
        "gpu-as-raw-resource",
        _mutate("spec.runtime.resources.limits", {"nvidia.com/gpu": 1}),
        ["spec.runtime.resources", "spec.runtime.gpu"],
    ),
    ("pvc-without-path", _mutate("spec.model.uri", "pvc://models"), ["spec.model.uri", "pvc://"]),
    (
        "credentials-on-file-uri",
        _mutate("spec.model.credentials", {"name": "s"}),
        ["spec.model.credentials"],
    ),
    (
        "replicas-and-autoscaling",
        _mutate("spec.autoscaling", AUTOSCALING),
        ["spec.replicas", "mutually exclusive"],
    ),
    (
        "min-above-max",
        _mutate(
            "spec",
            {**BASE["spec"], "replicas": None, "autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
        ),
        ["spec.autoscaling.minReplicas", "less than or equal to maxReplicas"],
    ),
    (
        "idle-seconds-without-scale-to-zero",
        _mutate(
            "spec",
            {
                **BASE["spec"],
                "replicas": None,
                "autoscaling": {"minReplicas": 1, "maxReplicas": 2, "idleSeconds": 60},
            },
        ),
        ["spec.autoscaling.idleSeconds", "idleSeconds applies only with minReplicas 0"],
    ),
    (
        "unknown-metric",
        _mutate(
            "spec",
            {
                **BASE["spec"],
                "replicas": None,
                "autoscaling": {"maxReplicas": 2, "metrics": [{"type": "rps", "target": 5}]},
            },
        ),
        ["spec.autoscaling.metrics[0].type", "Unsupported value"],
    ),
    (
        "zero-target",
        _mutate(
            "spec",
            {
                **BASE["spec"],
                "replicas": None,
                "autoscaling": {
                    "maxReplicas": 2,
                    "metrics": [{"type": "concurrency", "target": 0}],
                },
            },
        ),
        ["spec.autoscaling.metrics[0].target"],
    ),
    (
        "gpu-util-over-100",
        _mutate(
            "spec",
            {
                **BASE["spec"],
                "replicas": None,
                "autoscaling": {
                    "maxReplicas": 2,
                    "metrics": [{"type": "gpuUtilization", "target": 150}],
                },
            },
        ),
        ["spec.autoscaling.metrics[0].target", "percentage"],
    ),
    ("unknown-field", _mutate("spec.runtime.gpus", 1), ["unknown field", "spec.runtime.gpus"]),
    # Removed from v1alpha1: only the operator's configuration names Prometheus endpoints.
    (
        "prometheus-url-removed",
        _mutate(
            "spec.rollout",
            {**CANARY, "analysis": {"prometheusUrl": "http://169.254.169.254/latest"}},
        ),
        ["unknown field", "spec.rollout.analysis.prometheusUrl"],
    ),
    (
        "prometheus-endpoint-not-a-name",
        _mutate("spec.rollout", {**CANARY, "analysis": {"prometheus": "http://x"}}),
        ["spec.rollout.analysis.prometheus"],
    ),
    ("name-too-long", _mutate("metadata.name", "m" * 50), ["metadata.name", "40 characters"]),
    ("replicas-zero", _mutate("spec.replicas", 0), ["spec.replicas"]),
    # Issue 11: what a careful review of every field found.
    (
        "steps-not-increasing",
        _mutate("spec.rollout", {"canary": {"steps": [{"weight": 50}, {"weight": 20}]}}),
        ["spec.rollout.canary.steps", "strictly increase"],
    ),
    (
        "steps-repeated",
        _mutate("spec.rollout", {"canary": {"steps": [{"weight": 20}, {"weight": 20}]}}),
        ["spec.rollout.canary.steps", "strictly increase"],
    ),
    (
        "shadow-percent-zero",
        _mutate("spec.rollout", {**CANARY, "shadow": {"percent": 0}}),
        ["spec.rollout.shadow.percent", "greater than or equal to 1"],
    ),
    (
        "shadow-concurrency-above-queue",
        _mutate("spec.rollout", {**CANARY, "shadow": {"percent": 5, "maxQueue": 2}}),
        ["spec.rollout.shadow.maxConcurrency", "less than or equal to maxQueue"],
    ),
    (
        "check-min-above-max",
        _mutate("spec.rollout", {**CANARY, "analysis": {"custom": [CHECK]}}),
        ["spec.rollout.analysis.custom[0].min", "less than or equal to max"],
    ),
    (
        "check-names-repeat",
        _mutate(
            "spec.rollout",
            {**CANARY, "analysis": {"custom": [{**CHECK, "min": 0}, {**CHECK, "min": 0}]}},
        ),
        ["spec.rollout.analysis.custom[1]", "Duplicate value"],
    ),
    (
        "negative-quantity",
        _mutate("spec.runtime.resources.requests", {"cpu": "-1"}),
        ["spec.runtime.resources.requests", "must not be negative"],
    ),
    (
        "negative-integer-quantity",
        _mutate("spec.runtime.resources.limits", {"memory": -1}),
        ["spec.runtime.resources.limits", "must not be negative"],
    ),
    (
        "requests-above-limits",
        _mutate("spec.runtime.resources", {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
        ["spec.runtime.resources.requests", "less than or equal to its limit"],
    ),
    (
        "unqualified-resource",
        _mutate("spec.runtime.resources.limits", {"fpga": 1}),
        ["spec.runtime.resources.limits", "domain-qualified"],
    ),
    (
        "env-runtime-contract",
        _mutate("spec.runtime.env", [{"name": "KINFER_MAX_BATCH_SIZE", "value": "8"}]),
        ["spec.runtime.env[0].name", "runtime contract"],
    ),
    (
        "env-twice",
        _mutate("spec.runtime.env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        ["spec.runtime.env[1]", "Duplicate value"],
    ),
    (
        "node-selector-key",
        _mutate("spec.scheduling", {"nodeSelector": {"not a key!": "x"}}),
        ["spec.scheduling.nodeSelector", "label keys"],
    ),
    (
        "node-selector-value",
        _mutate("spec.scheduling", {"nodeSelector": {"zone": "not a value!"}}),
        ["spec.scheduling.nodeSelector"],
    ),
    (
        "toleration-exists-with-value",
        _mutate(
            "spec.scheduling", {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}
        ),
        ["spec.scheduling.tolerations[0].value", "leave value empty"],
    ),
    (
        "toleration-seconds-without-noexecute",
        _mutate(
            "spec.scheduling",
            {"tolerations": [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]},
        ),
        ["spec.scheduling.tolerations[0].tolerationSeconds", "NoExecute"],
    ),
    (
        "toleration-empty-key-equal",
        _mutate("spec.scheduling", {"tolerations": [{"operator": "Equal", "value": "v"}]}),
        ["spec.scheduling.tolerations[0].operator", "Exists"],
    ),
    (
        "toleration-key",
        _mutate("spec.scheduling", {"tolerations": [{"key": "-bad-", "operator": "Exists"}]}),
        ["spec.scheduling.tolerations[0].key"],
    ),
    (
        "service-account-name",
        _mutate("spec.runtime.serviceAccountName", "Not_A_Name"),
        ["spec.runtime.serviceAccountName"],
    ),
    (
        "priority-class-name",
        _mutate("spec.scheduling", {"priorityClassName": "High Priority"}),
        ["spec.scheduling.priorityClassName"],
    ),
    (
        "image-pull-secret-name",
        _mutate("spec.runtime.imagePullSecrets", ["Bad_Name"]),
        ["spec.runtime.imagePullSecrets[0]"],
    ),
    (
        "unqualified-gpu-resource",
        _mutate("spec.runtime.gpu.resourceName", "gpu"),
        ["spec.runtime.gpu.resourceName"],
    ),
    (
        "kubernetes-io-gpu-resource",
        _mutate("spec.runtime.gpu.resourceName", "kubernetes.io/gpu"),
        ["spec.runtime.gpu.resourceName", "vendor"],
    ),
    (
        "gpu-product-label",
        _mutate("spec.runtime.gpu.productLabel", "not a key!"),
        ["spec.runtime.gpu.productLabel"],
    ),
    (
        "uri-host-without-path",
        _mutate("spec.model.uri", "https://models.example.com"),
        ["spec.model.uri", "name the model file"],
    ),
    (
        "uri-host-with-bare-slash",
        _mutate("spec.model.uri", "https://models.example.com/"),
        ["spec.model.uri", "name the model file"],
    ),
    (
        "gateway-hostname",
        _mutate(
            "spec.rollout",
            {
                **CANARY,
                "traffic": {
                    "mode": "GatewayAPI",
                    "gateway": {"parentRefs": [{"name": "gw"}], "hostnames": ["Not A Host"]},
                },
            },
        ),
        ["spec.rollout.traffic.gateway.hostnames[0]"],
    ),
    (
        "pin-without-gateway",
        _mutate("spec.rollout", {**CANARY, "traffic": {"pin": {}}}),
        ["spec.rollout.traffic.pin", "pin needs mode GatewayAPI"],
    ),
    (
        "weight-zero-step-without-pin",
        _mutate("spec.rollout", {"canary": {"steps": [{"weight": 0}, {"weight": 50}]}}),
        ["spec.rollout.canary.steps", "a weight 0 step needs traffic.pin"],
    ),
    (
        "pin-header-not-a-token",
        _mutate("spec.rollout", {**CANARY, "traffic": {**GATEWAY, "pin": {"header": "x y"}}}),
        ["spec.rollout.traffic.pin.header"],
    ),
    (
        "pin-header-is-the-marker",
        _mutate(
            "spec.rollout",
            {**CANARY, "traffic": {**GATEWAY, "pin": {"header": "X-Kinfer-Pinned"}}},
        ),
        ["spec.rollout.traffic.pin.header", "marker"],
    ),
    (
        "reuse-under-autoscaling",
        _mutate(
            "spec",
            {
                **BASE["spec"],
                "replicas": None,
                "autoscaling": AUTOSCALING,
                "rollout": {"canary": {"stepWeight": 25, "capacity": {"mode": "reuse"}}},
            },
        ),
        ["spec.rollout.canary.capacity.mode", "needs fixed replicas"],
    ),
    (
        "max-surge-zero",
        _mutate("spec.rollout", {"canary": {"stepWeight": 25, "capacity": {"maxSurge": 0}}}),
        ["spec.rollout.canary.capacity.maxSurge"],
    ),
    # Issue 25: a cached answer is only right for a deterministic model.
    (
        "response-cache-without-deterministic",
        _mutate("spec.runtime.responseCache", {"maxBytes": 1 << 20}),
        ["spec.runtime.responseCache", "deterministic: true"],
    ),
    (
        "response-cache-below-a-mebibyte",
        _mutate(
            "spec",
            {
                **BASE["spec"],
                "model": {**BASE["spec"]["model"], "deterministic": True},
                "runtime": {**BASE["spec"]["runtime"], "responseCache": {"maxBytes": 1000}},
            },
        ),
        ["spec.runtime.responseCache.maxBytes"],
    ),
    (
        "retire-pods-per-step-zero",
        _mutate("spec.rollout", {**CANARY, "retire": {"podsPerStep": 0}}),
        ["spec.rollout.retire.podsPerStep"],
    ),
]


def _clean(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc.get("spec", {})
    if spec.get("replicas", 1) is None:
        spec.pop("replicas")
    return doc


@pytest.mark.parametrize(("case", "manifest", "expected"), CASES, ids=[c[0] for c in CASES])
def test_invalid_manifest_is_rejected_naming_the_field(
    namespace: str, case: str, manifest: dict[str, Any], expected: list[str]
) -> None:
    result = kubectl_apply(_clean(manifest), namespace, check=False)
    assert result.returncode != 0, f"{case} was accepted"
    for fragment in expected:
        assert fragment in result.stderr, f"{case}: {fragment!r} not in {result.stderr!r}"
    leftovers = kubectl("get", "im", "-n", namespace, "-o", "name").stdout
    assert leftovers.strip() == ""

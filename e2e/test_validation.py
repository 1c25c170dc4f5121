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

CASES = [
    ("missing-uri", _mutate("spec.model.uri", _DELETE), ["spec.model.uri", "Required"]),
    ("uri-scheme", _mutate("spec.model.uri", "s3://bucket/m.onnx"), ["spec.model.uri"]),
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
        "scale-to-zero",
        _mutate(
            "spec",
            {**BASE["spec"], "replicas": None, "autoscaling": {"minReplicas": 0, "maxReplicas": 2}},
        ),
        ["spec.autoscaling.minReplicas", "scale to zero is out of scope"],
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
    ("name-too-long", _mutate("metadata.name", "m" * 50), ["metadata.name", "40 characters"]),
    ("replicas-zero", _mutate("spec.replicas", 0), ["spec.replicas"]),
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

"""Spec parsing: the examples are valid, and pydantic agrees with the schema's bounds."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from kinfer_operator.api import InferenceModelSpec
from pydantic import ValidationError
from support.factories import EXAMPLES, load_example


@pytest.mark.parametrize("path", sorted(p.name for p in Path(EXAMPLES).glob("*.yaml")))
def test_every_example_parses(path: str) -> None:
    doc = load_example(path)
    assert doc["kind"] == "InferenceModel"
    InferenceModelSpec.model_validate(doc["spec"])


def test_unknown_field_is_rejected() -> None:
    spec = load_example("resnet-gpu.yaml")["spec"]
    spec["runtime"]["gpus"] = 1
    with pytest.raises(ValidationError, match="gpus"):
        InferenceModelSpec.model_validate(spec)


def test_defaults_fill_batching_and_format() -> None:
    spec = InferenceModelSpec.model_validate(
        {"model": {"uri": "file:///m.onnx", "version": "1"}, "runtime": {"image": "img"}}
    )
    assert spec.model.format == "onnx"
    assert spec.runtime.batching.max_batch_size == 32
    assert spec.gpu_count == 0
    assert spec.fixed_replicas == 1


def _base() -> dict[str, Any]:
    return load_example("resnet-gpu.yaml")["spec"]  # type: ignore[no-any-return]


ROLLOUT = {"canary": {"steps": [{"weight": 10}, {"weight": 50}]}}
INVALID = [
    ("rollout", {**ROLLOUT, "canary": {"steps": [{"weight": 50}, {"weight": 50}]}}, "increase"),
    (
        "rollout",
        {**ROLLOUT, "analysis": {"custom": [{"name": "c", "query": "q", "min": 2, "max": 1}]}},
        "min must be less than or equal to max",
    ),
    (
        "rollout",
        {**ROLLOUT, "shadow": {"percent": 10, "maxQueue": 2, "maxConcurrency": 4}},
        "maxConcurrency must be less than or equal to maxQueue",
    ),
    ("rollout", {**ROLLOUT, "shadow": {"percent": 0}}, "greater than or equal to 1"),
    ("rollout", {**ROLLOUT, "shadow": {"percent": 101}}, "less than or equal to 100"),
    ("runtime.resources", {"requests": {"cpu": "-1"}}, "negative"),
    ("runtime.resources", {"requests": {"memory": -5}}, "negative"),
    ("runtime.env", [{"name": "KINFER_MAX_BATCH_SIZE", "value": "8"}], "runtime contract"),
    ("scheduling", {"nodeSelector": {"bad key": "x"}}, "label keys"),
    ("scheduling", {"nodeSelector": {"zone": "not a value"}}, "nodeSelector.zone"),
    ("scheduling", {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}, "Exists"),
    ("scheduling", {"tolerations": [{"key": "k", "tolerationSeconds": 5}]}, "NoExecute"),
    ("scheduling", {"tolerations": [{"operator": "Equal", "value": "v"}]}, "empty key"),
    ("runtime.serviceAccountName", "Not_A_Name", "serviceAccountName"),
    ("runtime.gpu", {"count": 1, "resourceName": "gpu"}, "resourceName"),
    ("scheduling", {"priorityClassName": "High"}, "priorityClassName"),
    ("rollout", {"canary": {"maxWeight": 50}}, "give either steps or stepWeight"),
    ("rollout", {"canary": {"steps": [{"weight": 10}], "stepWeight": 10}}, "not both"),
    ("rollout", {"canary": {"stepWeight": 60, "maxWeight": 50}}, "less than or equal to maxW"),
    ("rollout", {**ROLLOUT, "traffic": {"mode": "GatewayAPI"}}, "mode GatewayAPI needs gateway"),
    ("autoscaling", {"maxReplicas": 3, "metrics": [{"type": "cpu"}]}, "type cpu needs target"),
    (
        "autoscaling",
        {"maxReplicas": 3, "metrics": [{"type": "raw", "target": 5}]},
        "type raw needs raw",
    ),
]


@pytest.mark.parametrize(("path", "value", "expected"), INVALID, ids=[e for *_, e in INVALID])
def test_operator_mirrors_the_admission_rules(path: str, value: Any, expected: str) -> None:
    spec = _base()
    *parents, leaf = path.split(".")
    node = spec
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    with pytest.raises(ValidationError, match=re.escape(expected)):
        InferenceModelSpec.model_validate(spec)


def test_priority_levels_default_to_one_and_the_default_level_must_exist() -> None:
    base = {"model": {"uri": "file:///m.onnx", "version": "1"}, "runtime": {"image": "img"}}
    batching = InferenceModelSpec.model_validate(base).runtime.batching
    assert (batching.priority_levels, batching.default_priority_level) == (1, 1)
    base["runtime"]["batching"] = {"priorityLevels": 2, "defaultPriorityLevel": 3}  # type: ignore[index]
    with pytest.raises(ValidationError, match="at most priorityLevels"):
        InferenceModelSpec.model_validate(base)


def _zero(**autoscaling: Any) -> InferenceModelSpec:
    spec = load_example("resnet-gpu.yaml")["spec"]
    spec.pop("replicas", None)
    spec["autoscaling"] = {"minReplicas": 0, "maxReplicas": 4, **autoscaling}
    return InferenceModelSpec.model_validate(spec)


def test_min_replicas_zero_scales_to_zero_with_defaults_from_the_runtime() -> None:
    spec = _zero()
    assert spec.scales_to_zero
    assert spec.idle_seconds == 300
    assert spec.target_concurrency == spec.runtime.batching.max_batch_size
    assert spec.max_hold_seconds > spec.runtime.startup_timeout_seconds
    assert spec.routing == "default"


def test_scale_to_zero_settings_given_win_over_defaults() -> None:
    spec = _zero(idleSeconds=60, targetConcurrency=4, maxHeldRequests=50, maxHoldSeconds=90)
    assert (spec.idle_seconds, spec.target_concurrency) == (60, 4)
    assert (spec.max_held_requests, spec.max_hold_seconds) == (50, 90)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("minReplicas", -1),
        ("idleSeconds", 5),
        ("targetConcurrency", 0),
        ("maxHeldRequests", 0),
        ("maxHeldRequests", 1_000_000),
        ("maxHoldSeconds", 0),
    ],
)
def test_scale_to_zero_settings_are_bounded(field: str, value: int) -> None:
    with pytest.raises(ValidationError, match=f"autoscaling.{field}"):
        _zero(**{field: value})


def test_routing_takes_only_the_known_modes() -> None:
    spec = load_example("resnet-gpu.yaml")["spec"]
    assert InferenceModelSpec.model_validate({**spec, "routing": "leastQueue"}).routing == (
        "leastQueue"
    )
    with pytest.raises(ValidationError, match="routing"):
        InferenceModelSpec.model_validate({**spec, "routing": "random"})

"""build_hpa: typed metrics become autoscaling/v2 MetricSpecs; GPU-sensible behavior."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kinfer_operator.children import build_hpa
from kinfer_operator.children.hpa import DEFAULT_BEHAVIOR, INFLIGHT_METRIC
from kinfer_operator.model import InferenceModel

MakeModel = Callable[..., InferenceModel]


def _autoscaled(make_model: MakeModel, **autoscaling: Any) -> InferenceModel:
    return make_model(
        {"replicas": None, "autoscaling": {"minReplicas": 2, "maxReplicas": 6, **autoscaling}}
    )


def test_default_metric_is_concurrency_per_pod(make_model: MakeModel) -> None:
    hpa = build_hpa(_autoscaled(make_model), "stable", "resnet50-abc")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == INFLIGHT_METRIC


def test_bounds_and_target_deployment(make_model: MakeModel) -> None:
    hpa = build_hpa(_autoscaled(make_model), "stable", "resnet50-abc")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "resnet50-abc",
    }


@pytest.mark.parametrize(
    ("kind", "expected_type"),
    [
        ("cpu", "Resource"),
        ("memory", "Resource"),
        ("gpuUtilization", "Pods"),
        ("queueDepth", "Pods"),
    ],
)
def test_each_typed_metric_maps_to_a_metric_spec(
    make_model: MakeModel, kind: str, expected_type: str
) -> None:
    model = _autoscaled(make_model, metrics=[{"type": kind, "target": 70}])
    (metric,) = build_hpa(model, "stable", "d")["spec"]["metrics"]
    assert metric["type"] == expected_type


def test_raw_metric_passes_through_unchanged(make_model: MakeModel) -> None:
    raw = {
        "type": "External",
        "external": {"metric": {"name": "queue_len"}, "target": {"type": "Value", "value": "30"}},
    }
    model = _autoscaled(make_model, metrics=[{"type": "raw", "raw": raw}])
    assert build_hpa(model, "stable", "d")["spec"]["metrics"] == [raw]


def test_behavior_defaults_to_fast_up_slow_down(make_model: MakeModel) -> None:
    behavior = build_hpa(_autoscaled(make_model), "stable", "d")["spec"]["behavior"]
    assert behavior == DEFAULT_BEHAVIOR
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0


def test_user_behavior_replaces_default(make_model: MakeModel) -> None:
    custom = {"scaleDown": {"stabilizationWindowSeconds": 60}}
    hpa = build_hpa(_autoscaled(make_model, behavior=custom), "stable", "d")
    assert hpa["spec"]["behavior"] == custom


def test_scale_to_zero_model_gets_an_hpa_floor_of_one(make_model: MakeModel) -> None:
    hpa = build_hpa(_autoscaled(make_model, minReplicas=0), "stable", "resnet50-abc")
    assert hpa["spec"]["minReplicas"] == 1

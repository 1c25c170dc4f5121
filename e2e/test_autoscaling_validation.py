"""Autoscaling specs the API server refuses, naming the field, and `kubectl scale` on an
autoscaled model.

See e2e/autoscaling.py for what is real and what is emulated."""

from __future__ import annotations

from typing import Any

import pytest
from autoscaling import (
    get_im,
    manifest,
)
from harness import kubectl, kubectl_apply

# -- 3: schema and CEL rules the existing validation suite does not cover ---------------------

BASE_SPEC = manifest("rejected", {"maxReplicas": 2})["spec"]
INVALID_AUTOSCALING = [
    ("max-replicas-missing", {"minReplicas": 1}, ["spec.autoscaling.maxReplicas", "Required"]),
    (
        "raw-without-metric-spec",
        {"maxReplicas": 2, "metrics": [{"type": "raw"}]},
        ["spec.autoscaling.metrics[0]", "type raw needs raw"],
    ),
    (
        "target-with-raw",
        {"maxReplicas": 2, "metrics": [{"type": "cpu", "target": 50, "raw": {"type": "Pods"}}]},
        ["spec.autoscaling.metrics[0]", "no raw"],
    ),
    (
        "cpu-without-target",
        {"maxReplicas": 2, "metrics": [{"type": "cpu"}]},
        ["spec.autoscaling.metrics[0]", "needs target"],
    ),
    ("no-metrics", {"maxReplicas": 2, "metrics": []}, ["spec.autoscaling.metrics"]),
]


@pytest.mark.parametrize(
    ("case", "autoscaling", "expected"),
    INVALID_AUTOSCALING,
    ids=[c[0] for c in INVALID_AUTOSCALING],
)
def test_invalid_autoscaling_is_rejected_naming_the_field(
    namespace: str, case: str, autoscaling: dict[str, Any], expected: list[str]
) -> None:
    doc = manifest("rejected", autoscaling)
    result = kubectl_apply(doc, namespace, check=False)
    assert result.returncode != 0, f"{case} was accepted"
    for fragment in expected:
        assert fragment in result.stderr, f"{case}: {fragment!r} not in {result.stderr!r}"


def test_kubectl_scale_on_an_autoscaled_model_is_refused(namespace: str) -> None:
    """The HPA owns the count: setting spec.replicas through the scale subresource fails."""
    kubectl_apply(manifest("owned", {"maxReplicas": 2}), namespace)
    result = kubectl("scale", "-n", namespace, "im/owned", "--replicas=3", check=False)
    assert result.returncode != 0
    assert "mutually exclusive" in result.stderr and "spec.replicas" in result.stderr
    assert get_im(namespace, "owned")["spec"]["replicas"] == 1  # still the untouched default

"""autoscaling/v2 HorizontalPodAutoscaler for one track, on inference-native metrics."""

from __future__ import annotations

from typing import Any

from kinfer_operator.api.spec import Autoscaling, AutoscalingMetric
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import TRACK_LABEL, Track, child_labels, hpa_name

__all__ = [
    "DEFAULT_BEHAVIOR",
    "GPU_UTIL_METRIC",
    "INFLIGHT_METRIC",
    "QUEUE_DEPTH_METRIC",
    "build_hpa",
    "metric_spec",
]

INFLIGHT_METRIC = "kinfer_inflight_requests"
"""Runtime gauge of queued plus executing requests, served per pod by prometheus-adapter."""
QUEUE_DEPTH_METRIC = "kinfer_queue_depth"
"""Runtime gauge of requests waiting for a batch slot."""
GPU_UTIL_METRIC = "DCGM_FI_DEV_GPU_UTIL"
"""NVIDIA DCGM exporter's GPU utilisation percent, attributed to pods by the exporter."""

DEFAULT_BEHAVIOR: dict[str, Any] = {
    # GPU replicas take minutes to become ready: add capacity early and in large steps...
    "scaleUp": {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Percent", "value": 100, "periodSeconds": 30},
            {"type": "Pods", "value": 2, "periodSeconds": 30},
        ],
    },
    # ...and give it back slowly, so a short lull does not throw away warm replicas.
    "scaleDown": {
        "stabilizationWindowSeconds": 300,
        "selectPolicy": "Min",
        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
    },
}


def _pods_metric(name: str, target: int) -> dict[str, Any]:
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": name},
            "target": {"type": "AverageValue", "averageValue": str(target)},
        },
    }


def metric_spec(metric: AutoscalingMetric) -> dict[str, Any]:
    """Translate one typed metric into an autoscaling/v2 MetricSpec."""
    if metric.type == "raw":
        assert metric.raw is not None  # guaranteed by the schema's CEL rule
        return dict(metric.raw)
    assert metric.target is not None
    if metric.type == "concurrency":
        return _pods_metric(INFLIGHT_METRIC, metric.target)
    if metric.type == "queueDepth":
        return _pods_metric(QUEUE_DEPTH_METRIC, metric.target)
    if metric.type == "gpuUtilization":
        return _pods_metric(GPU_UTIL_METRIC, metric.target)
    return {
        "type": "Resource",
        "resource": {
            "name": metric.type,
            "target": {"type": "Utilization", "averageUtilization": metric.target},
        },
    }


def build_hpa(model: InferenceModel, track: Track, deployment: str) -> dict[str, Any]:
    """HPA scaling the given Deployment within spec.autoscaling bounds."""
    autoscaling: Autoscaling | None = model.spec.autoscaling
    if autoscaling is None:
        raise ValueError("build_hpa needs spec.autoscaling")
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": hpa_name(model, track),
            "namespace": model.namespace,
            "labels": {**child_labels(model), TRACK_LABEL: track},
            "ownerReferences": [model.owner_reference],
        },
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
            # An HPA cannot hold zero; at zero the operator scales the Deployment itself and
            # the HPA, seeing a Deployment at 0 replicas, leaves it alone until a wake-up.
            "minReplicas": max(1, autoscaling.min_replicas),
            "maxReplicas": autoscaling.max_replicas,
            "metrics": [metric_spec(m) for m in autoscaling.metrics],
            "behavior": autoscaling.behavior or DEFAULT_BEHAVIOR,
        },
    }

"""Factories for InferenceModel bodies and observed Kubernetes objects (plain dicts)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from kinfer_operator.naming import HASH_ANNOTATION, MODEL_LABEL, REVISION_LABEL, TRACK_LABEL

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

BASE_SPEC: dict[str, Any] = {
    "model": {"uri": "https://models.example.com/resnet50/v3/model.onnx", "version": "3"},
    "runtime": {
        "image": "registry.example.com/kinfer/runtime:0.1.0",
        "gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"},
        "resources": {"requests": {"cpu": "2", "memory": "8Gi"}},
    },
    "replicas": 2,
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Override wins; a None value removes the key."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def model_body(spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    """An InferenceModel object as the API server would return it."""
    metadata = {"name": "resnet50", "namespace": "ml", "uid": "uid-1", "generation": 1, **meta}
    return {
        "apiVersion": "serving.kinfer.io/v1alpha1",
        "kind": "InferenceModel",
        "metadata": metadata,
        "spec": deep_merge(BASE_SPEC, spec or {}),
    }


def observed_deployment(
    built: dict[str, Any],
    *,
    replicas: int = 2,
    ready: int | None = None,
    track: str | None = None,
    created: str = "2026-01-01T00:00:00Z",
    stamped: bool = True,
    deadline_exceeded: bool = False,
    replica_failure: str | None = None,
) -> dict[str, Any]:
    """A built Deployment as the API server would show it after the controller acted."""
    obj = copy.deepcopy(built)
    ready = replicas if ready is None else ready
    obj["metadata"]["generation"] = 1
    obj["metadata"]["creationTimestamp"] = created
    if track:
        obj["metadata"]["labels"][TRACK_LABEL] = track
    if not stamped:
        obj["metadata"].get("annotations", {}).pop(HASH_ANNOTATION, None)
    obj["spec"]["replicas"] = replicas
    conditions = []
    if deadline_exceeded:
        conditions.append(
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        )
    if replica_failure is not None:
        conditions.append(
            {
                "type": "ReplicaFailure",
                "status": "True",
                "reason": "FailedCreate",
                "message": replica_failure,
            }
        )
    obj["status"] = {
        "observedGeneration": 1,
        "replicas": replicas,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "updatedReplicas": replicas,
        "conditions": conditions,
    }
    return obj


def pod(
    model: str, revision: str, *, scheduled_message: str | None = None, **status: Any
) -> dict[str, Any]:
    """A pod of one revision; scheduled_message makes it Pending as Unschedulable."""
    conditions = []
    if scheduled_message is not None:
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": scheduled_message,
            }
        )
    return {
        "metadata": {
            "name": f"{model}-{revision}-x",
            "labels": {MODEL_LABEL: model, REVISION_LABEL: revision},
        },
        "status": {"conditions": conditions, **status},
    }


def load_example(name: str) -> dict[str, Any]:
    """A manifest from examples/."""
    return dict(yaml.safe_load((EXAMPLES / name).read_text()))

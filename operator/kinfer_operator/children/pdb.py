"""PodDisruptionBudget: node drains take at most one serving replica at a time."""

from __future__ import annotations

from typing import Any

from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import MODEL_LABEL, child_labels

__all__ = ["build_pdb", "wants_pdb"]


def wants_pdb(model: InferenceModel) -> bool:
    """A budget only makes sense with more than one replica; with one it would block drains."""
    spec = model.spec
    floor = spec.autoscaling.min_replicas if spec.autoscaling else spec.fixed_replicas
    return floor > 1


def build_pdb(model: InferenceModel) -> dict[str, Any]:
    """maxUnavailable 1 across all revisions of the model."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": model.name,
            "namespace": model.namespace,
            "labels": child_labels(model),
            "ownerReferences": [model.owner_reference],
        },
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {MODEL_LABEL: model.name}},
            # Evicting a pod that never became ready costs no capacity.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }

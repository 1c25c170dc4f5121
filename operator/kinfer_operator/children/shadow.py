"""Shadow traffic children: the ConfigMap that tells stable runtimes whether and where to
mirror, and the Service that gives the candidate an address to mirror to.

Why a ConfigMap in a volume: every runtime pod mounts it (optional, so it may be absent), and
the kubelet swaps the file in place when it changes. Turning mirroring on or off, or pointing
it at a new candidate, never touches the stable Deployment's pod template, so stable pods are
never restarted for it. Why a Service and its ClusterIP: the candidate's pods come and go; the
Service balances over them, and a ClusterIP needs no cluster DNS (some clusters, the e2e one
included, have none).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kinfer_operator import runtime_contract as rc
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import MODEL_LABEL, REVISION_LABEL, child_labels

__all__ = [
    "MirrorTarget",
    "build_shadow_config",
    "build_shadow_service",
    "shadow_config_name",
    "shadow_service_name",
]


@dataclass(frozen=True)
class MirrorTarget:
    """Where stable mirrors to, and how much; written into the ConfigMap as JSON."""

    revision: str
    url: str
    """http://<shadow Service ClusterIP>:<classified port>."""
    percent: int
    timeout_seconds: int
    max_queue: int
    max_concurrency: int


def shadow_config_name(model: InferenceModel) -> str:
    """`<name>-shadow`: the ConfigMap every runtime pod of the model mounts."""
    return f"{model.name}-shadow"


def shadow_service_name(model: InferenceModel) -> str:
    """`<name>-shadow`: the Service over the candidate revision's pods."""
    return f"{model.name}-shadow"


def _meta(model: InferenceModel, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": model.namespace,
        "labels": child_labels(model),
        "ownerReferences": [model.owner_reference],
    }


def build_shadow_config(model: InferenceModel, target: MirrorTarget | None) -> dict[str, Any]:
    """The mirror settings stable runtimes poll; `{}` (no target) means mirroring is off."""
    config: dict[str, Any] = {}
    if target is not None:
        config = {
            "revision": target.revision,
            "target": target.url,
            "percent": target.percent,
            "timeoutSeconds": target.timeout_seconds,
            "maxQueue": target.max_queue,
            "maxConcurrency": target.max_concurrency,
        }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(model, shadow_config_name(model)),
        "data": {rc.SHADOW_CONFIG_FILE: json.dumps(config, sort_keys=True)},
    }


def build_shadow_service(model: InferenceModel, revision: str) -> dict[str, Any]:
    """ClusterIP Service over one revision's pods: the mirror's target. It exposes only the
    classified port, the one where the runtime counts the mirror's requests as shadow."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(model, shadow_service_name(model)),
        "spec": {
            "type": "ClusterIP",
            "selector": {MODEL_LABEL: model.name, REVISION_LABEL: revision},
            "ports": [
                {
                    "name": rc.CLASSIFIED_PORT_NAME,
                    "port": rc.CLASSIFIED_PORT,
                    "targetPort": rc.CLASSIFIED_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }

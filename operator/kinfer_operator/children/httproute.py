"""Gateway API traffic: per-track Services and an HTTPRoute with explicit weights.

Rule 0 is always the weighted split (readers such as `route_problem` rely on it). With
`traffic.pin`, rule 1 matches the pin header and sends the request to the canary Service at
any weight; Gateway API ranks a rule with a header match above one without, so no priority is
needed. The pinned rule matches the REST paths only (`/v2`): a gateway may rank it against
the GRPCRoute's rules by its own measure (Traefik's, by rule length, put a header on `/` above
the gRPC pin and sent pinned gRPC calls to the REST port, a 404 each). The pinned rule sets a
marker header and sends to the canary's classified port, the only port where the runtime
honours the marker, so pinned requests are counted apart from the analysed ones; a client
that sets the marker itself reaches the public port, where it is ignored (the weighted rule
strips it too).
"""

from __future__ import annotations

from typing import Any, Literal

from kinfer_operator import runtime_contract as rc
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import (
    MODEL_LABEL,
    REVISION_LABEL,
    TRACK_LABEL,
    child_labels,
    service_name,
)

__all__ = [
    "build_httproute",
    "build_track_service",
    "route_parents",
    "track_service_name",
    "weighted_backends",
]


def track_service_name(model: InferenceModel, track: Literal["stable", "canary"]) -> str:
    """`<name>-stable` / `<name>-canary`: the route's two backends."""
    return f"{model.name}-{track}"


def build_track_service(
    model: InferenceModel, track: Literal["stable", "canary"], revision: str
) -> dict[str, Any]:
    """A Service over one revision's pods, so the routes can weight revisions exactly: its
    http and grpc ports are the HTTPRoute's and GRPCRoute's backends, its classified port is
    where the HTTPRoute's pinned rule sends."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": track_service_name(model, track),
            "namespace": model.namespace,
            "labels": {**child_labels(model), TRACK_LABEL: track},
            "ownerReferences": [model.owner_reference],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {MODEL_LABEL: model.name, REVISION_LABEL: revision},
            "ports": [
                {"name": "http", "port": rc.HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                {
                    "name": "grpc",
                    "port": rc.GRPC_PORT,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    # Cleartext HTTP/2: how the gateway knows to speak h2c to the GRPCRoute's
                    # backends.
                    "appProtocol": "kubernetes.io/h2c",
                },
                {
                    "name": rc.CLASSIFIED_PORT_NAME,
                    "port": rc.CLASSIFIED_PORT,
                    "targetPort": rc.CLASSIFIED_PORT_NAME,
                    "protocol": "TCP",
                },
            ],
        },
    }


def weighted_backends(
    model: InferenceModel, canary_weight: int, port: int = rc.HTTP_PORT, activator: bool = False
) -> list[dict[str, Any]]:
    """The weighted rule's two backendRefs (stable, then canary) on the track Services' `port`.

    `activator`: the activator fronts the model and applies the split itself (its routing
    table carries the weight), so the rule sends everything to the `<name>` Service.
    """
    if activator:
        return [{"name": service_name(model), "port": port, "weight": 100}]
    # Both weights are always written: an omitted weight defaults to 1 in Gateway API.
    return [
        {"name": track_service_name(model, "stable"), "port": port, "weight": 100 - canary_weight},
        {"name": track_service_name(model, "canary"), "port": port, "weight": canary_weight},
    ]


def route_parents(model: InferenceModel) -> dict[str, Any]:
    """parentRefs and hostnames of every route kinfer writes for the model."""
    rollout = model.spec.rollout
    gateway = rollout.traffic.gateway if rollout else None
    if gateway is None:
        raise ValueError("a Gateway API route needs spec.rollout.traffic.gateway")
    spec: dict[str, Any] = {"parentRefs": [dict(p) for p in gateway.parent_refs]}
    if gateway.hostnames:
        spec["hostnames"] = list(gateway.hostnames)
    return spec


def _modify_headers(**change: Any) -> dict[str, Any]:
    return {"type": "RequestHeaderModifier", "requestHeaderModifier": change}


def build_httproute(
    model: InferenceModel, canary_weight: int, activator: bool = False
) -> dict[str, Any]:
    """HTTPRoute splitting the model's traffic between the stable and canary Services (or,
    with `activator`, sending it to the activator through `<name>`, which splits)."""
    rollout = model.spec.rollout
    parents = route_parents(model)
    weighted: dict[str, Any] = {
        "backendRefs": weighted_backends(model, canary_weight, activator=activator)
    }
    rules = [weighted]
    pin = rollout.traffic.pin if rollout else None
    if pin is not None:
        weighted["filters"] = [_modify_headers(remove=[rc.PINNED_MARKER_HEADER])]
        rules.append(
            {
                "matches": [
                    {
                        "path": {"type": "PathPrefix", "value": rc.REST_PREFIX},
                        "headers": [{"type": "Exact", "name": pin.header, "value": pin.value}],
                    }
                ],
                "filters": [
                    _modify_headers(set=[{"name": rc.PINNED_MARKER_HEADER, "value": "true"}])
                ],
                "backendRefs": [
                    {
                        "name": track_service_name(model, "canary"),
                        "port": rc.CLASSIFIED_PORT,
                        "weight": 1,
                    }
                ],
            }
        )
    spec: dict[str, Any] = {**parents, "rules": rules}
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": model.name,
            "namespace": model.namespace,
            "labels": child_labels(model),
            "ownerReferences": [model.owner_reference],
        },
        "spec": spec,
    }

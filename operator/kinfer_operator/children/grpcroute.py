"""Gateway API traffic for gRPC clients: a GRPCRoute beside the HTTPRoute.

The same parents, hostnames, weights and pin header as the HTTPRoute (children/httproute.py),
on the track Services' grpc port (appProtocol kubernetes.io/h2c). Rule 0 is the weighted
split, as in the HTTPRoute (`route_problem` reads it); with `traffic.pin`, rule 1 matches the
pin header (gRPC metadata) and sends to the canary Service whatever the weight. The runtime
has no classified gRPC listener, so a pinned gRPC call is counted like a live one on the
candidate (pinned HTTP requests alone are kept out of the analysis).

Every rule matches the Open Inference Protocol's gRPC service by name: a GRPCRoute without a
method match is a catch-all on its hostnames, and gateways that build one router per listener
(Traefik) then send the model's plain HTTP requests to the gRPC port too (a 500 each).
"""

from __future__ import annotations

from typing import Any

from kinfer_operator import runtime_contract as rc
from kinfer_operator.children.httproute import route_parents, track_service_name, weighted_backends
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import child_labels

__all__ = ["GRPC_SERVICE", "build_grpcroute"]

GRPC_SERVICE = "inference.GRPCInferenceService"
"""The runtime's gRPC service (KServe v2 / Triton), the only one the routes send to it."""
_METHOD = {"type": "Exact", "service": GRPC_SERVICE}


def build_grpcroute(
    model: InferenceModel, canary_weight: int, activator: bool = False
) -> dict[str, Any]:
    """GRPCRoute splitting the model's gRPC calls between the stable and canary Services
    (with `activator`: all to `<name>`, where the activator splits)."""
    rollout = model.spec.rollout
    rules: list[dict[str, Any]] = [
        {
            "matches": [{"method": dict(_METHOD)}],
            "backendRefs": weighted_backends(model, canary_weight, rc.GRPC_PORT, activator),
        }
    ]
    pin = rollout.traffic.pin if rollout else None
    if pin is not None:
        rules.append(
            {
                "matches": [
                    {
                        "method": dict(_METHOD),
                        "headers": [{"type": "Exact", "name": pin.header, "value": pin.value}],
                    }
                ],
                "backendRefs": [
                    {
                        "name": track_service_name(model, "canary"),
                        "port": rc.GRPC_PORT,
                        "weight": 1,
                    }
                ],
            }
        )
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GRPCRoute",
        "metadata": {
            "name": model.name,
            "namespace": model.namespace,
            "labels": child_labels(model),
            "ownerReferences": [model.owner_reference],
        },
        "spec": {**route_parents(model), "rules": rules},
    }

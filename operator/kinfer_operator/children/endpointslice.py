"""The `<name>-kinfer` EndpointSlice: the model's Service pointed at the activator.

While the activator fronts a model (no Ready pod of a scale-to-zero model, or
`spec.routing: leastQueue`), the model's Service selects no pod and this slice is its only
one with endpoints: they are the Ready activator pods, and its ports the pair the routing
table gave the model, so the activator knows the model from the port a request arrived on
(children/activator_routes.py). Knative's serverless Service does the same with its
"private" and "public" Services.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kinfer_operator.children.activator_routes import PortPair
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import child_labels, service_name

__all__ = ["MANAGED_BY_VALUE", "MAX_ENDPOINTS", "build_activator_slice", "slice_name"]

MANAGED_BY_VALUE = "serving.kinfer.io"
"""endpointslice.kubernetes.io/managed-by: the EndpointSlice controller leaves slices that
another manager claims alone (its own slice for the Service is empty: the selector matches
no pod)."""
MAX_ENDPOINTS = 1000
"""An EndpointSlice holds at most 1000 endpoints; the activator runs a handful of pods."""


def slice_name(model: InferenceModel) -> str:
    """`<service>-kinfer`: cannot collide with the controller's generated `<service>-xxxxx`."""
    return f"{service_name(model)}-kinfer"


def build_activator_slice(
    model: InferenceModel, activator_ips: Sequence[str], ports: PortPair
) -> dict[str, Any]:
    """The slice over `activator_ips` (the Ready activator pods, IPv4 or IPv6 but not
    both), with the Service's http and grpc ports mapped to the model's activator ports.

    Endpoints are sorted so that the same pods give the same object (a no-op pass writes
    nothing). With no Ready activator pod the slice is empty: the Service then refuses
    connections, which is what a model with no serving path should do.
    """
    ips = sorted(set(activator_ips))[:MAX_ENDPOINTS]
    family = "IPv6" if ips and ":" in ips[0] else "IPv4"
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name(model),
            "namespace": model.namespace,
            "labels": {
                **child_labels(model),
                "kubernetes.io/service-name": service_name(model),
                "endpointslice.kubernetes.io/managed-by": MANAGED_BY_VALUE,
            },
            "ownerReferences": [model.owner_reference],
        },
        "addressType": family,
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": True, "serving": True}}
            for ip in ips
            if (":" in ip) == (family == "IPv6")
        ],
        "ports": [
            {"name": "http", "port": ports.http, "protocol": "TCP", "appProtocol": "http"},
            {
                "name": "grpc",
                "port": ports.grpc,
                "protocol": "TCP",
                "appProtocol": "kubernetes.io/h2c",
            },
        ],
    }

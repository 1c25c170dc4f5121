"""The model's Service: one stable endpoint over every ready replica of the model (HTTP and
gRPC inference, metrics)."""

from __future__ import annotations

from typing import Any

from kinfer_operator import runtime_contract as rc
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import MODEL_LABEL, REVISION_LABEL, child_labels, service_name

__all__ = ["FRONTED_LABEL", "build_service"]

FRONTED_LABEL = "serving.kinfer.io/fronted-by-activator"
"""In the selector of a Service the activator fronts. No pod carries it: the selector matches
nothing, and the EndpointSlice controller keeps the Service's own slice empty."""


def build_service(
    model: InferenceModel, revisions: tuple[str, ...] | None = None, *, selector: bool = True
) -> dict[str, Any]:
    """ClusterIP Service over the pods of `revisions` (None: every revision's).

    Readiness gates traffic: a replica joins only once its model is loaded and warm. While two
    revisions run side by side unpinned, traffic splits by ready replica count. Which
    revisions it selects is the pass's Front (rollout/front.py): one revision while the
    candidate must get no unpinned request through it (GatewayAPI canary, weight-0 step,
    shadow phase). A Service selector is equality only, so at most one revision can be named.

    `selector=False` (the activator fronts the model: at zero, waking, or leastQueue routing):
    a selector no pod matches (FRONTED_LABEL), so the EndpointSlice controller empties its own
    slice, and the operator's `<name>-kinfer` EndpointSlice (children/endpointslice.py) is the
    only one with endpoints: the activator's. Not a Service without a selector: the controller
    would leave its last slice, with the pods' addresses, in place (kubernetes/kubernetes
    #118376), and kube-proxy would keep sending part of the traffic to pods long gone. Ports
    match the slice's by name.
    """
    chosen = {MODEL_LABEL: model.name}
    if revisions is not None:
        if len(revisions) != 1:
            raise ValueError(f"a Service selects all revisions or exactly one, not {revisions}")
        chosen[REVISION_LABEL] = revisions[0]
    if not selector:
        chosen = {MODEL_LABEL: model.name, FRONTED_LABEL: "true"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(model),
            "namespace": model.namespace,
            "labels": child_labels(model),
            "ownerReferences": [model.owner_reference],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": chosen,
            "ports": [
                {
                    "name": "http",
                    "port": rc.HTTP_PORT,
                    "targetPort": "http",
                    "protocol": "TCP",
                    "appProtocol": "http",
                },
                {
                    "name": "grpc",
                    "port": rc.GRPC_PORT,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    # Cleartext HTTP/2: how Gateway API implementations and meshes know gRPC.
                    "appProtocol": "kubernetes.io/h2c",
                },
                {
                    "name": "metrics",
                    "port": rc.METRICS_PORT,
                    "targetPort": "metrics",
                    "protocol": "TCP",
                    "appProtocol": "http",
                },
            ],
        },
    }

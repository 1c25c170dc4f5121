"""The model's Service: one stable endpoint over every ready replica of the model (HTTP and
gRPC inference, metrics)."""

from __future__ import annotations

from typing import Any

from kinfer_operator import runtime_contract as rc
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import MODEL_LABEL, REVISION_LABEL, child_labels, service_name

__all__ = ["build_service"]


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
    no selector, so the EndpointSlice controller leaves the Service alone and the operator's
    own `<name>-kinfer` EndpointSlice (children/endpointslice.py) points it at the activator.
    Ports stay as they are: a selector-less Service's ports match the slice's by name.
    """
    chosen = {MODEL_LABEL: model.name}
    if revisions is not None:
        if len(revisions) != 1:
            raise ValueError(f"a Service selects all revisions or exactly one, not {revisions}")
        chosen[REVISION_LABEL] = revisions[0]
    spec_selector = {"selector": chosen} if selector else {}
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
            **spec_selector,
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

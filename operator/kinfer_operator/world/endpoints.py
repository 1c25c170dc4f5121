"""Which pods a Service routes to, as its EndpointSlices say right now."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kinfer_operator.world.observed import Observed

__all__ = ["SERVICE_NAME_LABEL", "deletion_started", "routed_pods"]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def routed_pods(observed: Observed, service: str) -> frozenset[str] | None:
    """Names of the pods the Service's EndpointSlices list as ready (what kube-proxy and the
    gateways send requests to); None when no slice of the Service is observed."""
    slices = [
        s
        for s in observed.endpoint_slices
        if (s.get("metadata", {}).get("labels") or {}).get(SERVICE_NAME_LABEL) == service
    ]
    if not slices:
        return None
    names: set[str] = set()
    for endpoint_slice in slices:
        for endpoint in endpoint_slice.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            ref = endpoint.get("targetRef") or {}
            # ready unset means ready (discovery.k8s.io/v1); a terminating endpoint is not.
            if conditions.get("ready") is not False and ref.get("kind", "Pod") == "Pod":
                names.add(str(ref.get("name", "")))
    return frozenset(names)


def deletion_started(pod: Mapping[str, Any]) -> datetime | None:
    """When the pod was asked to go: its deletionTimestamp less its grace period."""
    meta = pod.get("metadata") or {}
    stamp = meta.get("deletionTimestamp")
    if not stamp:
        return None
    at = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    grace = int(meta.get("deletionGracePeriodSeconds") or 0)
    return datetime.fromtimestamp(at.timestamp() - grace, tz=at.tzinfo)

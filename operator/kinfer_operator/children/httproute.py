"""Gateway API traffic: per-track Services and an HTTPRoute with explicit weights.

Rule 0 is always the weighted split (readers such as `route_problem` rely on it). With
`traffic.pin`, rule 1 matches the pin header and sends the request to the canary Service at
any weight; Gateway API ranks a rule with a header match above one without, so no priority is
needed. The pinned rule sets a marker header and the weighted rule strips it, so the runtime
can count pinned requests apart from the analysed ones and clients cannot fake the marker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from kinfer_operator import runtime_contract as rc
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import MODEL_LABEL, REVISION_LABEL, TRACK_LABEL, child_labels

__all__ = [
    "RouteWait",
    "build_httproute",
    "build_track_service",
    "route_accepts",
    "route_problem",
    "track_service_name",
]


def track_service_name(model: InferenceModel, track: Literal["stable", "canary"]) -> str:
    """`<name>-stable` / `<name>-canary`: the route's two backends."""
    return f"{model.name}-{track}"


def build_track_service(
    model: InferenceModel, track: Literal["stable", "canary"], revision: str
) -> dict[str, Any]:
    """A Service over one revision's pods, so the route can weight revisions exactly."""
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
                {"name": "http", "port": rc.HTTP_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def _backends(model: InferenceModel, canary_weight: int) -> list[dict[str, Any]]:
    # Both weights are always written: an omitted weight defaults to 1 in Gateway API.
    return [
        {
            "name": track_service_name(model, "stable"),
            "port": rc.HTTP_PORT,
            "weight": 100 - canary_weight,
        },
        {
            "name": track_service_name(model, "canary"),
            "port": rc.HTTP_PORT,
            "weight": canary_weight,
        },
    ]


def _modify_headers(**change: Any) -> dict[str, Any]:
    return {"type": "RequestHeaderModifier", "requestHeaderModifier": change}


def build_httproute(model: InferenceModel, canary_weight: int) -> dict[str, Any]:
    """HTTPRoute splitting the model's traffic between the stable and canary Services."""
    rollout = model.spec.rollout
    gateway = rollout.traffic.gateway if rollout else None
    if gateway is None:
        raise ValueError("build_httproute needs spec.rollout.traffic.gateway")
    weighted: dict[str, Any] = {"backendRefs": _backends(model, canary_weight)}
    rules = [weighted]
    pin = rollout.traffic.pin if rollout else None
    if pin is not None:
        weighted["filters"] = [_modify_headers(remove=[rc.PINNED_MARKER_HEADER])]
        rules.append(
            {
                "matches": [
                    {"headers": [{"type": "Exact", "name": pin.header, "value": pin.value}]}
                ],
                "filters": [
                    _modify_headers(set=[{"name": rc.PINNED_MARKER_HEADER, "value": "true"}])
                ],
                "backendRefs": [
                    {"name": track_service_name(model, "canary"), "port": rc.HTTP_PORT, "weight": 1}
                ],
            }
        )
    spec: dict[str, Any] = {"parentRefs": [dict(p) for p in gateway.parent_refs], "rules": rules}
    if gateway.hostnames:
        spec["hostnames"] = list(gateway.hostnames)
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


class RouteWait(NamedTuple):
    """Why a weight does not count yet; `refused` when a gateway reported a False condition
    (a problem to surface) rather than not having caught up yet (normal for a moment)."""

    message: str
    refused: bool = False


def route_problem(route: Mapping[str, Any] | None, canary_weight: int) -> RouteWait | None:
    """Why analysis time at this weight cannot count yet, or None once the route carries the
    weight and every parent reports Accepted and ResolvedRefs for its current generation.
    The gateway's own reason and message are quoted, so status says what it refused."""
    if route is None:
        return RouteWait("the HTTPRoute does not exist yet")
    rules = route.get("spec", {}).get("rules") or [{}]
    weights = [b.get("weight") for b in rules[0].get("backendRefs") or []]
    if weights[-1:] != [canary_weight]:
        return RouteWait(f"the HTTPRoute does not carry weight {canary_weight} yet")
    generation = route.get("metadata", {}).get("generation", 0)
    parents = (route.get("status") or {}).get("parents") or []
    if not parents:
        return RouteWait("no gateway has reported on the HTTPRoute yet")
    for parent in parents:
        ref = (parent.get("parentRef") or {}).get("name", "?")
        conditions = {
            c.get("type"): c
            for c in parent.get("conditions") or []
            if c.get("observedGeneration", generation) >= generation
        }
        for needed in ("Accepted", "ResolvedRefs"):
            found = conditions.get(needed) or {}
            if not found:
                return RouteWait(
                    f"gateway {ref} has not reported {needed} for generation {generation}"
                )
            if found.get("status") != "True":
                detail = f"{found.get('reason', '')}: {found.get('message', '')}".strip(": ")
                return RouteWait(f"gateway {ref}: {needed}={found.get('status')} {detail}", True)
    return None


def route_accepts(route: Mapping[str, Any] | None, canary_weight: int) -> bool:
    """The route carries this weight and every parent accepted it with resolved refs."""
    return route_problem(route, canary_weight) is None

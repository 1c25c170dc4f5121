"""Read what the gateway controller says about an HTTPRoute or GRPCRoute kinfer wrote."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["RouteWait", "route_accepts", "route_problem", "route_status_problem"]


class RouteWait(NamedTuple):
    """Why a weight does not count yet; `refused` when a gateway reported a False condition
    (a problem to surface) rather than not having caught up yet (normal for a moment)."""

    message: str
    refused: bool = False


def route_problem(
    route: Mapping[str, Any] | None,
    canary_weight: int,
    kind: str = "HTTPRoute",
    activator_service: str | None = None,
) -> RouteWait | None:
    """Why analysis time at this weight cannot count yet, or None once the route carries the
    weight and every parent reports Accepted and ResolvedRefs for its current generation.
    The gateway's own reason and message are quoted, so status says what it refused.
    A weighted rule whose one backend is `activator_service` (the model's Service while the
    activator fronts it) carries any weight: the activator's routing table splits."""
    if route is None:
        return RouteWait(f"the {kind} does not exist yet")
    rules = route.get("spec", {}).get("rules") or [{}]
    backends = rules[0].get("backendRefs") or []
    weights = [b.get("weight") for b in backends]
    fronted = (
        activator_service is not None
        and len(backends) == 1
        and backends[0].get("name") == activator_service
    )
    if not fronted and weights[-1:] != [canary_weight]:
        return RouteWait(f"the {kind} does not carry weight {canary_weight} yet")
    return route_status_problem(route, kind)


def route_status_problem(route: Mapping[str, Any] | None, kind: str) -> RouteWait | None:
    """Why the route is not in force whatever its weights, or None once every parent reports
    Accepted and ResolvedRefs True for its current generation."""
    if route is None:
        return RouteWait(f"the {kind} does not exist yet")
    generation = route.get("metadata", {}).get("generation", 0)
    parents = (route.get("status") or {}).get("parents") or []
    if not parents:
        return RouteWait(f"no gateway has reported on the {kind} yet")
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
                return RouteWait(
                    f"gateway {ref}: {kind} {needed}={found.get('status')} {detail}"
                    if kind != "HTTPRoute"
                    else f"gateway {ref}: {needed}={found.get('status')} {detail}",
                    True,
                )
    return None


def route_accepts(route: Mapping[str, Any] | None, canary_weight: int) -> bool:
    """The route carries this weight and every parent accepted it with resolved refs."""
    return route_problem(route, canary_weight) is None

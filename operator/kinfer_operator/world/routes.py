"""Read what the gateway controller says about an HTTPRoute kinfer wrote."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["route_accepts"]


def route_accepts(route: Mapping[str, Any] | None, canary_weight: int) -> bool:
    """The route carries this weight and every parent reports Accepted and ResolvedRefs for
    its current generation: only then does analysis time at the new weight count."""
    if route is None:
        return False
    rules = route.get("spec", {}).get("rules") or [{}]
    weights = [b.get("weight") for b in rules[0].get("backendRefs") or []]
    if weights[-1:] != [canary_weight]:
        return False
    generation = route.get("metadata", {}).get("generation", 0)
    parents = (route.get("status") or {}).get("parents") or []
    if not parents:
        return False
    for parent in parents:
        conditions = {
            c.get("type"): c
            for c in parent.get("conditions") or []
            if c.get("observedGeneration", generation) >= generation
        }
        for needed in ("Accepted", "ResolvedRefs"):
            if (conditions.get(needed) or {}).get("status") != "True":
                return False
    return True

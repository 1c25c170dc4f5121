"""The activator's routing table: ConfigMap `kinfer-activator-routes` in the operator's namespace.

The activator must never be a way into another namespace, so it tells models apart by the
port a request arrived on and learns port -> model only from this object, which tenants
cannot write. Each model in the table gets a port pair (http = 20000 + 2k, grpc = 20000 +
2k + 1), the lowest free one, kept for as long as the model stays in the table: a model's
EndpointSlice (children/endpointslice.py) points its Service at the activator on that pair.

Pure: `allocate_ports` and `build_routes_configmap` read what they are given; the operator's
leader writes the result (reconcile/routes_table.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kinfer_operator.children.httproute import track_service_name
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import MANAGED_BY, deployment_name

__all__ = [
    "CONFIGMAP_NAME",
    "FIRST_PORT",
    "MAX_ROUTES",
    "ROUTES_KEY",
    "TABLE_VERSION",
    "PortPair",
    "Route",
    "TrackRef",
    "allocate_ports",
    "build_routes_configmap",
    "held_ports",
    "route_of",
    "wake_replicas",
]

CONFIGMAP_NAME = "kinfer-activator-routes"
ROUTES_KEY = "routes.json"
TABLE_VERSION = 1
FIRST_PORT = 20000
MAX_ROUTES = 1500
"""Models the table holds at most: about 600 bytes each keeps the ConfigMap well under its
1 MiB limit; models past it stay served by their pods only (never at zero)."""

ModelKey = tuple[str, str]


@dataclass(frozen=True, order=True)
class PortPair:
    """A model's two activator ports."""

    http: int

    @property
    def grpc(self) -> int:
        return self.http + 1

    @classmethod
    def at(cls, index: int) -> PortPair:
        """The `index`-th pair from FIRST_PORT."""
        return cls(FIRST_PORT + 2 * index)


@dataclass(frozen=True)
class TrackRef:
    """Where the activator finds one revision: its track Service's EndpointSlices, and the
    Deployment whose scale it patches to wake the model (stable only)."""

    revision: str
    service: str
    deployment: str

    def as_json(self) -> dict[str, str]:
        return {"revision": self.revision, "service": self.service, "deployment": self.deployment}


@dataclass(frozen=True)
class Route:
    """One model's row of the table: everything the activator needs, nothing tenant-chosen
    beyond names the API server already validated."""

    namespace: str
    model: str
    stable: TrackRef
    canary: TrackRef | None
    canary_weight: int
    at_zero: bool
    least_queue: bool
    target_concurrency: int
    max_held_requests: int
    max_hold_seconds: int
    wake_max: int

    def as_json(self, ports: PortPair) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "model": self.model,
            "httpPort": ports.http,
            "grpcPort": ports.grpc,
            "stable": self.stable.as_json(),
            "canary": self.canary.as_json() if self.canary else None,
            "canaryWeight": self.canary_weight,
            "atZero": self.at_zero,
            "leastQueue": self.least_queue,
            "targetConcurrency": self.target_concurrency,
            "maxHeldRequests": self.max_held_requests,
            "maxHoldSeconds": self.max_hold_seconds,
            "wakeReplicas": {"max": self.wake_max},
        }


def route_of(
    model: InferenceModel,
    *,
    stable_revision: str,
    canary_revision: str | None,
    canary_weight: int,
    at_zero: bool,
) -> Route:
    """The model's row, from its spec and this pass's Front decision."""
    autoscaling = model.spec.autoscaling
    wake_max = autoscaling.max_replicas if autoscaling else model.spec.fixed_replicas

    def ref(revision: str, track: Literal["stable", "canary"]) -> TrackRef:
        return TrackRef(
            revision, track_service_name(model, track), deployment_name(model, revision)
        )

    return Route(
        namespace=model.namespace,
        model=model.name,
        stable=ref(stable_revision, "stable"),
        canary=ref(canary_revision, "canary") if canary_revision else None,
        canary_weight=canary_weight if canary_revision else 0,
        at_zero=at_zero,
        least_queue=model.spec.routing == "leastQueue",
        target_concurrency=model.spec.target_concurrency,
        max_held_requests=model.spec.max_held_requests,
        max_hold_seconds=model.spec.max_hold_seconds,
        wake_max=wake_max,
    )


def wake_replicas(held: int, target_concurrency: int, wake_max: int) -> int:
    """Replicas the activator asks for: ceil(held / targetConcurrency), 1..wake_max."""
    return max(1, min(wake_max, math.ceil(held / max(1, target_concurrency))))


def held_ports(configmap: Mapping[str, Any] | None) -> dict[ModelKey, PortPair]:
    """The pairs the table as last written gives each model; anything unreadable counts as
    not allocated (the operator wrote it, but a person may have edited it)."""
    if configmap is None:
        return {}
    try:
        table = json.loads((configmap.get("data") or {}).get(ROUTES_KEY) or "{}")
        rows = table.get("routes") or {}
        out: dict[ModelKey, PortPair] = {}
        for port, row in rows.items():
            http = int(port)
            if http < FIRST_PORT or (http - FIRST_PORT) % 2:
                continue
            key = (str(row["namespace"]), str(row["model"]))
            if key not in out:
                out[key] = PortPair(http)
        return out
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}


def allocate_ports(
    models: Iterable[ModelKey], held: Mapping[ModelKey, PortPair]
) -> dict[ModelKey, PortPair]:
    """A pair for each model: the one it holds, else the lowest free one (models in sorted
    order, so the outcome does not depend on listing order). At most MAX_ROUTES models get
    one; the rest are left out, sorted last."""
    wanted = sorted(set(models))
    out: dict[ModelKey, PortPair] = {}
    taken: set[PortPair] = set()
    for key in wanted:
        pair = held.get(key)
        if pair is not None and pair not in taken and pair.http < PortPair.at(MAX_ROUTES).http:
            out[key] = pair
            taken.add(pair)
    index = 0
    for key in wanted:
        if key in out:
            continue
        if len(out) >= MAX_ROUTES:
            break
        while PortPair.at(index) in taken:
            index += 1
        out[key] = PortPair.at(index)
        taken.add(out[key])
    return out


def build_routes_configmap(
    namespace: str, routes: Mapping[ModelKey, Route], ports: Mapping[ModelKey, PortPair]
) -> dict[str, Any]:
    """The ConfigMap for every model that has both a route and a pair; `routes.json` is
    serialized with sorted keys so the same table is the same bytes."""
    rows = {
        str(ports[key].http): route.as_json(ports[key])
        for key, route in routes.items()
        if key in ports
    }
    table = {"version": TABLE_VERSION, "routes": rows}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIGMAP_NAME,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/part-of": "kinfer",
                "app.kubernetes.io/component": "activator-routes",
                "app.kubernetes.io/managed-by": MANAGED_BY,
            },
        },
        "data": {ROUTES_KEY: json.dumps(table, sort_keys=True, separators=(",", ":"))},
    }

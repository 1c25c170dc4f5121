"""The activator side of a pass's Front decision (rollout/front.py, DESIGN-front.md): the
children that put the activator in front of a model, or take it away again.

Kept apart from plan() so that the Front decision can call it as it lands: given the pass's
`via`, its revisions and weight, and what the routing table allotted, it returns the
Service, EndpointSlice and track Services to apply and the slice to delete, plus the model's
routing-table row. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from kinfer_operator.children.activator_routes import PortPair, Route, route_of
from kinfer_operator.children.endpointslice import build_activator_slice, slice_name
from kinfer_operator.children.httproute import build_track_service
from kinfer_operator.children.service import build_service
from kinfer_operator.model import InferenceModel
from kinfer_operator.reconcile.plan import Delete, Plan, stamped

__all__ = ["FrontChildren", "activator_children", "route_for", "wants_route", "with_front"]


@dataclass(frozen=True)
class FrontChildren:
    """What the pass applies and deletes for the model's Service path."""

    applies: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    via: Literal["pods", "activator"] = "pods"
    """Who actually fronts the model after this pass (pods when the table had no pair)."""


def wants_route(model: InferenceModel) -> bool:
    """Whether the model belongs in the routing table at all: it may go to zero, or the
    activator routes it when warm. Its row stays while it is warm, so its pair is kept."""
    return model.spec.scales_to_zero or model.spec.routing == "leastQueue"


def route_for(
    model: InferenceModel,
    *,
    stable_revision: str,
    canary_revision: str | None,
    canary_weight: int,
    at_zero: bool,
) -> Route | None:
    """The model's row for `RoutesTable.submit`, or None to leave the table."""
    if not wants_route(model) or not stable_revision:
        return None
    return route_of(
        model,
        stable_revision=stable_revision,
        canary_revision=canary_revision,
        canary_weight=canary_weight,
        at_zero=at_zero,
    )


def activator_children(
    model: InferenceModel,
    *,
    via: Literal["pods", "activator"],
    service_revisions: tuple[str, ...] | None,
    stable_revision: str,
    canary_revision: str | None,
    activator_ips: Sequence[str],
    ports: PortPair | None,
    slice_observed: bool,
) -> FrontChildren:
    """The model Service and what goes with it.

    via="activator" with a pair: the Service without selector, the `<name>-kinfer` slice on
    the Ready activator pods, and both track Services (how the activator finds each
    revision's pods). Without a pair (the table is full) the pods keep fronting the model.
    via="pods": the Service selects the pods (pinned to `service_revisions` if set) and a
    slice left from the activator is deleted (its Service has a selector again, so the
    EndpointSlice controller writes its own).
    """
    if via == "activator" and ports is not None:
        return FrontChildren(
            applies=[
                build_service(model, selector=False),
                build_activator_slice(model, activator_ips, ports),
                build_track_service(model, "stable", stable_revision),
                build_track_service(model, "canary", canary_revision or stable_revision),
            ],
            via="activator",
        )
    deletes = [Delete("EndpointSlice", slice_name(model))] if slice_observed else []
    return FrontChildren(applies=[build_service(model, service_revisions)], deletes=deletes)


def with_front(decided: Plan, children: FrontChildren) -> Plan:
    """The plan with its `<name>` Service replaced by the front's children: the same Service
    path whichever pass built it. The children win over a track Service the plan already
    had (the GatewayAPI mode builds the same ones), and the plan's Front says who actually
    fronts the model (pods, when the routing table had no pair left)."""
    ours = {(a["kind"], a["metadata"]["name"]) for a in children.applies}
    model_service = next(
        (a["metadata"]["name"] for a in children.applies if a["kind"] == "Service"), None
    )
    kept = [
        a
        for a in decided.applies
        if (a["kind"], a["metadata"]["name"]) not in ours
        and not (a["kind"] == "Service" and a["metadata"]["name"] == model_service)
    ]
    front = decided.front
    if front is not None and front.via != children.via:
        front = replace(front, via=children.via)
    return replace(
        decided,
        applies=[*(stamped(a) for a in children.applies), *kept],
        deletes=[*decided.deletes, *children.deletes],
        front=front,
    )

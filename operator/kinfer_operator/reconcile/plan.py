"""Pure planning: from the model and the observed world to the writes that converge them.

Revisions get their own Deployments (as ReplicaSets do under a Deployment). A new revision is
surged in next to the stable one, becomes stable once all its replicas are available, and only
then is the old revision removed, so serving capacity never drops during a change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kinfer_operator.children import build_deployment, build_hpa, build_pdb, build_service
from kinfer_operator.children.grpcroute import build_grpcroute
from kinfer_operator.children.httproute import build_httproute, build_track_service
from kinfer_operator.children.pdb import wants_pdb
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import (
    HASH_ANNOTATION,
    TRACK_LABEL,
    Track,
    deployment_name,
    object_hash,
    revision_of,
    service_name,
)
from kinfer_operator.rollout.front import Front, decide_front
from kinfer_operator.rollout.machine import RolloutDecision
from kinfer_operator.rollout.retire import retire_step
from kinfer_operator.rollout.shadow import plan_shadow
from kinfer_operator.world import DeploymentView, Observed
from kinfer_operator.world.endpoints import routed_pods

__all__ = ["Delete", "Plan", "Scale", "needs_apply", "plan", "stamped", "want_replicas"]


@dataclass(frozen=True)
class Scale:
    """Set a Deployment's replicas through its scale subresource."""

    name: str
    replicas: int


@dataclass(frozen=True)
class Delete:
    """Remove a child that the desired state no longer contains."""

    kind: str
    name: str


@dataclass(frozen=True)
class Plan:
    """Everything one reconcile pass intends, plus the revisions it reasons about."""

    applies: list[dict[str, Any]] = field(default_factory=list)
    scales: list[Scale] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    desired_revision: str = ""
    serving_revision: str = ""
    """Revision that serves as stable after this pass."""
    candidate_revision: str | None = None
    """Revision being brought up next to stable, if any."""
    want_replicas: int = 1
    promoted: bool = False
    front: Front | None = None
    """Who fronts the model's endpoints this pass (what the Service and routes were built from)."""
    requeue_after: float | None = None
    """Look again after this long: a replaced revision is being retired step by step."""


def want_replicas(model: InferenceModel, stable: DeploymentView | None) -> int:
    """Replicas the serving revision should have: fixed, or what the HPA chose (clamped)."""
    autoscaling = model.spec.autoscaling
    if autoscaling is None:
        return model.spec.fixed_replicas
    current = stable.spec_replicas if stable else autoscaling.min_replicas
    return min(max(current, autoscaling.min_replicas), autoscaling.max_replicas)


def stamped(desired: dict[str, Any]) -> dict[str, Any]:
    """The desired object with its content hash recorded in an annotation.

    The track label is hashed as if it were "stable", so promoting a Deployment changes only
    that label: any change to a Deployment's annotations bumps its generation, and the pass
    after a promotion would see it as not yet rolled out (Ready flapping, a second
    Deploying/Serving Event). needs_apply compares the labels themselves.
    """
    meta = desired["metadata"]
    labels = meta.get("labels") or {}
    hashed = desired
    if TRACK_LABEL in labels:
        hashed = {**desired, "metadata": {**meta, "labels": {**labels, TRACK_LABEL: "stable"}}}
    annotations = {**meta.get("annotations", {}), HASH_ANNOTATION: object_hash(hashed)}
    return {**desired, "metadata": {**meta, "annotations": annotations}}


def needs_apply(desired: dict[str, Any], observed: Any) -> bool:
    """True unless the observed child was last applied from exactly this (stamped) object.

    Comparing our own hash, not the live object, keeps API-server defaulting and other
    controllers' fields (HPA replicas, status) from ever looking like drift. Labels are
    compared as they are (see stamped).
    """
    if observed is None:
        return True
    want = desired["metadata"]["annotations"][HASH_ANNOTATION]
    meta = observed.get("metadata", {})
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    wanted_labels = desired["metadata"].get("labels") or {}
    return bool(
        annotations.get(HASH_ANNOTATION) != want
        or any(labels.get(k) != v for k, v in wanted_labels.items())
    )


def _select_revisions(
    model: InferenceModel, observed: Observed, revision: str, want: int
) -> tuple[str, str | None, bool]:
    """(serving, candidate, promoted) for this pass."""
    stable = observed.stable()
    if stable is None or stable.revision == revision:
        return revision, None, False
    candidate = observed.deployment(revision)
    if candidate is not None and candidate.fully_available(want):
        return revision, None, True
    return stable.revision, revision, False


def _rollout_revisions(
    model: InferenceModel, stable: DeploymentView, rollout: RolloutDecision
) -> tuple[str, str | None, bool]:
    """(serving, candidate, promoted) as the canary state machine decided."""
    revision = revision_of(model)
    if rollout.promote:
        return revision, None, True
    if stable.revision == revision:
        return revision, None, False
    return stable.revision, rollout.canary_revision, False


def plan(
    model: InferenceModel,
    observed: Observed,
    rollout: RolloutDecision | None = None,
    template_mark: str = "",
    now: datetime | None = None,
    *,
    otlp_endpoint: str = "",
    at_zero: bool = False,
    least_queue: bool = False,
    activator_ready: bool = False,
) -> Plan:
    """Decide the children and replica counts for the model's current spec.

    Without `rollout` (no spec.rollout, or no stable revision yet) a new revision is surged
    in and promoted once fully available; with it, the canary state machine's decision rules.
    `template_mark` goes into the pod template (a test-only operator setting). `at_zero`,
    `least_queue` and `activator_ready` go to the Front (rollout/front.py).
    """
    revision = revision_of(model)
    stable = observed.stable()
    want = want_replicas(model, stable)
    if rollout is not None and stable is not None:
        serving, candidate, promoted = _rollout_revisions(model, stable, rollout)
        may_retire = rollout.retire_others or promoted
    else:
        serving, candidate, promoted = _select_revisions(model, observed, revision, want)
        may_retire = True

    shadow = plan_shadow(model, observed, rollout if not promoted else None, serving)
    in_rollout = rollout is not None and not promoted
    front = decide_front(
        model,
        serving,
        candidate,
        rollout.route_weight if rollout is not None and in_rollout else 0,
        pinned_only_step=rollout is not None and in_rollout and rollout.pinned_only,
        shadow_pin=shadow.pin_revision,
        at_zero=at_zero,
        least_queue=least_queue,
        activator_ready=activator_ready,
    )
    applies: list[dict[str, Any]] = [_front_service(model, front), *shadow.applies]
    deletes: list[Delete] = [Delete(kind, name) for kind, name in shadow.deletes]
    scales: list[Scale] = []

    if wants_pdb(model):
        applies.append(build_pdb(model))
    elif observed.pdbs:
        deletes.extend(Delete("PodDisruptionBudget", p["metadata"]["name"]) for p in observed.pdbs)

    rolled_back = (
        rollout is not None
        and rollout.status is not None
        and rollout.status.phase == "RolledBack"
        and rollout.status.revision == revision
    )
    if (candidate == revision and not rolled_back) or serving == revision:
        # A rolled-back canary is only scaled away: re-applying it could not help.
        track: Track = "canary" if candidate else "stable"
        applies.append(build_deployment(model, track, template_mark, otlp_endpoint))
    keep = {serving} | ({candidate} if candidate else set())
    if not may_retire:
        keep |= {v.revision for v in observed.views}  # old revisions go once stable is whole
    retiring = [v for v in observed.views if v.revision not in keep]
    requeue: float | None = None
    if model.spec.rollout is None or now is None:
        deletes.extend(Delete("Deployment", v.name) for v in retiring)
    else:
        receivers = _receivers_ready(model, observed, serving, want)
        for view in retiring:
            step = retire_step(
                view,
                observed.pods_of(view.revision),
                routed_pods(observed, service_name(model)),
                receivers,
                model.spec.rollout.retire,
                now,
            )
            if step.delete:
                deletes.append(Delete("Deployment", view.name))
            elif step.replicas is not None and step.replicas != view.spec_replicas:
                scales.append(Scale(view.name, step.replicas))
            if step.wait is not None:
                requeue = step.wait if requeue is None else min(requeue, step.wait)
    if model.spec.rollout is not None and model.spec.rollout.traffic.mode == "GatewayAPI":
        applies.extend(
            [
                build_track_service(model, "stable", serving),
                build_track_service(model, "canary", candidate or serving),
                build_httproute(model, front.canary_weight, front.via == "activator"),
            ]
        )
        if observed.grpc_routes_served:  # the runtime always serves gRPC (rc.GRPC_PORT)
            applies.append(build_grpcroute(model, front.canary_weight, front.via == "activator"))

    if model.spec.autoscaling is not None:
        hpa = build_hpa(model, "stable", deployment_name(model, serving))
        applies.append(hpa)
        deletes.extend(
            Delete("HorizontalPodAutoscaler", h["metadata"]["name"])
            for h in observed.hpas
            if h["metadata"]["name"] != hpa["metadata"]["name"]
        )
    else:
        deletes.extend(
            Delete("HorizontalPodAutoscaler", h["metadata"]["name"]) for h in observed.hpas
        )
    scales.extend(_scales(model, serving, candidate, want, rollout if not promoted else None))

    return Plan(
        applies=[stamped(a) for a in applies],
        scales=scales,
        deletes=deletes,
        desired_revision=revision,
        serving_revision=serving,
        candidate_revision=candidate,
        want_replicas=want,
        promoted=promoted,
        front=front,
        requeue_after=requeue,
    )


def _front_service(model: InferenceModel, front: Front) -> dict[str, Any]:
    """The `<name>` Service as the Front wants it.

    via="activator": the reconciler replaces it with the activator's children
    (reconcile/front_activator.py `with_front`, which needs the routing table's port pair);
    a plan read alone serves it like pods pinned to stable, the safe reading.
    """
    if front.via == "activator":
        return build_service(model, (front.stable_revision,))
    return build_service(model, front.service_revisions)


def _receivers_ready(model: InferenceModel, observed: Observed, serving: str, want: int) -> bool:
    """The serving revision, which takes a retired pod's traffic, is ready at full size and
    (when the Service's EndpointSlices are observed) routed to by the Service."""
    view = observed.deployment(serving)
    if view is None or view.available < max(want, 1):
        return False
    routed = routed_pods(observed, service_name(model))
    if routed is None:
        return True
    names = {str(p.get("metadata", {}).get("name", "")) for p in observed.pods_of(serving)}
    return len(names & routed) >= max(want, 1)


def _scales(
    model: InferenceModel,
    serving: str,
    candidate: str | None,
    want: int,
    rollout: RolloutDecision | None,
) -> list[Scale]:
    """Replica targets; a Deployment under the HPA is never scaled here."""
    autoscaled = model.spec.autoscaling is not None
    out: list[Scale] = []
    if rollout is None:
        if not autoscaled:
            out.append(Scale(deployment_name(model, serving), want))
        if candidate:
            # Surge: the candidate gets the stable's capacity, so promotion (and the HPA
            # taking it over) never lowers the number of serving replicas.
            out.append(Scale(deployment_name(model, candidate), want))
        return out
    if not autoscaled:
        stable_target = rollout.stable_replicas if rollout.stable_replicas is not None else want
        out.append(Scale(deployment_name(model, serving), stable_target))
    if candidate and rollout.canary_replicas is not None:
        out.append(Scale(deployment_name(model, candidate), rollout.canary_replicas))
    return out

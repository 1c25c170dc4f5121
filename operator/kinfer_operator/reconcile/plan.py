"""Pure planning: from the model and the observed world to the writes that converge them.

Revisions get their own Deployments (as ReplicaSets do under a Deployment). A new revision is
surged in next to the stable one, becomes stable once all its replicas are available, and only
then is the old revision removed, so serving capacity never drops during a change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kinfer_operator.children import build_deployment, build_hpa, build_pdb, build_service
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
)
from kinfer_operator.rollout.machine import RolloutDecision
from kinfer_operator.rollout.shadow import plan_shadow
from kinfer_operator.world import DeploymentView, Observed

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
    otlp_endpoint: str = "",
) -> Plan:
    """Decide the children and replica counts for the model's current spec.

    Without `rollout` (no spec.rollout, or no stable revision yet) a new revision is surged
    in and promoted once fully available; with it, the canary state machine's decision rules.
    `template_mark` goes into the pod template (a test-only operator setting).
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
    applies: list[dict[str, Any]] = [build_service(model, shadow.pin_revision), *shadow.applies]
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
    deletes.extend(Delete("Deployment", v.name) for v in observed.views if v.revision not in keep)
    if model.spec.rollout is not None and model.spec.rollout.traffic.mode == "GatewayAPI":
        weight = rollout.route_weight if rollout is not None and not promoted else 0
        applies.extend(
            [
                build_track_service(model, "stable", serving),
                build_track_service(model, "canary", candidate or serving),
                build_httproute(model, weight),
            ]
        )

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
    )


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

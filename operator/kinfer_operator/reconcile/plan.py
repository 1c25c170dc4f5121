"""Pure planning: from the model and the observed world to the writes that converge them.

Revisions get their own Deployments (as ReplicaSets do under a Deployment). A new revision is
surged in next to the stable one, becomes stable once all its replicas are available, and only
then is the old revision removed, so serving capacity never drops during a change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kinfer_operator.children import build_deployment, build_hpa, build_pdb, build_service
from kinfer_operator.children.pdb import wants_pdb
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import (
    HASH_ANNOTATION,
    TRACK_LABEL,
    deployment_name,
    object_hash,
    revision_of,
)
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
    """The desired object with its content hash recorded in an annotation."""
    meta = desired["metadata"]
    annotations = {**meta.get("annotations", {}), HASH_ANNOTATION: object_hash(desired)}
    return {**desired, "metadata": {**meta, "annotations": annotations}}


def needs_apply(desired: dict[str, Any], observed: Any) -> bool:
    """True unless the observed child was last applied from exactly this (stamped) object.

    Comparing our own hash, not the live object, keeps API-server defaulting and other
    controllers' fields (HPA replicas, status) from ever looking like drift.
    """
    if observed is None:
        return True
    want = desired["metadata"]["annotations"][HASH_ANNOTATION]
    annotations = observed.get("metadata", {}).get("annotations") or {}
    return bool(annotations.get(HASH_ANNOTATION) != want)


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


def plan(model: InferenceModel, observed: Observed) -> Plan:
    """Decide the children and replica counts for the model's current spec."""
    revision = revision_of(model)
    stable = observed.stable()
    want = want_replicas(model, stable)
    serving, candidate, promoted = _select_revisions(model, observed, revision, want)

    applies: list[dict[str, Any]] = [build_service(model)]
    deletes: list[Delete] = []
    scales: list[Scale] = []

    if wants_pdb(model):
        applies.append(build_pdb(model))
    elif observed.pdbs:
        deletes.extend(Delete("PodDisruptionBudget", p["metadata"]["name"]) for p in observed.pdbs)

    applies.append(build_deployment(model, "canary" if candidate else "stable"))
    keep = {revision, serving}
    deletes.extend(Delete("Deployment", v.name) for v in observed.views if v.revision not in keep)

    if model.spec.autoscaling is not None:
        hpa = build_hpa(model, "stable", deployment_name(model, serving))
        applies.append(hpa)
        deletes.extend(
            Delete("HorizontalPodAutoscaler", h["metadata"]["name"])
            for h in observed.hpas
            if h["metadata"]["name"] != hpa["metadata"]["name"]
        )
        if candidate:
            # The candidate is not under the HPA yet: give it the stable's current capacity so
            # promotion hands the HPA a Deployment that is already the right size.
            scales.append(Scale(deployment_name(model, candidate), want))
    else:
        deletes.extend(
            Delete("HorizontalPodAutoscaler", h["metadata"]["name"]) for h in observed.hpas
        )
        scales.append(Scale(deployment_name(model, revision), want))
        if serving != revision:
            scales.append(Scale(deployment_name(model, serving), want))

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


def track_of(obj: dict[str, Any]) -> str:
    """Track label of a built Deployment."""
    return str(obj["metadata"]["labels"].get(TRACK_LABEL, ""))

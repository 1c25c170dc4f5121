"""The shadow phase's traffic: a pure function of spec, rollout status and the observed world.

While a rollout is in its shadow phase (status.rollout.shadowPercent set):

* the model's Service is pinned to the stable revision, so the candidate, which runs beside
  stable, gets no user request in any traffic mode (in ReplicaRatio the Service would
  otherwise select its pods). The pin stays after a rollback from the shadow phase until the
  candidate's pods are gone.
* a `<name>-shadow` Service selects the candidate's pods: the address stable mirrors to.
* the `<name>-shadow` ConfigMap, which every runtime pod mounts, names that Service's
  ClusterIP and the share to mirror, once the candidate has ready replicas. Otherwise it
  says `{}`: off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kinfer_operator import runtime_contract as rc
from kinfer_operator.children.shadow import (
    MirrorTarget,
    build_shadow_config,
    build_shadow_service,
    shadow_config_name,
    shadow_service_name,
)
from kinfer_operator.model import InferenceModel
from kinfer_operator.rollout.machine import RolloutDecision
from kinfer_operator.world import Observed

__all__ = ["ShadowPlan", "plan_shadow"]


@dataclass(frozen=True)
class ShadowPlan:
    """What the shadow phase adds to a pass's plan."""

    pin_revision: str | None = None
    """Revision the model's Service is pinned to, if any."""
    applies: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[tuple[str, str]] = field(default_factory=list)
    """(kind, name) of shadow children no longer wanted."""


def _cluster_ip(observed: Observed, name: str) -> str | None:
    service = observed.find("Service", name)
    ip = ((service or {}).get("spec") or {}).get("clusterIP")
    return str(ip) if ip and ip != "None" else None


def plan_shadow(
    model: InferenceModel, observed: Observed, decision: RolloutDecision | None, serving: str
) -> ShadowPlan:
    """The shadow children and the Service pin for this pass."""
    rollout = model.spec.rollout
    spec = rollout.shadow if rollout is not None else None
    status = decision.status if decision is not None else None
    in_shadow = (
        decision is not None
        and status is not None
        and status.shadow_percent is not None
        and status.phase in ("Progressing", "RolledBack")
        and decision.canary_revision is not None
    )
    applies: list[dict[str, Any]] = []
    deletes: list[tuple[str, str]] = []
    target: MirrorTarget | None = None
    if in_shadow and status is not None:
        applies.append(build_shadow_service(model, status.revision))
        ip = _cluster_ip(observed, shadow_service_name(model))
        mirroring = status.phase == "Progressing" and status.step_started_at is not None
        if mirroring and ip is not None and spec is not None:
            target = MirrorTarget(
                revision=status.revision,
                url=f"http://{ip}:{rc.CLASSIFIED_PORT}",
                percent=status.shadow_percent or spec.percent,
                timeout_seconds=spec.timeout_seconds,
                max_queue=spec.max_queue,
                max_concurrency=spec.max_concurrency,
            )
    elif observed.find("Service", shadow_service_name(model)) is not None:
        deletes.append(("Service", shadow_service_name(model)))
    if spec is not None or in_shadow:
        applies.append(build_shadow_config(model, target))
    elif observed.find("ConfigMap", shadow_config_name(model)) is not None:
        deletes.append(("ConfigMap", shadow_config_name(model)))
    return ShadowPlan(serving if in_shadow else None, applies, deletes)

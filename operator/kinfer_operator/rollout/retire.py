"""The pace at which a replaced revision's pods go (spec.rollout.retire): no herd.

A replaced revision (the old stable after a promotion, a rolled-back canary) is scaled down
`podsPerStep` pods at a time. The next step waits until the pods of the last one are no
longer listed in the model Service's EndpointSlices (their clients have moved; their drain,
after the preStop pause, starts only once nothing new is sent to them), until the pods that
take their traffic are Ready and listed, and until `intervalSeconds` have passed since the
last step's pods were asked to go. Everything is read from the observed world: the last
step's time is its pods' deletion stamps, so an operator restarted mid-way goes on where it
was; the Deployment is deleted once it has no replica left that the Service routes to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kinfer_operator.api.spec import Retire
from kinfer_operator.world import DeploymentView
from kinfer_operator.world.endpoints import deletion_started

__all__ = ["RETIRE_POLL_SECONDS", "RetireStep", "retire_step"]

RETIRE_POLL_SECONDS = 1.0
"""How soon to look again while a removed pod is still routed or a receiver not ready."""


@dataclass(frozen=True)
class RetireStep:
    """What to do with one replaced revision this pass."""

    replicas: int | None = None
    """Scale it to this many replicas now (None: leave it)."""
    delete: bool = False
    """Delete its Deployment now."""
    wait: float | None = None
    """Look again after this many seconds."""
    why: str = ""
    """What the next step waits for (for logs and tests)."""


def retire_step(
    view: DeploymentView,
    pods: Iterable[Mapping[str, Any]],
    routed: frozenset[str] | None,
    receivers_ready: bool,
    pace: Retire,
    now: datetime,
) -> RetireStep:
    """The next step for the replaced revision `view` with its `pods`, given the pods the
    Service routes to (`routed`, None when its EndpointSlices are not observed) and whether
    the revision taking the traffic is ready and routed at full size."""
    pods = list(pods)
    names = {str(p.get("metadata", {}).get("name", "")) for p in pods}
    leaving = [p for p in pods if deletion_started(p) is not None]
    still_routed = sorted(
        str(p["metadata"]["name"]) for p in leaving if routed and p["metadata"]["name"] in routed
    )
    if still_routed:
        return RetireStep(wait=RETIRE_POLL_SECONDS, why=f"{still_routed[0]} still routed")
    if view.spec_replicas <= 0:
        if routed is not None and names & routed:
            return RetireStep(wait=RETIRE_POLL_SECONDS, why="a pod is still routed")
        return RetireStep(delete=True)
    if not view.settled or view.replicas > view.spec_replicas:
        # The last step is written but the Deployment controller has not acted on it yet.
        return RetireStep(wait=RETIRE_POLL_SECONDS, why="last step not taken yet")
    if len(pods) - len(leaving) > view.spec_replicas:
        # The last step is written but its pods are not marked for deletion yet.
        return RetireStep(wait=RETIRE_POLL_SECONDS, why="last step not taken yet")
    if not receivers_ready:
        return RetireStep(wait=RETIRE_POLL_SECONDS, why="receivers not ready")
    starts = [s for s in (deletion_started(p) for p in leaving) if s is not None]
    if starts:
        left = pace.interval_seconds - (now - max(starts)).total_seconds()
        if left > 0:
            return RetireStep(wait=max(0.5, left), why="interval")
    replicas = max(0, view.spec_replicas - pace.pods_per_step)
    wait = max(0.5, float(pace.interval_seconds)) if replicas else RETIRE_POLL_SECONDS
    return RetireStep(replicas=replicas, wait=wait, why="step")

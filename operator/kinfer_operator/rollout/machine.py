"""The canary state machine: one pure decision per reconcile pass.

Everything it needs comes in a RolloutContext (the observed world, the previous RolloutStatus
from status, the clock, and an `analyze` callable that does the Prometheus I/O); everything it
wants comes out in a RolloutDecision. Because the state lives in status and every transition
is decided from it plus the world, an operator killed mid-rollout resumes at the same step:
no step runs twice, promotion and rollback are idempotent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kinfer_operator.api.spec import Rollout
from kinfer_operator.api.status import AnalysisRun, RolloutStatus
from kinfer_operator.events import Event
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import revision_of
from kinfer_operator.rollout._steps import HOLD_POLL_SECONDS, Hold, Promote, RollBack, progress
from kinfer_operator.rollout.annotations import (
    ABORT_ANNOTATION,
    PROMOTE_ANNOTATION,
    RETRY_ANNOTATION,
)
from kinfer_operator.rollout.traffic import ReplicaSplit, live_pods, move_replicas
from kinfer_operator.world import DeploymentView, Observed
from kinfer_operator.world.routes import RouteWait

__all__ = [
    "ABORT_ANNOTATION",
    "PROMOTE_ANNOTATION",
    "RETRY_ANNOTATION",
    "RolloutContext",
    "RolloutDecision",
    "decide",
]


def _with(status: RolloutStatus, **changes: Any) -> RolloutStatus:
    """A copy of the status with some fields changed (status models are immutable)."""
    return status.model_copy(update=changes)


@dataclass(frozen=True)
class RolloutContext:
    """Inputs of one decision."""

    model: InferenceModel
    observed: Observed
    previous: RolloutStatus | None
    stable: DeploymentView
    total: int
    """Replicas stable alone should run (fixed, or what its HPA chose)."""
    now: datetime
    annotations: Mapping[str, str]
    analyze: Callable[[int], AnalysisRun]
    """Runs the analysis at a step; only called when one is due."""
    analyze_shadow: Callable[[int], AnalysisRun] | None = None
    """Runs the analysis of the shadow phase, on the candidate's mirrored requests only;
    None: `analyze` does."""
    route_problem: Callable[[int], RouteWait | None] = lambda _weight: None
    """Why the traffic layer has not taken this canary weight yet (HTTPRoute conditions);
    None once it has."""
    refused: str | None = None
    """Why the API server refused the canary revision's Deployment, if it did (a 4xx on an
    earlier pass): a reason to roll back, as retrying the same object cannot help."""

    @property
    def rollout(self) -> Rollout:
        assert self.model.spec.rollout is not None
        return self.model.spec.rollout

    @property
    def autoscaled(self) -> bool:
        return self.model.spec.autoscaling is not None

    def seconds_since(self, stamp: datetime | None) -> float:
        return (self.now - stamp).total_seconds() if stamp else 0.0


@dataclass(frozen=True)
class RolloutDecision:
    """What the plan should do for the rollout this pass."""

    status: RolloutStatus | None
    canary_revision: str | None = None
    """Revision whose Deployment is kept as the canary."""
    canary_replicas: int | None = None
    """Target replicas for the canary Deployment."""
    stable_replicas: int | None = None
    """Target replicas for the stable Deployment (only when no HPA owns it)."""
    route_weight: int = 0
    """Canary weight to write into the HTTPRoute (0-100)."""
    pinned_only: bool = False
    """The rollout is at a weight-0 step: the candidate serves pinned requests alone."""
    promote: bool = False
    """Relabel the canary as stable and retire the old stable now."""
    retire_others: bool = False
    """Deployments other than stable and the kept canary may be deleted now."""
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    """Run the next pass after this many seconds (analysis, pause or delay due)."""


def _retry_token(ctx: RolloutContext) -> str:
    """spec.rollout.retry and the retry annotation; a digest when long (status bounds it)."""
    token = f"{ctx.rollout.retry}/{ctx.annotations.get(RETRY_ANNOTATION, '')}"
    if len(token) <= 128:
        return token
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def decide(ctx: RolloutContext) -> RolloutDecision:
    """The rollout decision for this pass."""
    desired, stable = revision_of(ctx.model), ctx.stable.revision
    prev = ctx.previous
    if desired == stable:
        return _settled(ctx, prev)
    if prev is not None and prev.revision == desired:
        if prev.phase in ("Progressing", "Promoting"):
            return _progress(ctx, prev, [])
        if prev.phase == "Succeeded":
            return _promote(ctx, prev, [])  # promoted, but the world has not caught up yet
        if prev.phase == "RolledBack" and prev.retry_token == _retry_token(ctx):
            return _rolled_back(ctx, prev, [])
    return _start(ctx, prev)


def _start(ctx: RolloutContext, prev: RolloutStatus | None) -> RolloutDecision:
    now = ctx.now
    desired = revision_of(ctx.model)
    events: list[Event] = []
    if prev is not None and prev.phase in ("Progressing", "Promoting"):
        events.append(
            Event(
                "Normal",
                "RolloutRestarted",
                f"spec changed during the rollout of {prev.revision}: "
                f"restarting from the first step with {desired}",
            )
        )
    elif prev is not None and prev.revision == desired and prev.phase == "RolledBack":
        events.append(Event("Normal", "RolloutRetried", f"retrying revision {desired}"))
    steps = ctx.rollout.canary.weights()
    status = RolloutStatus(
        phase="Progressing",
        revision=desired,
        model_version=ctx.model.spec.model.version,
        from_revision=ctx.stable.revision,
        started_at=now,
        step=0,
        steps=len(steps),
        weight=0,
        step_entered_at=now,
        retry_token=_retry_token(ctx),
        shadow_percent=ctx.rollout.shadow.percent if ctx.rollout.shadow else None,
    )
    shadow = f"shadow at {status.shadow_percent}% first, then " if status.shadow_percent else ""
    events.append(
        Event(
            "Normal",
            "RolloutStarted",
            f"canary {desired} (model {ctx.model.spec.model.version}) against stable "
            f"{ctx.stable.revision}: {shadow}weights {[w for w, _ in steps]}",
        )
    )
    return _progress(ctx, status, events)


def _settled(ctx: RolloutContext, prev: RolloutStatus | None) -> RolloutDecision:
    """The spec is the stable revision: no canary; abandon one still running."""
    events: list[Event] = []
    status = prev
    if prev is not None and prev.phase in ("Progressing", "Promoting"):
        status = _with(
            prev,
            phase="Superseded",
            weight=0,
            reason="SpecReverted",
            message=f"spec returned to the stable revision {ctx.stable.revision}",
            finished_at=ctx.now,
        )
        events.append(Event("Normal", "RolloutSuperseded", status.message or ""))
    return RolloutDecision(
        status=status,
        stable_replicas=None if ctx.autoscaled else ctx.total,
        retire_others=_stable_restored(ctx),
        events=events,
        requeue_after=None if _stable_restored(ctx) else HOLD_POLL_SECONDS,
    )


def _stable_restored(ctx: RolloutContext) -> bool:
    """Stable carries full capacity again, so other revisions can go."""
    return ctx.autoscaled or ctx.stable.available >= ctx.total


def _rollback(
    ctx: RolloutContext, status: RolloutStatus, reason: str, message: str, events: list[Event]
) -> RolloutDecision:
    rolled = _with(
        status,
        phase="RolledBack",
        weight=0,
        reason=reason,
        message=message,
        finished_at=ctx.now,
    )
    events = [*events, Event("Warning", "RolledBack", f"{reason}: {message}")]
    return _rolled_back(ctx, rolled, events)


def _rolled_back(
    ctx: RolloutContext, status: RolloutStatus, events: list[Event]
) -> RolloutDecision:
    """All traffic on stable; stable back at full size before the canary is scaled away."""
    delay = ctx.rollout.canary.scale_down_delay_seconds
    waited = ctx.seconds_since(status.finished_at)
    done = _stable_restored(ctx) and waited >= delay
    canary = ctx.observed.deployment(status.revision)
    if done:
        requeue: float | None = None
    elif waited < delay:
        requeue = max(0.5, min(delay - waited, HOLD_POLL_SECONDS))
    else:
        requeue = HOLD_POLL_SECONDS  # waiting for stable to be whole again
    canary_replicas = None if canary is None or done else canary.spec_replicas
    stable_replicas = None if ctx.autoscaled else ctx.total
    capacity = ctx.rollout.canary.capacity
    if capacity.mode == "reuse" and canary is not None and not done:
        # Move the replicas back: stable grows within the surge, the canary gives a pod up
        # for each stable pod that is ready again.
        back = move_replicas(
            ctx.total,
            ReplicaSplit(canary=ctx.total, stable=0),
            capacity.max_surge,
            to_ready=ctx.stable.available,
            source_replicas=canary.spec_replicas,
            source_pods=live_pods(ctx.observed.pods_of(status.revision)),
        )
        stable_replicas, canary_replicas = back.to, back.source
    return RolloutDecision(
        status=status,
        canary_revision=None if done else status.revision,
        canary_replicas=canary_replicas,
        stable_replicas=stable_replicas,
        route_weight=0,
        retire_others=done,
        events=events,
        requeue_after=requeue,
    )


def _promote(ctx: RolloutContext, status: RolloutStatus, events: list[Event]) -> RolloutDecision:
    done = _with(
        status,
        phase="Succeeded",
        weight=100,
        finished_at=status.finished_at or ctx.now,
        message=status.message or "promoted",
    )
    if status.phase != "Succeeded":
        events = [
            *events,
            Event(
                "Normal",
                "Promoted",
                f"revision {status.revision} (model {status.model_version}) is now stable",
            ),
        ]
    return RolloutDecision(
        status=done,
        canary_revision=status.revision,
        canary_replicas=ctx.total,
        stable_replicas=None,
        route_weight=100,
        promote=True,
        retire_others=True,
        events=events,
    )


def _progress(ctx: RolloutContext, status: RolloutStatus, events: list[Event]) -> RolloutDecision:
    """A rollout in its steps: `_steps` decides which way, this says what that means for the
    Deployments and the route."""
    outcome = progress(ctx, status, events)
    if isinstance(outcome, RollBack):
        at = outcome.at
        return _rollback(ctx, at.status, outcome.reason, outcome.message, at.events)
    if isinstance(outcome, Promote):
        return _promote(ctx, outcome.at.status, outcome.at.events)
    return _hold(ctx, outcome)


def _hold(ctx: RolloutContext, hold: Hold) -> RolloutDecision:
    """Keep the step: the plan's replicas, the weight in force, the next pass after a while.
    Other revisions go once the candidate has a ready replica (or stable is whole)."""
    status, plan = hold.at.status, hold.plan
    weight = status.weight
    if plan.ready_share is not None and plan.candidate.ready < plan.split.canary:
        weight = plan.ready_share  # reuse, replicas on the move: the weight follows them
    return RolloutDecision(
        status=status,
        canary_revision=status.revision,
        canary_replicas=plan.canary_replicas,
        stable_replicas=plan.stable_replicas,
        route_weight=weight,
        pinned_only=plan.pinned_only,
        retire_others=_stable_restored(ctx) if plan.candidate.ready == 0 else True,
        events=hold.at.events,
        requeue_after=hold.after,
    )

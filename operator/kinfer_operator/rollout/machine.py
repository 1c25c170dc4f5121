"""The canary state machine: one pure decision per reconcile pass.

Everything it needs comes in a RolloutContext (the observed world, the previous RolloutStatus
from status, the clock, and an `analyze` callable that does the Prometheus I/O); everything it
wants comes out in a RolloutDecision. Because the state lives in status and every transition
is decided from it plus the world, an operator killed mid-rollout resumes at the same step:
no step runs twice, promotion and rollback are idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kinfer_operator.api.spec import Rollout
from kinfer_operator.api.status import AnalysisRun, RolloutStatus
from kinfer_operator.events import Event
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import DOMAIN, revision_of
from kinfer_operator.rollout.traffic import ReplicaSplit, replica_split, shadow_split
from kinfer_operator.world import DeploymentView, Observed
from kinfer_operator.world.pods import diagnose_pods, pod_creation_reason
from kinfer_operator.world.routes import RouteWait

__all__ = [
    "ABORT_ANNOTATION",
    "PROMOTE_ANNOTATION",
    "RETRY_ANNOTATION",
    "RolloutContext",
    "RolloutDecision",
    "decide",
]

PROMOTE_ANNOTATION = f"{DOMAIN}/promote"
"""Set to the canary revision to skip the remaining steps."""
ABORT_ANNOTATION = f"{DOMAIN}/abort"
"""Set to the canary revision to roll it back now."""
RETRY_ANNOTATION = f"{DOMAIN}/retry"
"""Change to roll a rolled-back revision out again (like spec.rollout.retry, without git)."""

_HOLD_POLL_SECONDS = 2.0


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
    promote: bool = False
    """Relabel the canary as stable and retire the old stable now."""
    retire_others: bool = False
    """Deployments other than stable and the kept canary may be deleted now."""
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    """Run the next pass after this many seconds (analysis, pause or delay due)."""


def _retry_token(ctx: RolloutContext) -> str:
    return f"{ctx.rollout.retry}/{ctx.annotations.get(RETRY_ANNOTATION, '')}"


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
        requeue_after=None if _stable_restored(ctx) else _HOLD_POLL_SECONDS,
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
        requeue = max(0.5, min(delay - waited, _HOLD_POLL_SECONDS))
    else:
        requeue = _HOLD_POLL_SECONDS  # waiting for stable to be whole again
    return RolloutDecision(
        status=status,
        canary_revision=None if done else status.revision,
        canary_replicas=None if canary is None or done else canary.spec_replicas,
        stable_replicas=None if ctx.autoscaled else ctx.total,
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
    rollout = ctx.rollout
    revision = status.revision
    canary = ctx.observed.deployment(revision)
    gpu = ctx.model.spec.runtime.gpu
    diagnosis = diagnose_pods(
        ctx.observed.pods_of(revision), gpu.resource_name if gpu else "nvidia.com/gpu"
    )

    if ctx.annotations.get(ABORT_ANNOTATION) == revision:
        return _rollback(
            ctx, status, "ManualAbort", f"aborted with the {ABORT_ANNOTATION} annotation", events
        )
    if status.phase == "Progressing" and ctx.annotations.get(PROMOTE_ANNOTATION) == revision:
        status = _with(
            status,
            phase="Promoting",
            reason="ManualPromote",
            message=f"promoted early with the {PROMOTE_ANNOTATION} annotation",
            shadow_percent=None,
        )
        events = [*events, Event("Normal", "Promoting", status.message or "")]
    if diagnosis.load_failed is not None:
        return _rollback(ctx, status, "ModelLoadFailed", diagnosis.load_failed, events)
    if diagnosis.startup_timed_out is not None:
        return _rollback(ctx, status, "StartupTimeout", diagnosis.startup_timed_out, events)
    if ctx.refused is not None:
        return _rollback(ctx, status, "ChildRejected", ctx.refused, events)
    if canary is not None and canary.replica_failure is not None:
        return _rollback(
            ctx,
            status,
            pod_creation_reason(canary.replica_failure),
            f"canary pods cannot be created: {canary.replica_failure}",
            events,
        )
    if canary is not None and canary.deadline_exceeded:
        return _rollback(
            ctx,
            status,
            "ModelLoadFailed",
            "no canary replica became ready within the startup budget",
            events,
        )

    if status.shadow_percent is not None and rollout.shadow is None:
        # spec.rollout.shadow was removed mid-shadow: go on with the first canary step.
        status = _leave_shadow(status, ctx)
    shadowing = status.phase == "Progressing" and status.shadow_percent is not None
    steps = rollout.canary.weights()
    if status.step >= len(steps) or status.steps != len(steps):
        # spec.rollout.canary changed mid-rollout (that starts no new revision): go on from
        # the same step, or from the last one when there are fewer steps now.
        status = _with(status, step=min(status.step, len(steps) - 1), steps=len(steps))
    # A shadow phase sends the canary no user traffic: weight 0.
    target = 100 if status.phase == "Promoting" else 0 if shadowing else steps[status.step][0]
    split = (
        shadow_split(ctx.total, status.shadow_percent or 0)
        if shadowing
        else replica_split(ctx.total, target, rollout.traffic.mode, ctx.autoscaled)
    )
    # A weight 0 step (it needs traffic.pin) serves pinned requests alone, from one replica.
    pinned_only = target == 0 and not shadowing
    if pinned_only:
        split = ReplicaSplit(canary=1, stable=ctx.total)
    ready = canary.available if canary is not None else 0
    fixed_ratio = rollout.traffic.mode == "ReplicaRatio" and not ctx.autoscaled
    stable_target = None
    if fixed_ratio:
        # In shadow, stable keeps every replica: it alone serves the users.
        stable_target = ctx.total if shadowing else ctx.total - min(ready, split.canary)

    def hold(st: RolloutStatus, evs: list[Event], after: float) -> RolloutDecision:
        return RolloutDecision(
            status=st,
            canary_revision=revision,
            canary_replicas=split.canary,
            stable_replicas=stable_target if fixed_ratio else None,
            route_weight=st.weight,
            retire_others=_stable_restored(ctx) if ready == 0 else True,
            events=evs,
            requeue_after=after,
        )

    if ready < split.canary:
        waited = ctx.seconds_since(status.step_entered_at or status.started_at)
        deadline = rollout.canary.progress_deadline_seconds
        if waited > deadline:
            if diagnosis.gpu_unschedulable is not None:
                return _rollback(
                    ctx,
                    status,
                    "GPUUnschedulable",
                    f"canary waited {deadline}s for GPUs: {diagnosis.gpu_unschedulable}",
                    events,
                )
            return _rollback(
                ctx,
                status,
                "ProgressDeadlineExceeded",
                f"canary had {ready}/{split.canary} ready replicas after {deadline}s",
                events,
            )
        return hold(status, events, min(_HOLD_POLL_SECONDS, max(0.5, deadline - waited)))

    if status.phase == "Promoting":
        return _promote(ctx, status, events)

    if status.weight != target:
        current = ctx.route_problem(status.weight)
        if current is not None and current.refused:
            # The gateway cannot route a backend at the weight in force (it answers 500 for
            # it): shifting more traffic there would turn live requests into errors.
            return _route_hold(status, events, current, hold)
        status = _with(status, weight=target, step_started_at=None)
    if status.step_started_at is None:
        waiting = ctx.route_problem(target)
        if waiting is not None:
            return _route_hold(status, events, waiting, hold)
        status = _with(status, step_started_at=ctx.now, last_analysis_at=None, route_message=None)
        started = (
            Event(
                "Normal",
                "ShadowStarted",
                f"stable mirrors {status.shadow_percent}% of its requests to canary {revision}, "
                "which gets no user traffic; answers are discarded",
            )
            if shadowing
            else Event(
                "Normal",
                "CanaryWeight",
                f"step {status.step + 1}/{len(steps)}: canary {revision} gets {target}% of traffic",
            )
        )
        events = [*events, started]

    analysis = rollout.analysis
    interval = float(analysis.interval_seconds)
    since = ctx.seconds_since(status.last_analysis_at or status.step_started_at)
    due_in = interval - since
    if due_in <= 0 and not pinned_only:
        analyze = ctx.analyze_shadow if shadowing and ctx.analyze_shadow else ctx.analyze
        run = analyze(status.step)
        status, events = _record(status, run, analysis.failure_limit_mode, events)
        if status.failures >= analysis.failure_limit:
            return _rollback(ctx, status, "AnalysisFailed", run.message, events)
        if status.errors >= analysis.error_limit:
            return _rollback(
                ctx,
                status,
                "AnalysisUnavailable",
                f"{status.errors} analyses in a row could not query Prometheus: {run.message}",
                events,
            )
        due_in = interval

    pause = rollout.shadow.pause_seconds if shadowing and rollout.shadow else steps[status.step][1]
    pause_left = pause - ctx.seconds_since(status.step_started_at)
    if (status.passed_at_step >= 1 or pinned_only) and pause_left <= 0:
        if shadowing:
            status = _leave_shadow(status, ctx)
            events = [
                *events,
                Event(
                    "Normal",
                    "ShadowPassed",
                    f"canary {revision} passed its analysis on mirrored requests: "
                    "starting the canary steps",
                ),
            ]
        elif status.step + 1 < len(steps):
            status = _with(
                status,
                step=status.step + 1,
                step_entered_at=ctx.now,
                step_started_at=None,
                last_analysis_at=None,
                passed_at_step=0,
            )
        else:
            status = _with(
                status,
                phase="Promoting",
                reason="AnalysisPassed",
                message="every step passed its analysis",
            )
            events = [*events, Event("Normal", "Promoting", status.message or "")]
        return hold(status, events, 0.5)
    wake = min(due_in, pause_left) if pause_left > 0 else due_in
    if pinned_only:
        wake = pause_left  # nothing to analyse: only the pause ends this step
    return hold(status, events, max(0.5, wake))


def _leave_shadow(status: RolloutStatus, ctx: RolloutContext) -> RolloutStatus:
    """From the shadow phase to the first canary step, with a fresh analysis slate."""
    return _with(
        status,
        shadow_percent=None,
        step=0,
        step_entered_at=ctx.now,
        step_started_at=None,
        last_analysis_at=None,
        passed_at_step=0,
    )


def _route_hold(
    status: RolloutStatus,
    events: list[Event],
    waiting: RouteWait,
    hold: Callable[[RolloutStatus, list[Event], float], RolloutDecision],
) -> RolloutDecision:
    """Hold the step until the gateway routes the weight, saying why in status (and once in
    an Event when the gateway refused, rather than just not having caught up)."""
    if waiting.refused and waiting.message != status.route_message:
        events = [*events, Event("Warning", "RouteNotReady", waiting.message)]
    return hold(_with(status, route_message=waiting.message), events, _HOLD_POLL_SECONDS)


def _record(
    status: RolloutStatus, run: AnalysisRun, mode: str, events: list[Event]
) -> tuple[RolloutStatus, list[Event]]:
    """Fold one analysis into the counters the limits are checked against."""
    failures, errors, passed = status.failures, status.errors, status.passed_at_step
    if run.decision == "Pass":
        passed += 1
        errors = 0
        if mode == "Consecutive":
            failures = 0
    elif run.decision == "Fail":
        failures += 1
        errors = 0
        events = [*events, Event("Warning", "AnalysisFailed", run.message)]
    elif run.decision == "Error":
        errors += 1
        events = [*events, Event("Warning", "AnalysisError", run.message)]
    else:
        errors = 0
    updated = _with(
        status,
        failures=failures,
        errors=errors,
        passed_at_step=passed,
        last_analysis_at=run.time,
        last_analysis=run,
    )
    return updated, events

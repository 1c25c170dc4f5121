"""One pass of a rollout in its steps, as named decisions asked in a fixed order.

`progress` walks two ordered tables. The guards come first: annotations, a candidate that
cannot serve, a shadow phase removed from the spec. Then the pass fixes its Plan (the weight
and replicas it aims at) and asks the step's questions in `_CHECKS`. Each decision either
lets the pass go on, perhaps with a changed status and more Events, or settles it with an
Outcome: roll back, promote or hold.
The machine turns the Outcome into the RolloutDecision; nothing here builds one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from kinfer_operator.api.status import AnalysisRun, RolloutStatus
from kinfer_operator.events import Event
from kinfer_operator.references import secret_problem
from kinfer_operator.rollout.annotations import ABORT_ANNOTATION, PROMOTE_ANNOTATION
from kinfer_operator.rollout.traffic import (
    ReplicaSplit,
    live_pods,
    move_replicas,
    moved_share,
    replica_split,
    reuse_split,
    shadow_split,
)
from kinfer_operator.world import DeploymentView
from kinfer_operator.world.pods import PodDiagnosis, diagnose_pods, pod_creation_reason
from kinfer_operator.world.routes import RouteWait

if TYPE_CHECKING:
    from kinfer_operator.rollout.machine import RolloutContext

__all__ = [
    "CANARY_UNSCHEDULABLE",
    "HOLD_POLL_SECONDS",
    "Hold",
    "Outcome",
    "Pass",
    "Promote",
    "RollBack",
    "progress",
]

HOLD_POLL_SECONDS = 2.0
"""How soon to look again while waiting on something that reports no time (pods, a route)."""


@dataclass(frozen=True)
class Pass:
    """Where the pass has got to: the status it will write and the Events it will emit."""

    status: RolloutStatus
    events: list[Event]
    analysis_due_in: float = 0.0
    """Seconds until the next analysis, once the analysis decision has been asked."""

    def changed(self, **changes: Any) -> Pass:
        return Pass(self.status.model_copy(update=changes), self.events, self.analysis_due_in)

    def noting(self, event: Event) -> Pass:
        return Pass(self.status, [*self.events, event], self.analysis_due_in)


@dataclass(frozen=True)
class Candidate:
    """The candidate revision's Deployment, if it exists, and what its pods report."""

    view: DeploymentView | None
    pods: PodDiagnosis

    @property
    def ready(self) -> int:
        return self.view.available if self.view is not None else 0


@dataclass(frozen=True)
class Plan:
    """The canary weight and replicas this pass aims at, fixed once the guards passed."""

    candidate: Candidate
    shadowing: bool
    """In the shadow phase: stable mirrors requests to the candidate, which gets no users."""
    target: int
    """Canary weight of the step (0 while shadowing, 100 while promoting)."""
    split: ReplicaSplit
    pinned_only: bool
    """A weight 0 step: it serves pinned requests alone, from one replica, unanalysed."""
    stable_replicas: int | None
    """Stable's target when the operator sizes it (ReplicaRatio without an HPA, or reuse)."""
    canary_now: int | None = None
    """reuse: the canary replicas to set this pass on the way to `split.canary` (None: set
    `split.canary` at once)."""
    ready_share: int | None = None
    """reuse in GatewayAPI mode: the weight the ready moved replicas carry now, which the
    route follows while replicas move (the canary is never sent more than its pods' share)."""

    @property
    def canary_replicas(self) -> int:
        return self.split.canary if self.canary_now is None else self.canary_now


@dataclass(frozen=True)
class RollBack:
    """Roll the candidate back: all traffic to stable, for this reason."""

    at: Pass
    reason: str
    message: str


@dataclass(frozen=True)
class Promote:
    """Make the candidate stable now."""

    at: Pass


@dataclass(frozen=True)
class Hold:
    """Keep the candidate at the plan's replicas and the status's weight; look again later."""

    at: Pass
    plan: Plan
    after: float


Outcome: TypeAlias = RollBack | Promote | Hold
Guard: TypeAlias = Callable[["RolloutContext", Candidate, Pass], Pass | Outcome]
"""A decision asked before the plan is fixed."""
Check: TypeAlias = Callable[["RolloutContext", Plan, Pass], Pass | Outcome]
"""A decision of the step, asked with the plan."""


def progress(ctx: RolloutContext, status: RolloutStatus, events: list[Event]) -> Outcome:
    """Ask the guards, fix the plan, then ask the step's questions; the first Outcome wins."""
    at = Pass(status, events)
    candidate = _candidate(ctx, status.revision)
    for guard in _GUARDS:
        answer = guard(ctx, candidate, at)
        if not isinstance(answer, Pass):
            return answer
        at = answer
    plan = _plan(ctx, candidate, at.status)
    for check in _CHECKS:
        answer = check(ctx, plan, at)
        if not isinstance(answer, Pass):
            return answer
        at = answer
    return _wait(ctx, plan, at)


def _candidate(ctx: RolloutContext, revision: str) -> Candidate:
    gpu = ctx.model.spec.runtime.gpu
    pods = ctx.observed.pods_of(revision)
    return Candidate(
        ctx.observed.deployment(revision),
        diagnose_pods(pods, gpu.resource_name if gpu else "nvidia.com/gpu"),
    )


# --- the guards, in order -----------------------------------------------------------------


def _abort_requested(ctx: RolloutContext, candidate: Candidate, at: Pass) -> Pass | Outcome:
    """The abort annotation names this revision: roll back, whatever else holds."""
    if ctx.annotations.get(ABORT_ANNOTATION) == at.status.revision:
        return RollBack(at, "ManualAbort", f"aborted with the {ABORT_ANNOTATION} annotation")
    return at


def _promote_requested(ctx: RolloutContext, candidate: Candidate, at: Pass) -> Pass | Outcome:
    """The promote annotation names this revision: skip the remaining steps (and the shadow
    phase); the candidate must still be healthy and ready at full size."""
    requested = ctx.annotations.get(PROMOTE_ANNOTATION) == at.status.revision
    if at.status.phase != "Progressing" or not requested:
        return at
    message = f"promoted early with the {PROMOTE_ANNOTATION} annotation"
    promoting = at.changed(
        phase="Promoting", reason="ManualPromote", message=message, shadow_percent=None
    )
    return promoting.noting(Event("Normal", "Promoting", message))


def _candidate_failing(ctx: RolloutContext, candidate: Candidate, at: Pass) -> Pass | Outcome:
    """The candidate cannot serve and waiting will not change that: roll back."""
    pods, view = candidate.pods, candidate.view
    if pods.load_failed is not None:
        return RollBack(at, "ModelLoadFailed", pods.load_failed)
    if pods.startup_timed_out is not None:
        return RollBack(at, "StartupTimeout", pods.startup_timed_out)
    if ctx.refused is not None:  # retrying the same object cannot help
        return RollBack(at, "ChildRejected", ctx.refused)
    if view is not None and view.replica_failure is not None:
        return RollBack(
            at,
            pod_creation_reason(view.replica_failure),
            f"canary pods cannot be created: {view.replica_failure}",
        )
    if view is not None and view.deadline_exceeded:
        # Until the deadline a canary waiting for its Secret may still start once it exists.
        missing_secret = secret_problem(ctx.model, pods.config_error)
        if missing_secret is not None:
            return RollBack(at, "InvalidSpec", missing_secret)
        return RollBack(
            at, "ModelLoadFailed", "no canary replica became ready within the startup budget"
        )
    return at


def _shadow_removed(ctx: RolloutContext, candidate: Candidate, at: Pass) -> Pass | Outcome:
    """spec.rollout.shadow was removed mid-shadow: go on with the first canary step."""
    if at.status.shadow_percent is not None and ctx.rollout.shadow is None:
        return Pass(_leave_shadow(at.status, ctx), at.events)
    return at


def _steps_changed(ctx: RolloutContext, candidate: Candidate, at: Pass) -> Pass | Outcome:
    """spec.rollout.canary changed mid-rollout (that starts no new revision): go on from the
    same step, or from the last one when there are fewer steps now."""
    steps = len(ctx.rollout.canary.weights())
    if at.status.step < steps and at.status.steps == steps:
        return at
    return at.changed(step=min(at.status.step, steps - 1), steps=steps)


_GUARDS: tuple[Guard, ...] = (
    _abort_requested,
    _promote_requested,
    _candidate_failing,
    _shadow_removed,
    _steps_changed,
)


def _plan(ctx: RolloutContext, candidate: Candidate, status: RolloutStatus) -> Plan:
    """The weight and replicas of the step the status is in."""
    rollout = ctx.rollout
    shadowing = status.phase == "Progressing" and status.shadow_percent is not None
    target = (
        100
        if status.phase == "Promoting"
        else 0
        if shadowing
        else rollout.canary.weights()[status.step][0]
    )
    pinned_only = target == 0 and not shadowing
    if rollout.canary.capacity.mode == "reuse":
        return _reuse_plan(ctx, candidate, shadowing, target, pinned_only, status)
    if shadowing:
        split = shadow_split(ctx.total, status.shadow_percent or 0)
    elif pinned_only:
        split = ReplicaSplit(canary=1, stable=ctx.total)
    else:
        split = replica_split(ctx.total, target, rollout.traffic.mode, ctx.autoscaled)
    stable = None
    if rollout.traffic.mode == "ReplicaRatio" and not ctx.autoscaled:
        # In shadow, stable keeps every replica: it alone serves the users.
        stable = ctx.total if shadowing else ctx.total - min(candidate.ready, split.canary)
    return Plan(candidate, shadowing, target, split, pinned_only, stable)


def _reuse_plan(
    ctx: RolloutContext,
    candidate: Candidate,
    shadowing: bool,
    target: int,
    pinned_only: bool,
    status: RolloutStatus,
) -> Plan:
    """capacity.mode reuse: the step's replicas are moved out of stable, at most maxSurge
    pods over the total at any moment, and the step's weight is the moved share. Shadow and
    pinned-only phases keep stable whole and fit their canary pods into the surge."""
    total, surge = ctx.total, ctx.rollout.canary.capacity.max_surge
    stable_pods = live_pods(ctx.observed.pods_of(ctx.stable.revision))
    if shadowing or pinned_only:
        wanted = 1 if pinned_only else shadow_split(total, status.shadow_percent or 0).canary
        split = ReplicaSplit(canary=min(wanted, surge), stable=total)
        room = max(0, total + surge - max(stable_pods, total))
        return Plan(
            candidate, shadowing, target, split, pinned_only, total, min(split.canary, room)
        )
    split = reuse_split(total, target)
    move = move_replicas(
        total,
        split,
        surge,
        to_ready=candidate.ready,
        source_replicas=ctx.stable.spec_replicas,
        source_pods=stable_pods,
    )
    share = None
    if ctx.rollout.traffic.mode == "GatewayAPI":
        moved = ReplicaSplit(
            canary=min(candidate.ready, split.canary),
            stable=min(ctx.stable.available, move.source),
        )
        share = moved_share(moved)
    return Plan(
        candidate, shadowing, moved_share(split), split, pinned_only, move.source, move.to, share
    )


# --- the step's questions, in order ---------------------------------------------------------


def _candidate_not_ready(ctx: RolloutContext, plan: Plan, at: Pass) -> Pass | Outcome:
    """Fewer ready candidate replicas than the step needs: hold until the progress deadline,
    then roll back (saying so when the pods wait for GPUs)."""
    ready, wanted = plan.candidate.ready, plan.split.canary
    shortage = plan.candidate.pods.gpu_unschedulable
    if ready >= wanted:
        return _fits(at)
    waited = ctx.seconds_since(at.status.step_entered_at or at.status.started_at)
    deadline = ctx.rollout.canary.progress_deadline_seconds
    if waited <= deadline:
        at = _fits(at) if shortage is None else _cannot_fit(ctx, at, shortage)
        return Hold(at, plan, min(HOLD_POLL_SECONDS, max(0.5, deadline - waited)))
    if shortage is not None:
        return RollBack(at, "GPUUnschedulable", f"canary waited {deadline}s for GPUs: {shortage}")
    return RollBack(
        at,
        "ProgressDeadlineExceeded",
        f"canary had {ready}/{wanted} ready replicas after {deadline}s",
    )


CANARY_UNSCHEDULABLE = "CanaryUnschedulable"


def _cannot_fit(ctx: RolloutContext, at: Pass, shortage: str) -> Pass:
    """Candidate pods wait for GPUs the cluster does not have: say so in status (and once in
    an Event), suggesting reuse when the canary surges, instead of waiting silently."""
    capacity = ctx.rollout.canary.capacity
    if capacity.mode == "surge":
        hint = (
            "the canary's replicas are added next to stable's; set "
            "spec.rollout.canary.capacity.mode: reuse to move stable's replicas instead"
        )
    else:
        hint = f"even {capacity.max_surge} pod(s) over the replica count do not fit"
    message = (
        f"canary {at.status.revision} cannot be scheduled: {shortage[:300]}; {hint}; "
        f"rolled back after {ctx.rollout.canary.progress_deadline_seconds}s"
    )
    if at.status.reason == CANARY_UNSCHEDULABLE:
        return at
    told = at.changed(reason=CANARY_UNSCHEDULABLE, message=message)
    return told.noting(Event("Warning", CANARY_UNSCHEDULABLE, message))


def _fits(at: Pass) -> Pass:
    """The candidate's pods were placed: clear a CanaryUnschedulable report."""
    if at.status.reason != CANARY_UNSCHEDULABLE:
        return at
    return at.changed(reason=None, message=None)


def _promoting(ctx: RolloutContext, plan: Plan, at: Pass) -> Pass | Outcome:
    """Promoting and the candidate ready at full size: promote now."""
    return Promote(at) if at.status.phase == "Promoting" else at


def _weight_changes(ctx: RolloutContext, plan: Plan, at: Pass) -> Pass | Outcome:
    """The step asks for another weight: take it and restart the step's clock, unless the
    gateway refuses the weight in force (it answers 500 for it), so that shifting more
    traffic there would turn live requests into errors."""
    if at.status.weight == plan.target:
        return at
    current = ctx.route_problem(at.status.weight)
    if current is not None and current.refused:
        return _route_hold(at, plan, current)
    return at.changed(weight=plan.target, step_started_at=None)


def _step_starts(ctx: RolloutContext, plan: Plan, at: Pass) -> Pass | Outcome:
    """The step has not started: hold until the route carries its weight, then start its
    clock (analysis time counts from here)."""
    if at.status.step_started_at is not None:
        return at
    waiting = ctx.route_problem(plan.target)
    if waiting is not None:
        return _route_hold(at, plan, waiting)
    started = at.changed(step_started_at=ctx.now, last_analysis_at=None, route_message=None)
    revision, step = started.status.revision, started.status.step
    if plan.shadowing:
        return started.noting(
            Event(
                "Normal",
                "ShadowStarted",
                f"stable mirrors {started.status.shadow_percent}% of its requests to canary "
                f"{revision}, which gets no user traffic; answers are discarded",
            )
        )
    steps = len(ctx.rollout.canary.weights())
    return started.noting(
        Event(
            "Normal",
            "CanaryWeight",
            f"step {step + 1}/{steps}: canary {revision} gets {plan.target}% of traffic",
        )
    )


def _analysis_due(ctx: RolloutContext, plan: Plan, at: Pass) -> Pass | Outcome:
    """An analysis interval has passed (and the step serves more than pinned requests): run
    one, and roll back once failures or Prometheus errors reach their limits."""
    analysis = ctx.rollout.analysis
    interval = float(analysis.interval_seconds)
    since = ctx.seconds_since(at.status.last_analysis_at or at.status.step_started_at)
    if interval - since > 0 or plan.pinned_only:
        return Pass(at.status, at.events, interval - since)
    analyze = ctx.analyze_shadow if plan.shadowing and ctx.analyze_shadow else ctx.analyze
    run = analyze(at.status.step)
    recorded = _record(at, run, analysis.failure_limit_mode)
    status = recorded.status
    if status.failures >= analysis.failure_limit:
        return RollBack(recorded, "AnalysisFailed", run.message)
    if status.errors >= analysis.error_limit:
        return RollBack(
            recorded,
            "AnalysisUnavailable",
            f"{status.errors} analyses in a row could not query Prometheus: {run.message}",
        )
    return Pass(status, recorded.events, interval)


def _step_complete(ctx: RolloutContext, plan: Plan, at: Pass) -> Pass | Outcome:
    """The step passed an analysis (or only serves pinned requests) and its pause is over:
    leave the shadow phase, go to the next step, or start promoting after the last."""
    status = at.status
    if not (status.passed_at_step >= 1 or plan.pinned_only) or _pause_left(ctx, plan, at) > 0:
        return at
    revision, steps = status.revision, len(ctx.rollout.canary.weights())
    if plan.shadowing:
        done = Pass(_leave_shadow(status, ctx), at.events).noting(
            Event(
                "Normal",
                "ShadowPassed",
                f"canary {revision} passed its analysis on mirrored requests: "
                "starting the canary steps",
            )
        )
    elif status.step + 1 < steps:
        done = at.changed(
            step=status.step + 1,
            step_entered_at=ctx.now,
            step_started_at=None,
            last_analysis_at=None,
            passed_at_step=0,
        )
    else:
        message = "every step passed its analysis"
        done = at.changed(phase="Promoting", reason="AnalysisPassed", message=message)
        done = done.noting(Event("Normal", "Promoting", message))
    return Hold(done, plan, 0.5)


_CHECKS: tuple[Check, ...] = (
    _candidate_not_ready,
    _promoting,
    _weight_changes,
    _step_starts,
    _analysis_due,
    _step_complete,
)


def _wait(ctx: RolloutContext, plan: Plan, at: Pass) -> Hold:
    """Nothing settled the pass: hold until the next analysis or the end of the pause."""
    pause_left = _pause_left(ctx, plan, at)
    wake = min(at.analysis_due_in, pause_left) if pause_left > 0 else at.analysis_due_in
    if plan.pinned_only:
        wake = pause_left  # nothing to analyse: only the pause ends this step
    return Hold(at, plan, max(0.5, wake))


def _pause_left(ctx: RolloutContext, plan: Plan, at: Pass) -> float:
    rollout, status = ctx.rollout, at.status
    if plan.shadowing and rollout.shadow:
        pause = rollout.shadow.pause_seconds
    else:
        pause = rollout.canary.weights()[status.step][1]
    return pause - ctx.seconds_since(status.step_started_at)


def _leave_shadow(status: RolloutStatus, ctx: RolloutContext) -> RolloutStatus:
    """From the shadow phase to the first canary step, with a fresh analysis slate."""
    return status.model_copy(
        update={
            "shadow_percent": None,
            "step": 0,
            "step_entered_at": ctx.now,
            "step_started_at": None,
            "last_analysis_at": None,
            "passed_at_step": 0,
        }
    )


def _route_hold(at: Pass, plan: Plan, waiting: RouteWait) -> Hold:
    """Hold the step until the gateway routes the weight, saying why in status (and once in
    an Event when the gateway refused, rather than just not having caught up)."""
    if waiting.refused and waiting.message != at.status.route_message:
        at = at.noting(Event("Warning", "RouteNotReady", waiting.message))
    return Hold(at.changed(route_message=waiting.message), plan, HOLD_POLL_SECONDS)


def _record(at: Pass, run: AnalysisRun, mode: str) -> Pass:
    """Fold one analysis into the counters the limits are checked against."""
    status, events = at.status, at.events
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
    updated = status.model_copy(
        update={
            "failures": failures,
            "errors": errors,
            "passed_at_step": passed,
            "last_analysis_at": run.time,
            "last_analysis": run,
        }
    )
    return Pass(updated, events, at.analysis_due_in)

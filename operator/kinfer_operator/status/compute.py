"""Compute InferenceModel status from the observed world and this pass's plan.

Pure: the same world gives the same status, so a steady-state reconcile writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from kinfer_operator.api.status import (
    Condition,
    ConditionStatus,
    InferenceModelStatus,
    Phase,
    RolloutStatus,
)
from kinfer_operator.events import Event
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import (
    MODEL_LABEL,
    MODEL_VERSION_ANNOTATION,
    REVISION_LABEL,
    endpoint_url,
)
from kinfer_operator.references import secret_problem
from kinfer_operator.status.cache import CacheWait, cache_wait, starting_phase
from kinfer_operator.status.conditions import find_condition, set_condition
from kinfer_operator.world import DeploymentView, Observed, WriteFailure, route_status_problem
from kinfer_operator.world.pods import PodDiagnosis, diagnose_pods, pod_creation_reason

__all__ = ["Event", "StatusReport", "compute_status", "invalid_status", "retrying_status"]


class ZeroProblem(Protocol):
    """Why scale to zero is unavailable (`rollout.idle.SignalUnavailable`)."""

    @property
    def reason(self) -> str: ...
    @property
    def message(self) -> str: ...


class Zero(Protocol):
    """The pass's scale-to-zero decision (`rollout.idle.IdleDecision`, a unit beside this)."""

    @property
    def state(self) -> Literal["Awake", "Idle", "Waking"]: ...
    @property
    def problem(self) -> ZeroProblem | None: ...


class Plan(Protocol):
    """What status needs of this pass's plan (`reconcile.plan.Plan`, a layer above)."""

    @property
    def desired_revision(self) -> str: ...
    @property
    def serving_revision(self) -> str: ...
    @property
    def candidate_revision(self) -> str | None: ...
    @property
    def want_replicas(self) -> int: ...
    @property
    def promoted(self) -> bool: ...


class RolloutDecision(Protocol):
    """What status needs of the canary decision (`rollout.machine.RolloutDecision`)."""

    @property
    def status(self) -> RolloutStatus | None: ...
    @property
    def route_weight(self) -> int: ...


@dataclass(frozen=True)
class StatusReport:
    """The new status and the Events its transitions deserve."""

    status: InferenceModelStatus
    events: list[Event] = field(default_factory=list)


_Cond = tuple[ConditionStatus, str, str]


def _c(status: ConditionStatus, reason: str, message: str) -> _Cond:
    return (status, reason, message)


@dataclass(frozen=True)
class _Verdict:
    phase: Phase
    ready: _Cond
    progressing: _Cond
    degraded: _Cond
    stalled: bool


def _readiness_message(view: DeploymentView | None, want: int, revision: str) -> str:
    ready = view.ready if view else 0
    return f"{ready}/{want} replicas of revision {revision} ready"


def _cache_verdict(wait: CacheWait) -> _Verdict:
    if wait.failed:
        bad = _c("False", wait.reason, wait.message)
        return _Verdict("Degraded", bad, bad, _c("True", wait.reason, wait.message), True)
    return _Verdict(
        "Progressing",
        _c("False", wait.reason, wait.message),
        _c("True", wait.reason, wait.message),
        _c("False", "AsExpected", ""),
        False,
    )


def _rollout_verdict(rollout: RolloutStatus, revision: str) -> _Verdict | None:
    """Canary in flight or rolled back: the rollout state says more than the pods do."""
    if rollout.revision != revision:
        return None
    if rollout.phase in ("Progressing", "Promoting"):
        last = rollout.last_analysis
        analysis = f"; last analysis {last.decision}: {last.message}" if last else ""
        message = (
            f"canary {revision} step {rollout.step + 1}/{rollout.steps} at "
            f"{rollout.weight}% ({rollout.phase}){analysis}"
        )
        if rollout.shadow_percent is not None and rollout.phase == "Progressing":
            message = (
                f"canary {revision} in shadow: stable mirrors {rollout.shadow_percent}% of its "
                f"requests to it, users get none of its answers{analysis}"
            )
        if rollout.reason == "CanaryUnschedulable":
            # Waiting for GPUs the cluster does not have: not progressing, and someone may
            # have to act (free GPUs, or capacity reuse) before the deadline rolls it back.
            stuck = f"{rollout.message or ''}{analysis}"
            bad = _c("False", "CanaryUnschedulable", stuck)
            return _Verdict(
                "Canary", bad, bad, _c("True", "CanaryUnschedulable", stuck), stalled=False
            )
        wait = _c("True", "Canary", message)
        return _Verdict(
            "Canary", _c("False", "Canary", message), wait, _c("False", "AsExpected", ""), False
        )
    if rollout.phase == "RolledBack":
        message = f"revision {revision} rolled back ({rollout.reason}): {rollout.message}"
        failed = _c("False", "RolledBack", message)
        return _Verdict("RolledBack", failed, failed, _c("True", "RolledBack", message), True)
    return None


def _write_verdict(failures: Sequence[WriteFailure]) -> _Verdict | None:
    """Writes the API server did not take say more than anything observed downstream."""
    refused = [f for f in failures if f.permanent]
    if refused:
        message = "; ".join(f.describe() for f in refused)
        bad = _c("False", "ChildRejected", message)
        return _Verdict("Failed", bad, bad, _c("True", "ChildRejected", message), True)
    if failures:
        message = "; ".join(f.describe() for f in failures)
        return _Verdict(
            "Progressing",
            _c("False", "Retrying", message),
            _c("True", "Retrying", message),
            _c("False", "AsExpected", ""),
            False,
        )
    return None


def _verdict(
    model: InferenceModel,
    observed: Observed,
    plan: Plan,
    rollout: RolloutStatus | None,
    failures: Sequence[WriteFailure] = (),
    upgrade: str | None = None,
    zero: Zero | None = None,
) -> _Verdict:
    revision = plan.desired_revision
    from_writes = _write_verdict(failures)
    if from_writes is not None:
        return from_writes
    waiting_cache = cache_wait(model, observed, revision)
    if waiting_cache is not None:  # the revision's pods do not exist yet
        return _cache_verdict(waiting_cache)
    gpu = model.spec.runtime.gpu
    diagnosis: PodDiagnosis = diagnose_pods(
        observed.pods_of(revision), gpu.resource_name if gpu else "nvidia.com/gpu"
    )
    # Before the rollout: a canary whose pods cannot start says why, not just its step.
    missing_secret = secret_problem(model, diagnosis.config_error)
    if missing_secret is not None:
        message = f"{missing_secret}: pods of revision {revision} wait for it"
        bad = _c("False", "InvalidSpec", message)
        return _Verdict("Failed", bad, bad, _c("True", "InvalidSpec", message), True)
    if rollout is not None:
        from_rollout = _rollout_verdict(rollout, revision)
        if from_rollout is not None:
            return from_rollout
    if zero is not None and zero.state == "Idle":
        message = (
            f"at zero replicas after {model.spec.idle_seconds}s without requests: "
            "the activator holds requests and wakes the model"
        )
        return _Verdict(
            "Idle",
            _c("True", "Idle", message),
            _c("False", "Idle", message),
            _c("False", "AsExpected", ""),
            False,
        )
    target = observed.deployment(revision)
    waiting = f"{starting_phase(model)}: {_readiness_message(target, plan.want_replicas, revision)}"

    load_failure = diagnosis.load_failed
    if load_failure is None and target is not None and target.deadline_exceeded:
        load_failure = (
            f"no replica of revision {revision} became ready within "
            f"{model.spec.runtime.startup_timeout_seconds}s (spec.runtime.startupTimeoutSeconds)"
        )
    if load_failure is not None:
        failed = _c("False", "ModelLoadFailed", load_failure)
        return _Verdict(
            "Degraded", failed, failed, _c("True", "ModelLoadFailed", load_failure), True
        )
    if diagnosis.startup_timed_out is not None:
        timed_out = _c("False", "StartupTimeout", diagnosis.startup_timed_out)
        return _Verdict(
            "Degraded",
            timed_out,
            timed_out,
            _c("True", "StartupTimeout", diagnosis.startup_timed_out),
            True,
        )
    if diagnosis.image_pull_failed is not None:
        pull = _c("True", "ImagePullFailed", diagnosis.image_pull_failed)
        return _Verdict(
            "Degraded",
            _c("False", "ImagePullFailed", diagnosis.image_pull_failed),
            pull,
            pull,
            False,
        )

    if target is not None and target.replica_failure is not None:
        reason = pod_creation_reason(target.replica_failure)
        message = f"pods of revision {revision} cannot be created: {target.replica_failure}"
        failed = _c("False", reason, message)
        return _Verdict("Degraded", failed, failed, _c("True", reason, message), True)

    healthy = _c("False", "AsExpected", "")
    serving_now = (
        plan.candidate_revision is None
        and target is not None
        # Promoted this pass: the relabel is written but not yet observed.
        and (target.track == "stable" or plan.promoted)
        and (
            target.fully_available(plan.want_replicas)
            # Rolling the operator's new template: maxUnavailable 0 keeps it serving.
            or (upgrade is not None and target.available >= max(plan.want_replicas, 1))
        )
    )
    if serving_now:
        version = model.spec.model.version
        message = f"{plan.want_replicas} replica(s) serve revision {revision} (model {version})"
        return _Verdict(
            "Ready",
            _c("True", "Serving", message),
            _c("True", "OperatorUpgrade", upgrade)
            if upgrade is not None
            else _c("False", "RolloutComplete", message),
            healthy,
            False,
        )
    if diagnosis.gpu_unschedulable is not None:
        msg = f"waiting for GPUs: {diagnosis.gpu_unschedulable}"
        wait = _c("True", "GPUUnschedulable", msg)
        return _Verdict("Pending", _c("False", "GPUUnschedulable", msg), wait, healthy, False)
    if diagnosis.unschedulable is not None:
        msg = f"pods cannot be scheduled: {diagnosis.unschedulable}"
        wait = _c("True", "Unschedulable", msg)
        return _Verdict("Pending", _c("False", "Unschedulable", msg), wait, healthy, False)
    if zero is not None and zero.state == "Waking":
        message = f"waking from zero: {_readiness_message(target, plan.want_replicas, revision)}"
        return _Verdict(
            "Waking", _c("False", "Waking", message), _c("True", "Waking", message), healthy, False
        )
    reason = "RollingOut" if plan.candidate_revision else "Deploying"
    return _Verdict(
        "Progressing", _c("False", reason, waiting), _c("True", reason, waiting), healthy, False
    )


def _zero_condition(model: InferenceModel, zero: Zero | None) -> _Cond:
    """ScaleToZero: True while at zero; False with why not, or that it is armed."""
    if zero is not None and zero.problem is not None:
        return _c("False", zero.problem.reason, zero.problem.message)
    if zero is not None and zero.state == "Idle":
        return _c("True", "Idle", "at zero replicas")
    if zero is not None and zero.state == "Waking":
        return _c("False", "Waking", "replicas asked for, none Ready yet")
    idle = model.spec.idle_seconds
    return _c("False", "Awake", f"goes to zero after {idle}s without requests")


def _apply_verdict(
    conditions: list[Condition], verdict: _Verdict, gen: int, now: datetime
) -> list[Condition]:
    stalled: _Cond = (
        _c("True", verdict.degraded[1], verdict.degraded[2])
        if verdict.stalled
        else _c("False", "AsExpected", "")
    )
    settings: list[tuple[str, _Cond]] = [
        ("Ready", verdict.ready),
        ("Progressing", verdict.progressing),
        ("Degraded", verdict.degraded),
        # kstatus (Flux, kpt, Argo CD's kstatus health) reads these abnormal-true conditions.
        ("Reconciling", verdict.progressing),
        ("Stalled", stalled),
    ]
    for type_, (status, reason, message) in settings:
        conditions = set_condition(
            conditions, type_, status, reason, message, now=now, observed_generation=gen
        )
    return conditions


def invalid_status(
    previous: InferenceModelStatus | None,
    generation: int,
    message: str,
    *,
    now: datetime,
    reason: str = "InvalidSpec",
) -> StatusReport:
    """Status for a spec only the operator could reject: children keep serving the last valid
    spec, so the observed fields stay; the conditions say what is wrong and that retrying
    will not help until the spec changes."""
    bad: _Cond = _c("False", reason, message)
    verdict = _Verdict("Failed", bad, bad, _c("True", reason, message), stalled=True)
    return _verdict_only(previous, generation, message, verdict, now)


def retrying_status(
    previous: InferenceModelStatus | None,
    generation: int,
    message: str,
    *,
    now: datetime,
    reason: str = "Retrying",
) -> StatusReport:
    """Status for a pass that could not finish for a reason that may pass (the API server
    erred or timed out): not degraded, but Ready and Progressing say what is retried."""
    verdict = _Verdict(
        "Progressing",
        _c("False", reason, message),
        _c("True", reason, message),
        _c("False", "AsExpected", ""),
        stalled=False,
    )
    return _verdict_only(previous, generation, message, verdict, now)


def _verdict_only(
    previous: InferenceModelStatus | None,
    generation: int,
    message: str,
    verdict: _Verdict,
    now: datetime,
) -> StatusReport:
    """The previous status with the verdict's phase, message and conditions: for passes
    that observed nothing new, so every observed field stays as it was."""
    old = list(previous.conditions) if previous else []
    conditions = _apply_verdict(old, verdict, generation, now)
    status = (previous or InferenceModelStatus()).model_copy(
        update={
            "observed_generation": generation,
            "phase": verdict.phase,
            "message": message,
            "conditions": conditions,
        }
    )
    return StatusReport(status=status, events=_transition_events(old, conditions))


_WAITS = frozenset({"GPUUnschedulable", "Unschedulable", "Retrying"})
"""Reasons that are not failures but still deserve a Warning: someone may have to act."""


def _transition_events(old: list[Condition], new: list[Condition]) -> list[Event]:
    """One Event per transition of the model, not one per condition that moved with it.

    Ready is the headline; Progressing speaks only when Ready did not change (a rollout
    moving on underneath a steady Ready); Degraded only when it turns True with a reason of
    its own. A reason already told in this pass is not told twice.
    """
    degraded_now = find_condition(new, "Degraded")
    bad = degraded_now is not None and degraded_now.status == "True"
    events: list[Event] = []
    told: set[str] = set()
    ready_moved = False
    for type_ in ("Ready", "Progressing", "Degraded"):
        before, after = find_condition(old, type_), find_condition(new, type_)
        if after is None:
            continue
        if before is not None and (before.status, before.reason) == (after.status, after.reason):
            continue
        if type_ == "Ready":
            ready_moved = True
        elif type_ == "Progressing" and ready_moved:
            continue
        elif type_ == "Degraded" and after.status != "True":
            continue  # recovery is told by Ready
        if after.reason in told:
            continue
        told.add(after.reason)
        warning = (
            bad
            or after.reason in _WAITS
            or after.reason
            in {
                "InvalidSpec",
                "MissingPermission",
            }
        )
        events.append(Event("Warning" if warning else "Normal", after.reason, after.message))
    return events


def _grpc_route_condition(model: InferenceModel, observed: Observed) -> _Cond:
    """GRPCRouted: whether the gateway routes the model's gRPC calls (GatewayAPI mode). The
    HTTPRoute never depends on it: without GRPCRoute support HTTP is routed as before."""
    if not observed.grpc_routes_served:
        return _c(
            "False",
            "GRPCRouteUnsupported",
            "the cluster serves no GRPCRoute CRD (or the operator may not watch grpcroutes): "
            "gRPC calls through the gateway have no route; HTTP is routed. Install the Gateway "
            "API standard CRDs (v1.1+) and restart the operator",
        )
    problem = route_status_problem(observed.find("GRPCRoute", model.name), "GRPCRoute")
    if problem is None:
        return _c("True", "Routed", "every gateway accepted the GRPCRoute and resolved its refs")
    if problem.refused:
        return _c("False", "GRPCRouteNotAccepted", problem.message)
    return _c("Unknown", "GRPCRoutePending", problem.message)


def compute_status(
    model: InferenceModel,
    observed: Observed,
    plan: Plan,
    previous: InferenceModelStatus | None,
    *,
    now: datetime,
    rollout: RolloutDecision | None = None,
    failures: Sequence[WriteFailure] = (),
    upgrade: str | None = None,
    zero: Zero | None = None,
) -> StatusReport:
    """The status for this pass; `rollout` is the canary decision when spec.rollout is set,
    `failures` the writes of this pass the API server did not take (or that back off),
    `upgrade` what the model's roll of the operator's new pod template is at (waiting for a
    slot, or rolling), if it has one."""
    rollout_status = rollout.status if rollout is not None else None
    verdict = _verdict(model, observed, plan, rollout_status, failures, upgrade, zero)
    gen = model.generation
    old = list(previous.conditions) if previous else []
    conditions = _apply_verdict(old, verdict, gen, now)
    if model.spec.scales_to_zero:
        conditions = set_condition(
            conditions,
            "ScaleToZero",
            *_zero_condition(model, zero),
            now=now,
            observed_generation=gen,
        )
    stable = observed.stable()
    stable_revision = stable.revision if stable else None
    stable_version = stable.annotations.get(MODEL_VERSION_ANNOTATION) if stable else None
    serving = observed.deployment(plan.serving_revision) if plan.serving_revision else None
    conditions = set_condition(
        conditions,
        "Available",
        *(
            _c("True", "MinimumReplicasAvailable", f"{serving.available} replica(s) available")
            if serving is not None and serving.available >= 1
            else _c("False", "NoReplicasAvailable", "no replica passes readiness yet")
        ),
        now=now,
        observed_generation=gen,
    )

    candidate = observed.deployment(plan.candidate_revision) if plan.candidate_revision else None
    gateway = model.spec.rollout is not None and model.spec.rollout.traffic.mode == "GatewayAPI"
    grpc_routed = _grpc_route_condition(model, observed) if gateway else None
    if grpc_routed is not None:
        conditions = set_condition(
            conditions, "GRPCRouted", *grpc_routed, now=now, observed_generation=gen
        )
    else:
        conditions = [c for c in conditions if c.type != "GRPCRouted"]
    weight = None
    split: Literal["Exact", "Approximate"] | None = None
    if gateway and rollout is not None and plan.candidate_revision:
        weight, split = rollout.route_weight, "Exact"
    elif candidate is not None:
        total = candidate.ready + (serving.ready if serving else 0)
        weight = round(100 * candidate.ready / total) if total else 0
        split = "Approximate"
    if rollout_status is not None and rollout_status.shadow_percent is not None and candidate:
        weight, split = 0, "Exact"  # shadow: the Service is pinned to stable
    in_flight = rollout_status is not None and rollout_status.phase in ("Progressing", "Promoting")
    status = InferenceModelStatus(
        observed_generation=gen,
        phase=verdict.phase,
        replicas=serving.replicas if serving else 0,
        ready_replicas=serving.ready if serving else 0,
        selector=f"{MODEL_LABEL}={model.name},{REVISION_LABEL}={plan.serving_revision}"
        if plan.serving_revision
        else None,
        endpoint=endpoint_url(model),
        stable_revision=plan.desired_revision if plan.promoted else stable_revision,
        stable_model_version=model.spec.model.version if plan.promoted else stable_version,
        desired_revision=plan.desired_revision or None,
        canary_revision=plan.candidate_revision if in_flight or rollout is None else None,
        canary_model_version=model.spec.model.version
        if plan.candidate_revision and (in_flight or rollout is None)
        else None,
        canary_weight=weight if in_flight or rollout is None else None,
        traffic_split=split if in_flight or rollout is None else None,
        rollout=rollout_status,
        message=verdict.ready[2] or None,
        conditions=conditions,
    )
    return StatusReport(status=status, events=_transition_events(old, conditions))

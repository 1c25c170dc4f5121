"""InferenceModel status: rebuilt from the observed world on every reconcile, never read back
as desired state.

Conditions follow KEP-1623 (`metav1.Condition`) so `kubectl wait --for=condition=Ready`, Argo CD
and Flux (kstatus) read progress correctly. `Reconciling` and `Stalled` are the kstatus
"abnormal-true" conditions; they mirror Progressing and a terminal Degraded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, StringConstraints

from kinfer_operator.api._base import ApiModel, Timestamp

__all__ = [
    "AnalysisRun",
    "Condition",
    "ConditionStatus",
    "Decision",
    "InferenceModelStatus",
    "MetricResult",
    "Phase",
    "RevisionCost",
    "RolloutPhase",
    "RolloutStatus",
    "bounded",
]


def _cut(limit: int) -> Callable[[object], object]:
    """Shorten text to `limit` characters: the one place status text is truncated, so a
    status write is never refused for a field that grew (a quoted error, a long name)."""

    def cut(value: object) -> object:
        if isinstance(value, str) and len(value) > limit:
            return value[: limit - 3] + "..."
        return value

    return cut


Name = Annotated[str, BeforeValidator(_cut(253)), StringConstraints(max_length=253)]
"""Names, revisions, versions and check names."""
Short = Annotated[str, BeforeValidator(_cut(128)), StringConstraints(max_length=128)]
"""Measured values and thresholds."""
Reason = Annotated[str, BeforeValidator(_cut(1024)), StringConstraints(max_length=1024)]
"""Machine-readable reasons, selectors and URLs."""
Message = Annotated[str, BeforeValidator(_cut(4096)), StringConstraints(max_length=4096)]
"""Human-readable messages."""

ConditionStatus = Literal["True", "False", "Unknown"]
Phase = Literal[
    "Pending",
    "Progressing",
    "Canary",
    "Ready",
    "Idle",
    "Waking",
    "RolledBack",
    "Degraded",
    "Failed",
]
RolloutPhase = Literal["Progressing", "Promoting", "Succeeded", "RolledBack", "Superseded"]
Decision = Literal["Pass", "Fail", "Inconclusive", "Error"]


class Condition(ApiModel):
    """One observation of the InferenceModel's state (metav1.Condition)."""

    type: Annotated[str, BeforeValidator(_cut(316)), StringConstraints(max_length=316)]
    """Condition type: Ready, Available, Progressing, Degraded, Reconciling or Stalled."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: Reason
    """CamelCase machine-readable cause, e.g. GPUUnschedulable or ModelLoadFailed."""
    message: Annotated[str, BeforeValidator(_cut(32768)), StringConstraints(max_length=32768)] = ""
    """Human-readable details."""
    last_transition_time: Timestamp
    """When status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """metadata.generation this condition was computed for."""


class MetricResult(ApiModel):
    """One check of one analysis."""

    name: Name
    """Check name: error-rate, latency-p99, request-count or a custom check's name."""
    value: Short | None = None
    """Measured value (as text, to keep full precision), absent when the query failed."""
    threshold: Short
    """The bound it was held to, e.g. '<= 0.01'."""
    verdict: Decision
    """Pass, Fail, Inconclusive or Error."""


class AnalysisRun(ApiModel):
    """The outcome of one analysis of the canary."""

    time: Timestamp
    """When it ran (RFC 3339)."""
    step: int
    """Canary step it ran at (0-based)."""
    decision: Decision
    """Pass (all checks passed), Fail (a check failed), Inconclusive (too little traffic) or
    Error (Prometheus could not answer)."""
    message: Message = ""
    """Why, in one line."""
    metrics: list[MetricResult] = Field(default_factory=list, max_length=32)
    """Every check's value, threshold and verdict."""


class RolloutStatus(ApiModel):
    """Explicit canary state: where the rollout is and why. Resuming reads it, so an operator
    restart continues at the same step."""

    phase: RolloutPhase
    """Progressing (stepping through weights), Promoting (scaling the canary to full size),
    Succeeded, RolledBack, or Superseded (the spec changed before it finished)."""
    revision: Name
    """Revision this rollout brings in."""
    model_version: Name | None = None
    """spec.model.version of that revision."""
    from_revision: Name
    """Stable revision when the rollout started."""
    started_at: Timestamp
    """When the canary was created."""
    step: int = 0
    """Current step (0-based)."""
    steps: int = 0
    """Number of steps."""
    weight: int = 0
    """Canary weight in effect: raised to the step's weight only once the canary has the
    ready replicas to carry it."""
    shadow_percent: int | None = None
    """Set while the rollout is in its shadow phase (step 0 with spec.rollout.shadow), and
    kept when it was rolled back there: the share of stable's requests mirrored to the
    canary, which gets no user traffic."""
    step_entered_at: Timestamp | None = None
    """When the current step began (the canary may still be scaling up for it)."""
    step_started_at: Timestamp | None = None
    """When the current step's weight took effect; analysis time counts from here."""
    last_analysis_at: Timestamp | None = None
    """When the latest analysis ran."""
    passed_at_step: int = 0
    """Analyses that passed at the current step."""
    failures: int = 0
    """Failed analyses, counted as spec.rollout.analysis.failureLimitMode says."""
    errors: int = 0
    """Consecutive analyses that could not reach Prometheus."""
    last_analysis: AnalysisRun | None = None
    """The latest analysis."""
    route_message: Message | None = None
    """While the current weight waits for the gateway: why, quoting the HTTPRoute condition
    that is not True (e.g. ResolvedRefs=False BackendNotFound); empty once it is routed."""
    reason: Reason | None = None
    """Why it was rolled back or promoted early (e.g. AnalysisFailed, GPUUnschedulable)."""
    message: Message | None = None
    """Details of the rollback or promotion, including the failing check and its value."""
    finished_at: Timestamp | None = None
    """When it was promoted or rolled back."""
    retry_token: Annotated[str, StringConstraints(max_length=256)] = ""
    """spec.rollout.retry plus the retry annotation when it started; a rolled-back revision
    is tried again only when this changes."""


class RevisionCost(ApiModel):
    """GPU time of one revision's pods, as facts that change only when a pod starts or ends
    (never with the clock, so a steady-state pass writes nothing). GPU-seconds at time t are
    `retiredGpuSeconds + finishedGpuSeconds + runningGpus * t - runningGpuStartSum`, t in Unix
    seconds; `kubectl kinfer cost` and the kinfer_gpu_seconds_total metric compute that."""

    revision: Name
    """Revision hash (the pods' serving.kinfer.io/revision label)."""
    track: Literal["stable", "canary", "retired"]
    """stable, canary (a rollout in progress), or retired (no longer served)."""
    retired_gpu_seconds: int = Field(default=0, ge=0)
    """GPU-seconds of the revision's deleted pods, from start to end (kept across restarts)."""
    finished_gpu_seconds: int = Field(default=0, ge=0)
    """GPU-seconds of pods that ended (Succeeded or Failed) but still exist."""
    running_gpus: int = Field(default=0, ge=0)
    """GPUs held right now by started pods of the revision."""
    running_gpu_start_sum: int = Field(default=0, ge=0)
    """Sum over running pods of GPUs times start time (Unix seconds)."""


class InferenceModelStatus(ApiModel):
    """Observed state of a served model."""

    observed_generation: int | None = None
    """metadata.generation the operator last acted on."""
    phase: Phase | None = None
    """One-word summary: Pending, Progressing, Ready, Idle (at zero replicas, requests wake
    it), Waking (replicas asked for, none Ready yet), Degraded or Failed."""
    replicas: int | None = None
    """Serving replicas of the stable revision (the scale subresource reads this)."""
    ready_replicas: int | None = None
    """Replicas of the stable revision that pass readiness (model loaded and warm)."""
    selector: Reason | None = None
    """Label selector of the stable revision's pods, for the scale subresource and HPAs."""
    endpoint: Reason | None = None
    """In-cluster base URL of the Open Inference Protocol endpoint."""
    stable_revision: Name | None = None
    """Hash of model plus runtime template now serving all traffic."""
    stable_model_version: Name | None = None
    """spec.model.version of the stable revision."""
    desired_revision: Name | None = None
    """Hash of the current spec's model plus runtime template."""
    canary_revision: Name | None = None
    """Revision being rolled out, if any."""
    canary_model_version: Name | None = None
    """spec.model.version of the canary revision."""
    canary_weight: int | None = None
    """Percent of traffic sent to the canary revision."""
    message: Message | None = None
    """The most important thing to know right now."""
    traffic_split: Literal["Exact", "Approximate"] | None = None
    """Exact with Gateway API weights; Approximate when replica counts stand in for weights."""
    rollout: RolloutStatus | None = None
    """The current or latest canary rollout."""
    cost: list[RevisionCost] | None = Field(default=None, max_length=12)
    """GPU time per revision: stable, canary and the most recently retired (GPU models only)."""
    conditions: list[Condition] = Field(default_factory=list, max_length=16)
    """Latest observations, one per type."""


def bounded(status: InferenceModelStatus) -> InferenceModelStatus:
    """`status` validated again, so text set by model_copy (which skips validation) is
    truncated too; publish writes only what this returns."""
    return InferenceModelStatus.model_validate(status.model_dump())

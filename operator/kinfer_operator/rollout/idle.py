"""Scale to zero: when a model goes to zero, and what it is at while there or waking.

Pure. The signal is the runtime's request counter (kinfer_requests_total) over the last
idleSeconds, read from the Prometheus endpoint the platform configured
(reconcile/analysis_port.py asks it). Idle means: the model scales to zero, no canary is in
flight, its serving replicas have been up for idleSeconds (so a model the activator just woke
is kept for at least that long, measured from the wake), and Prometheus saw no request in
that window. Anything unknown keeps the model up: a wrong "idle" costs a cold start, a wrong
"busy" only GPU time.

Waking (replicas asked for, none Ready) is told apart from a first deployment by the status
the previous pass wrote: it is how the model is shown, never what the operator acts on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from kinfer_operator.model import InferenceModel
from kinfer_operator.world import DeploymentView

__all__ = [
    "NO_ACTIVATOR",
    "NO_READY_ACTIVATOR",
    "IdleDecision",
    "RequestCount",
    "SignalUnavailable",
    "ZeroState",
    "decide_idle",
    "needs_count",
    "requests_query",
    "up_since",
]

ZeroState = Literal["Awake", "Idle", "Waking"]


@dataclass(frozen=True)
class SignalUnavailable:
    """Why the model cannot go to zero now: no Prometheus configured, or it did not answer
    (the request count is unknown), or no activator would answer its clients at zero."""

    reason: Literal[
        "PrometheusNotConfigured",
        "IdleSignalUnavailable",
        "ActivatorNotInstalled",
        "ActivatorNotReady",
    ]
    message: str


NO_ACTIVATOR = SignalUnavailable(
    "ActivatorNotInstalled",
    "scale to zero is unavailable: the operator has no activator (install the chart with "
    "activator.enabled=true, which sets KINFER_ACTIVATOR_SERVICE)",
)

NO_READY_ACTIVATOR = SignalUnavailable(
    "ActivatorNotReady",
    "scale to zero is unavailable: no activator pod is Ready to answer the model's clients "
    "at zero, so the model stays up",
)

RequestCount = float | SignalUnavailable
"""Requests the model served in the window, or why that is unknown."""


@dataclass(frozen=True)
class IdleDecision:
    """What this pass does about zero, and how the model is shown."""

    state: ZeroState
    scale_to_zero: bool = False
    """Set the serving Deployment's replicas to 0 in this pass."""
    problem: SignalUnavailable | None = None
    """Scale to zero is unavailable right now, and why (shown in status)."""
    recheck_after: float | None = None
    """Seconds until the next look at the request counter."""

    @property
    def at_zero(self) -> bool:
        """No Ready pod and none coming without a request: the activator fronts the model."""
        return self.state in ("Idle", "Waking")


def requests_query(model: InferenceModel, seconds: int) -> str:
    """PromQL for the requests the model's pods served in the last `seconds`; confined to
    the model's namespace again before it is sent (rollout/promql_scope.py)."""
    selector = f'namespace="{model.namespace}",model="{model.name}"'
    return f"sum(increase(kinfer_requests_total{{{selector}}}[{seconds}s]))"


def up_since(pods: Iterable[Mapping[str, Any]]) -> datetime | None:
    """When the oldest running pod started: how long the model has been awake."""
    starts = [
        datetime.fromisoformat(str(p["status"]["startTime"]).replace("Z", "+00:00"))
        for p in pods
        if (p.get("status") or {}).get("startTime")
        and (p.get("status") or {}).get("phase") == "Running"
    ]
    return min(starts) if starts else None


def decide_idle(
    model: InferenceModel,
    serving: DeploymentView | None,
    *,
    rolling: bool,
    awake_since: datetime | None,
    now: datetime,
    requests: RequestCount | None,
    was_at_zero: bool,
    activator: bool = True,
    activator_ready: bool = True,
) -> IdleDecision:
    """The decision for this pass.

    `serving`: the serving revision's Deployment; `rolling`: a candidate revision runs beside
    it; `requests`: the count over the last idleSeconds, None when it was not asked (the
    model is not up long enough for it to matter); `was_at_zero`: the previous pass showed
    Idle or Waking; `activator`: the operator knows where the activator runs (without it a
    model at zero would have no one to answer its clients, so it never goes there);
    `activator_ready`: at least one activator pod is Ready (likewise).
    """
    if not model.spec.scales_to_zero or serving is None:
        return IdleDecision("Awake")
    if serving.spec_replicas == 0:
        return IdleDecision("Idle")
    if serving.ready == 0 and was_at_zero:
        return IdleDecision("Waking")
    idle = model.spec.idle_seconds
    if rolling or serving.ready == 0 or awake_since is None:
        return IdleDecision("Awake", recheck_after=float(idle))
    if not activator:
        return IdleDecision("Awake", problem=NO_ACTIVATOR)
    if not activator_ready:
        return IdleDecision("Awake", problem=NO_READY_ACTIVATOR, recheck_after=float(min(idle, 60)))
    up = (now - awake_since).total_seconds()
    if up < idle:
        return IdleDecision("Awake", recheck_after=max(1.0, idle - up))
    if isinstance(requests, SignalUnavailable):
        return IdleDecision("Awake", problem=requests, recheck_after=float(min(idle, 60)))
    if requests is None or requests > 0:
        # A request in the window: the earliest the model can be idle is a window later.
        return IdleDecision("Awake", recheck_after=float(min(idle, 60)))
    return IdleDecision("Idle", scale_to_zero=True)


def needs_count(
    model: InferenceModel,
    serving: DeploymentView | None,
    *,
    rolling: bool,
    awake_since: datetime | None,
    now: datetime,
    activator: bool = True,
) -> bool:
    """Whether this pass must ask Prometheus: only when the answer could send it to zero."""
    if not model.spec.scales_to_zero or serving is None or rolling or not activator:
        return False
    if serving.spec_replicas == 0 or serving.ready == 0 or awake_since is None:
        return False
    return (now - awake_since).total_seconds() >= model.spec.idle_seconds

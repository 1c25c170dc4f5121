"""Run one reconcile pass: observe, plan, write only what differs, publish status."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from pydantic import ValidationError

from kinfer_operator._kube import MissingPermission, WriteError
from kinfer_operator.api.status import InferenceModelStatus, bounded
from kinfer_operator.children.activator_routes import CONFIGMAP_NAME
from kinfer_operator.children.endpointslice import slice_name
from kinfer_operator.events import Event
from kinfer_operator.metrics import (
    PROMOTIONS,
    RECONCILE_ERRORS,
    RECONCILE_SECONDS,
    RECONCILES,
    ROLLBACKS,
    forget_model,
    record_model,
)
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import deployment_name, revision_of, service_name
from kinfer_operator.reconcile.analysis_port import AnalysisPort
from kinfer_operator.reconcile.backoff import WriteBackoff
from kinfer_operator.reconcile.cache import FILL_POLL_SECONDS, gate_on_cache
from kinfer_operator.reconcile.cluster import ClusterApi
from kinfer_operator.reconcile.front_activator import activator_children, route_for, with_front
from kinfer_operator.reconcile.plan import Plan, Scale, plan, want_replicas
from kinfer_operator.reconcile.routes_table import RoutesTable
from kinfer_operator.reconcile.template_rolls import (
    TEMPLATE_WAIT_SECONDS,
    Gate,
    TemplateRolls,
    gate_template,
)
from kinfer_operator.reconcile.writes import WriteExecutor
from kinfer_operator.references import references_of
from kinfer_operator.rollout._prometheus import query_value
from kinfer_operator.rollout.endpoints import PrometheusConfig
from kinfer_operator.rollout.fetch import Query
from kinfer_operator.rollout.idle import IdleDecision, decide_idle, needs_count, up_since
from kinfer_operator.rollout.machine import (
    RolloutContext,
    RolloutDecision,
    decide,
)
from kinfer_operator.status.compute import (
    StatusReport,
    compute_status,
    invalid_status,
    retrying_status,
)
from kinfer_operator.world import Observed, RouteWait, WriteFailure, route_problem
from kinfer_operator.world.cost import CostLedger, resource_name_of, revision_costs

_TRACER = trace.get_tracer("kinfer-operator")

__all__ = [
    "ACTIVATOR_NAMESPACE_ENV",
    "ACTIVATOR_SERVICE_ENV",
    "DEFAULT_ACTIVATOR_NAMESPACE",
    "Outcome",
    "Reconciler",
    "describe_validation_error",
    "utc_now",
]


_log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """Now, to the second: status keeps metav1.Time's precision, so passes compare equal."""
    return datetime.now(UTC).replace(microsecond=0)


def describe_validation_error(err: ValidationError) -> str:
    """One line per problem, each naming the spec field, like the API server does."""
    parts = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"])
        parts.append(f"spec.{path}: {e['msg']}")
    return "; ".join(parts)


@dataclass(frozen=True)
class Outcome:
    """What a pass did; tests and logs read it."""

    writes: int
    plan: Plan | None
    status: InferenceModelStatus | None
    requeue_after: float | None = None
    """Seconds until the rollout needs another pass (analysis or pause due), if any."""


def _outcome(outcome: Outcome | None) -> str:
    """The pass's outcome for its trace span: gone, the Ready condition's reason, or written."""
    if outcome is None:
        return "gone"
    if outcome.status is not None:
        for condition in outcome.status.conditions:
            if condition.type == "Ready":
                return str(condition.reason)
    return f"{outcome.writes} writes"


def _to_zero(decided: Plan, deployment: str) -> Plan:
    """The plan with the serving Deployment scaled to 0 (through the scale subresource: the
    HPA, whose floor is 1, leaves a Deployment at 0 alone until the activator wakes it)."""
    scales = [s for s in decided.scales if s.name != deployment]
    return replace(decided, scales=[*scales, Scale(deployment, 0)], want_replicas=0)


def _wake(decided: Plan, deployment: str) -> Plan:
    """The plan with the serving Deployment at zero brought back to one replica."""
    scales = [s for s in decided.scales if s.name != deployment]
    return replace(decided, scales=[*scales, Scale(deployment, 1)], want_replicas=1)


def _status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) from old to new: keys gone at any depth become null.

    Merge patches merge nested objects, so a field that disappears inside e.g.
    status.rollout would otherwise survive on the server; lists are replaced whole.
    """
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            patch[key] = _status_patch(before, value)
        else:
            patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


ACTIVATOR_SERVICE_ENV = "KINFER_ACTIVATOR_SERVICE"
"""The activator's Service (the chart sets it with activator.enabled); unset: no model goes
to zero, as nothing would answer its clients there."""
ACTIVATOR_NAMESPACE_ENV = "KINFER_ACTIVATOR_NAMESPACE"
"""Where the activator runs, and where the routes ConfigMap goes (the operator's namespace)."""
DEFAULT_ACTIVATOR_NAMESPACE = "kinfer-system"
CONFLICT_RETRY_SECONDS = 1.0
"""A write refused for a stale read is tried again this soon (the watch event is on its way)."""
INVALID_RECHECK_SECONDS = 30.0
"""How soon a model that cannot be served is looked at again: a missing Secret may appear
without any event the operator watches."""


@dataclass(frozen=True)
class _Current:
    """The model as this pass found it."""

    body: Mapping[str, Any]
    raw_status: Mapping[str, Any]
    previous: InferenceModelStatus | None
    """The status as last written, unless an older operator wrote it in another shape."""
    generation: int
    now: datetime
    writes_before: int

    @classmethod
    def of(cls, body: Mapping[str, Any], now: datetime, writes_before: int) -> _Current:
        raw_status = body.get("status") or {}
        try:
            previous: InferenceModelStatus | None = InferenceModelStatus.model_validate(raw_status)
        except ValidationError:
            previous = None  # rebuilt from scratch by this pass
        generation = int(body["metadata"].get("generation", 1))
        return cls(body, raw_status, previous, generation, now, writes_before)


class Reconciler:
    """One pass per call. The work queue guarantees that a model is never in two passes at
    once; many models' passes run in parallel on the queue's workers."""

    def __init__(
        self,
        kube: ClusterApi,
        clock: Callable[[], datetime] = utc_now,
        prometheus: PrometheusConfig | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        query: Query = query_value,
        costs: CostLedger | None = None,
        analysis_budget: float | None = None,
        template_rolls: TemplateRolls | None = None,
        template_mark: str = "",
        otlp_endpoint: str = "",
        activator: bool | None = None,
        routes: RoutesTable | None = None,
    ) -> None:
        """`query(endpoint, promql, timeout, name)` answers canary analysis against the
        operator's Prometheus endpoints (unit tests pass a fake); `costs` holds the
        GPU-seconds of deleted pods, fed by the pod watch; `template_rolls` bounds how many
        models roll a change of the operator's own pod template at once (None: unbounded);
        `template_mark` (tests only) changes that template on demand; `activator`: whether
        an activator answers models at zero (else KINFER_ACTIVATOR_SERVICE says so)."""
        self.kube = kube
        self.template_rolls = template_rolls
        self.template_mark = template_mark
        self.otlp_endpoint = otlp_endpoint  # the platform's collector, for traced models
        self.costs = costs or CostLedger()
        self.analysis = AnalysisPort(prometheus, query, analysis_budget, monotonic)
        self.writes = WriteExecutor(kube, monotonic)
        self._clock = clock
        self.activator = (
            bool(os.environ.get(ACTIVATOR_SERVICE_ENV)) if activator is None else activator
        )
        self.routes = routes or RoutesTable(
            os.environ.get(ACTIVATOR_NAMESPACE_ENV) or DEFAULT_ACTIVATOR_NAMESPACE, monotonic
        )

    def forget(self, namespace: str, name: str) -> None:
        """Drop per-model state once the model is deleted."""
        self.writes.forget(namespace, name)
        self.routes.forget((namespace, name))
        self.costs.forget(namespace, name)
        if self.template_rolls is not None:
            self.template_rolls.not_waiting((namespace, name))
        forget_model(namespace, name)

    def collect(self, namespace: str, name: str, uid: str) -> int:
        """Delete the children a deleted model controlled (matched by its UID); returns how
        many deletes were sent.

        The garbage collector would delete them too, but only after it has processed the
        model's own deletion: one level of ownership later, which made deleting models
        markedly slower than deleting the same Deployments and Services directly.
        """
        observed = self.kube.observe(namespace, name, uid)
        owned = [
            (kind, str(obj["metadata"]["name"]))
            for kind, objects in observed.children_by_kind().items()
            for obj in objects
        ]
        for kind, child in owned:
            try:
                self.kube.delete(namespace, kind, child)
            except WriteError as err:  # the garbage collector still will
                _log.info("%s/%s: %s", namespace, name, err.failure.describe())
        return len(owned)

    def reconcile(self, namespace: str, name: str, trigger: str = "event") -> Outcome | None:
        """One pass for one model; None when the model no longer exists."""
        RECONCILES.labels(trigger=trigger).inc()
        started = time.perf_counter()
        # A span per pass: a no-op unless main installed an exporter (OTEL_TRACES_EXPORTER).
        with _TRACER.start_as_current_span(
            "reconcile",
            attributes={"k8s.namespace.name": namespace, "kinfer.model": name, "trigger": trigger},
        ) as span:
            try:
                outcome = self._pass(namespace, name)
                if outcome is not None:
                    _log.debug(
                        "pass %s/%s (%s): %d write(s)", namespace, name, trigger, outcome.writes
                    )
                span.set_attribute("kinfer.outcome", _outcome(outcome))
                return outcome
            except Exception as exc:
                RECONCILE_ERRORS.labels(error=type(exc).__name__).inc()
                span.set_attribute("kinfer.outcome", "error")
                raise
            finally:
                RECONCILE_SECONDS.observe(time.perf_counter() - started)

    def _pass(self, namespace: str, name: str) -> Outcome | None:
        body = self.kube.get_model(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        current = _Current.of(body, self._clock(), self.kube.thread_writes())
        try:
            return self._converge(current)
        except Exception as exc:
            # Whatever broke this pass, the model says so: no code path leaves status empty.
            message = f"reconcile failed, retrying: {type(exc).__name__}: {exc}"
            report = retrying_status(
                current.previous, current.generation, message[:2048], now=current.now
            )
            try:
                self._publish(current, report)
            except Exception:
                _log.warning("could not publish status of %s/%s", namespace, name, exc_info=True)
            raise

    def _converge(self, current: _Current) -> Outcome:
        """Validate, observe, decide the rollout, plan, write, report: the pass's steps."""
        model, problem = self._validate(current.body)
        if model is None or problem is not None:
            return self._refuse(current, problem or "invalid spec", "InvalidSpec")
        gateway = model.spec.rollout is not None and model.spec.rollout.traffic.mode == "GatewayAPI"
        cached = model.spec.model.cache is not None
        try:
            observed = self.kube.observe(
                model.namespace, model.name, model.uid, with_routes=gateway, with_jobs=cached
            )
        except MissingPermission as err:
            return self._refuse(current, str(err), "MissingPermission")
        backoff = self.writes.backoff_for(model.namespace, model.name, current.generation)
        ips = self._activator_ips()
        activator_ready = bool(ips)
        rollout = self._decide_rollout(model, observed, current, backoff)
        zero = self._decide_zero(model, observed, current, activator_ready)
        decided = plan(
            model,
            observed,
            rollout,
            self.template_mark,
            now=current.now,
            otlp_endpoint=self.otlp_endpoint,
            at_zero=zero.at_zero,
            least_queue=model.spec.routing == "leastQueue",
            activator_ready=activator_ready,
        )
        decided = self._front(model, observed, decided, ips, zero.at_zero)
        if zero.scale_to_zero:
            decided = _to_zero(decided, deployment_name(model, decided.serving_revision))
        elif zero.state == "Idle" and not activator_ready:
            # At zero with no activator to answer: bring a replica back rather than leave
            # the model's clients with no endpoint at all.
            decided = _wake(decided, deployment_name(model, decided.serving_revision))
        decided, filling = gate_on_cache(model, observed, decided)  # spec.model.cache
        rolls = self.template_rolls
        gate = (
            gate_template(model.namespace, decided, observed.find, rolls, model.name)
            if rolls
            else None
        )
        decided = gate.plan if gate else decided
        try:
            written = self.writes.execute(model, observed.find, decided, backoff)
        finally:
            self._release(gate)
        report = self._report(
            model,
            observed,
            decided,
            rollout,
            written.failures,
            current,
            gate.note if gate else None,
            zero,
        )
        self._publish(current, report)
        due = [
            t
            for t in (
                rollout.requeue_after if rollout is not None else None,
                decided.requeue_after,
                backoff.next_retry_in(),
                CONFLICT_RETRY_SECONDS if written.conflicts else None,
                FILL_POLL_SECONDS if filling else None,
                TEMPLATE_WAIT_SECONDS if gate and gate.waiting else None,
                zero.recheck_after,
            )
            if t is not None
        ]
        return Outcome(
            self.kube.thread_writes() - current.writes_before,
            decided,
            report.status,
            min(due) if due else None,
        )

    def _activator_ips(self) -> tuple[str, ...]:
        """The Ready activator pods, when the operator has an activator."""
        if not self.activator:
            return ()
        return tuple(self.kube.activator_ips() or ())

    def _front(
        self,
        model: InferenceModel,
        observed: Observed,
        decided: Plan,
        ips: tuple[str, ...],
        at_zero: bool,
    ) -> Plan:
        """The plan with the model's Service path as its Front says (the activator's
        Service, slice and track Services, or the pods'), and the model's routing-table row
        submitted (None takes it out)."""
        front = decided.front
        if front is None:
            return decided
        route = route_for(
            model,
            stable_revision=front.stable_revision,
            canary_revision=front.canary_revision,
            canary_weight=front.canary_weight,
            at_zero=at_zero,
        )
        ports = self.routes.submit((model.namespace, model.name), route)
        children = activator_children(
            model,
            via=front.via,
            service_revisions=front.service_revisions,
            stable_revision=front.stable_revision,
            canary_revision=front.canary_revision,
            activator_ips=ips,
            ports=ports,
            slice_observed=observed.find("EndpointSlice", slice_name(model)) is not None,
        )
        return with_front(decided, children)

    def seed_routes(self) -> None:
        """Start the routing table from the ConfigMap as written (at start, on taking over):
        models keep their port pairs across operator restarts."""
        if self.activator:
            self.routes.seed(self.kube.read_configmap(self.routes.namespace, CONFIGMAP_NAME))

    def flush_routes(self) -> bool:
        """Write the routing table if it changed (the leader's one writer of it)."""
        if not self.activator:
            return False
        return self.routes.flush(self.kube.apply)

    def _decide_zero(
        self,
        model: InferenceModel,
        observed: Observed,
        current: _Current,
        activator_ready: bool = True,
    ) -> IdleDecision:
        """Scale to zero for this pass; Prometheus is asked only when the answer could send
        the model to zero."""
        serving = observed.stable()
        rolling = serving is not None and (
            serving.revision != revision_of(model)
            or any(v.revision != serving.revision for v in observed.views)
        )
        awake_since = up_since(observed.pods_of(serving.revision)) if serving else None
        asking = needs_count(
            model,
            serving,
            rolling=rolling,
            awake_since=awake_since,
            now=current.now,
            activator=self.activator and activator_ready,
        )
        return decide_idle(
            model,
            serving,
            rolling=rolling,
            awake_since=awake_since,
            now=current.now,
            requests=self.analysis.request_count(model) if asking else None,
            was_at_zero=_was_at_zero(current.previous),
            activator=self.activator,
            activator_ready=activator_ready,
        )

    def _release(self, gate: Gate | None) -> None:
        """Free the template-roll slots this pass took: its writes are in the cache now."""
        if gate is None or self.template_rolls is None:
            return
        for key in gate.held:
            self.template_rolls.release(key)

    def _validate(self, body: Mapping[str, Any]) -> tuple[InferenceModel | None, str | None]:
        """The typed model, or why the spec cannot be served (schema, missing references)."""
        try:
            model = InferenceModel.from_body(body)
        except ValidationError as err:
            return None, describe_validation_error(err)
        problems = (self.kube.missing(model.namespace, ref) for ref in references_of(model))
        return model, "; ".join(p for p in problems if p) or None

    def _refuse(self, current: _Current, problem: str, reason: str) -> Outcome:
        """Report a model that cannot be reconciled until someone acts."""
        report = invalid_status(
            current.previous, current.generation, problem, now=current.now, reason=reason
        )
        self._publish(current, report)
        return Outcome(
            self.kube.thread_writes() - current.writes_before,
            None,
            report.status,
            INVALID_RECHECK_SECONDS,
        )

    def _report(
        self,
        model: InferenceModel,
        observed: Observed,
        decided: Plan,
        rollout: RolloutDecision | None,
        failures: list[WriteFailure],
        current: _Current,
        upgrade: str | None = None,
        zero: IdleDecision | None = None,
    ) -> StatusReport:
        """Status from the observed world, with the rollout's Events first."""
        report = compute_status(
            model,
            observed,
            decided,
            current.previous,
            now=current.now,
            rollout=rollout,
            failures=failures,
            upgrade=upgrade,
            zero=zero,
        )
        # Pods were observed before the ledger is read: a pod deleted in between is missing
        # from this status for one pass (its DELETED event enqueued the next), never doubled.
        cost = revision_costs(
            observed.pods,
            resource_name_of(current.body),
            self.costs.retired(current.body),
            report.status.stable_revision,
            report.status.canary_revision,
        )
        report = StatusReport(report.status.model_copy(update={"cost": cost}), report.events)
        if rollout is not None and rollout.events:
            told = {e.reason for e in rollout.events}
            # "Promoted" already tells that the new revision serves.
            own = [e for e in report.events if not (e.reason == "Serving" and "Promoted" in told)]
            report = StatusReport(report.status, [*rollout.events, *own])
            for event in rollout.events:
                if event.reason == "RolledBack":
                    ROLLBACKS.labels(model.namespace, model.name).inc()
                elif event.reason == "Promoted":
                    PROMOTIONS.labels(model.namespace, model.name).inc()
        if decided.promoted and rollout is None:  # a rollout announces its own promotion
            promoted = Event(
                "Normal",
                "Promoted",
                f"revision {decided.desired_revision} (model {model.spec.model.version}) "
                "is now stable",
            )
            own = [e for e in report.events if e.reason != "Serving"]
            report = StatusReport(report.status, [promoted, *own])
        return report

    def _decide_rollout(
        self,
        model: InferenceModel,
        observed: Observed,
        current: _Current,
        backoff: WriteBackoff,
    ) -> RolloutDecision | None:
        """The canary decision, when the model has spec.rollout and a stable revision."""
        spec = model.spec.rollout
        stable = observed.stable()
        if spec is None or stable is None:
            return None
        previous = current.previous
        analyzers = self.analysis.analyzers(model, current.now)
        route = observed.find("HTTPRoute", model.name)
        grpc = observed.grpc_routes_served
        grpc_route = observed.find("GRPCRoute", model.name) if grpc else None

        def gateway_problem(weight: int) -> RouteWait | None:
            # A weight counts once every route kinfer writes carries it (HTTP and gRPC).
            fronted = service_name(model)  # the weighted rule on the activator carries any
            return route_problem(route, weight, activator_service=fronted) or (
                route_problem(grpc_route, weight, "GRPCRoute", fronted) if grpc else None
            )

        canary_write = backoff.failure_of(
            ("apply", "Deployment", deployment_name(model, revision_of(model)))
        )
        return decide(
            RolloutContext(
                model=model,
                observed=observed,
                previous=previous.rollout if previous else None,
                stable=stable,
                total=want_replicas(model, stable),
                now=current.now,
                annotations=current.body["metadata"].get("annotations") or {},
                analyze=analyzers.analyze,
                analyze_shadow=analyzers.analyze_shadow,
                route_problem=gateway_problem
                if spec.traffic.mode == "GatewayAPI"
                else (lambda _w: None),
                refused=canary_write.describe()
                if canary_write is not None and canary_write.permanent
                else None,
            )
        )

    def _publish(self, current: _Current, report: StatusReport) -> None:
        meta = current.body["metadata"]
        record_model(
            meta["namespace"], meta["name"], report.status.conditions, report.status.canary_weight
        )
        new = bounded(report.status).model_dump(by_alias=True, exclude_none=True)
        if new != dict(current.raw_status):
            self.kube.patch_model_status(
                meta["namespace"], meta["name"], _status_patch(current.raw_status, new)
            )
        for event in report.events:
            self.kube.post_event(current.body, event.type, event.reason, event.message, current.now)


def _was_at_zero(previous: InferenceModelStatus | None) -> bool:
    """The previous pass left the model Idle or Waking. Read from the ScaleToZero condition,
    not the phase: a wake that finds no GPU shows phase Pending and is still a wake."""
    if previous is None:
        return False
    zero = next((c for c in previous.conditions or [] if c.type == "ScaleToZero"), None)
    if zero is not None:
        return zero.reason in ("Idle", "Waking")
    return previous.phase in ("Idle", "Waking")

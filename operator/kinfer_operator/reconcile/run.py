"""Run one reconcile pass: observe, plan, write only what differs, publish status."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from pydantic import ValidationError

from kinfer_operator._kube import MissingPermission, WriteError
from kinfer_operator.api.status import AnalysisRun, InferenceModelStatus
from kinfer_operator.children.httproute import route_problem
from kinfer_operator.events import Event
from kinfer_operator.metrics import (
    ANALYSES,
    PROMOTIONS,
    RECONCILE_ERRORS,
    RECONCILE_SECONDS,
    RECONCILES,
    ROLLBACKS,
    forget_model,
    record_model,
)
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import HASH_ANNOTATION, deployment_name, revision_of
from kinfer_operator.reconcile.backoff import WriteBackoff, WriteKey
from kinfer_operator.reconcile.plan import Plan, needs_apply, plan, want_replicas
from kinfer_operator.references import Reference, references_of
from kinfer_operator.rollout._prometheus import PrometheusError, query_value
from kinfer_operator.rollout.analysis import AnalysisTarget, run_analysis
from kinfer_operator.rollout.machine import (
    RolloutContext,
    RolloutDecision,
    decide,
    format_time,
    parse_time,
)
from kinfer_operator.status.compute import (
    StatusReport,
    compute_status,
    invalid_status,
    retrying_status,
)
from kinfer_operator.world import Observed, WriteFailure

__all__ = ["ClusterApi", "Outcome", "Reconciler", "describe_validation_error", "utc_now"]


class ClusterApi(Protocol):
    """What a pass needs from the API boundary (`_kube.Kube`); tests drive passes with an
    in-memory fake. Writes of children raise `WriteError` when they do not go through."""

    def thread_writes(self) -> int: ...

    def get_model(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def missing(self, namespace: str, ref: Reference) -> str | None: ...

    def observe(
        self, namespace: str, model_name: str, model_uid: str, with_routes: bool = False
    ) -> Observed: ...

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...

    def scale(self, namespace: str, deployment: str, replicas: int) -> None: ...

    def delete(self, namespace: str, kind: str, name: str) -> None: ...

    def patch_model_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None: ...

    def post_event(
        self, model: Mapping[str, Any], type_: str, reason: str, message: str, now: str
    ) -> None: ...


_log = logging.getLogger(__name__)


def utc_now() -> str:
    """RFC 3339 timestamp with second precision, as metav1.Time serialises."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


class Reconciler:
    """Serialises passes per model; many triggers (events, timer, child watches) share it."""

    def __init__(
        self,
        kube: ClusterApi,
        clock: Callable[[], str] = utc_now,
        prometheus_url: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self._clock = clock
        self._monotonic = monotonic
        self._prometheus_url = prometheus_url or os.environ.get("KINFER_PROMETHEUS_URL")
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._backoffs: dict[tuple[str, str], WriteBackoff] = {}
        self._guard = threading.Lock()

    def _lock_for(self, key: tuple[str, str]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _backoff_for(self, key: tuple[str, str]) -> WriteBackoff:
        with self._guard:
            return self._backoffs.setdefault(key, WriteBackoff(self._monotonic))

    def forget(self, namespace: str, name: str) -> None:
        """Drop per-model state once the model is deleted."""
        with self._guard:
            self._locks.pop((namespace, name), None)
            self._backoffs.pop((namespace, name), None)
        forget_model(namespace, name)

    def reconcile(self, namespace: str, name: str, trigger: str = "event") -> Outcome | None:
        """One pass for one model; None when the model no longer exists."""
        RECONCILES.labels(trigger=trigger).inc()
        started = time.perf_counter()
        try:
            with self._lock_for((namespace, name)):
                outcome = self._pass(namespace, name)
            if outcome is not None:
                _log.debug("pass %s/%s (%s): %d write(s)", namespace, name, trigger, outcome.writes)
            return outcome
        except Exception as exc:
            RECONCILE_ERRORS.labels(error=type(exc).__name__).inc()
            raise
        finally:
            RECONCILE_SECONDS.observe(time.perf_counter() - started)

    def _pass(self, namespace: str, name: str) -> Outcome | None:
        kube = self.kube
        writes_before = kube.thread_writes()
        body = kube.get_model(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        now = self._clock()
        raw_status = body.get("status") or {}
        try:
            previous: InferenceModelStatus | None = InferenceModelStatus.model_validate(raw_status)
        except ValidationError:
            previous = None  # written by an older operator; rebuilt from scratch below
        generation = int(body["metadata"].get("generation", 1))
        try:
            return self._converge(body, raw_status, previous, generation, now, writes_before)
        except Exception as exc:
            # Whatever broke this pass, the model says so: no code path leaves status empty.
            message = f"reconcile failed, retrying: {type(exc).__name__}: {exc}"
            report = retrying_status(previous, generation, message[:2048], now=now)
            try:
                self._publish(body, raw_status, report, now)
            except Exception:
                _log.warning("could not publish status of %s/%s", namespace, name, exc_info=True)
            raise

    def _converge(
        self,
        body: Mapping[str, Any],
        raw_status: Mapping[str, Any],
        previous: InferenceModelStatus | None,
        generation: int,
        now: str,
        writes_before: int,
    ) -> Outcome:
        kube = self.kube
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            model = InferenceModel.from_body(body)
        except ValidationError as err:
            problem: str | None = describe_validation_error(err)
        else:
            problems = (kube.missing(namespace, ref) for ref in references_of(model))
            problem = "; ".join(p for p in problems if p) or None
        if problem is not None:
            report = invalid_status(previous, generation, problem, now=now)
            self._publish(body, raw_status, report, now)
            return Outcome(kube.thread_writes() - writes_before, None, report.status)

        rollout_spec = model.spec.rollout
        gateway = rollout_spec is not None and rollout_spec.traffic.mode == "GatewayAPI"
        try:
            observed = kube.observe(namespace, name, model.uid, with_routes=gateway)
        except MissingPermission as err:
            report = invalid_status(
                previous, generation, str(err), now=now, reason="MissingPermission"
            )
            self._publish(body, raw_status, report, now)
            return Outcome(kube.thread_writes() - writes_before, None, report.status)
        backoff = self._backoff_for((namespace, name))
        backoff.generation(generation)
        rollout = self._decide_rollout(model, observed, previous, body, parse_time(now), backoff)
        decided = plan(model, observed, rollout)
        failures = self._execute(model, observed.find, decided, backoff)
        report = compute_status(
            model, observed, decided, previous, now=now, rollout=rollout, failures=failures
        )
        if rollout is not None and rollout.events:
            told = {e.reason for e in rollout.events}
            # "Promoted" already tells that the new revision serves.
            own = [e for e in report.events if not (e.reason == "Serving" and "Promoted" in told)]
            report = StatusReport(report.status, [*rollout.events, *own])
            for event in rollout.events:
                if event.reason == "RolledBack":
                    ROLLBACKS.labels(namespace, name).inc()
                elif event.reason == "Promoted":
                    PROMOTIONS.labels(namespace, name).inc()
        if decided.promoted and rollout is None:  # a rollout announces its own promotion
            promoted = Event(
                "Normal",
                "Promoted",
                f"revision {decided.desired_revision} (model {model.spec.model.version}) "
                "is now stable",
            )
            own = [e for e in report.events if e.reason != "Serving"]
            report = StatusReport(report.status, [promoted, *own])
        self._publish(body, raw_status, report, now)
        due = [
            t
            for t in (
                rollout.requeue_after if rollout is not None else None,
                backoff.next_retry_in(),
            )
            if t is not None
        ]
        return Outcome(
            kube.thread_writes() - writes_before,
            decided,
            report.status,
            min(due) if due else None,
        )

    def _decide_rollout(
        self,
        model: InferenceModel,
        observed: Observed,
        previous: InferenceModelStatus | None,
        body: Mapping[str, Any],
        now: datetime,
        backoff: WriteBackoff,
    ) -> RolloutDecision | None:
        """The canary decision, when the model has spec.rollout and a stable revision."""
        spec = model.spec.rollout
        stable = observed.stable()
        if spec is None or stable is None:
            return None
        window = spec.analysis.interval_seconds
        prometheus = spec.analysis.prometheus_url or self._prometheus_url

        def analyze(step: int) -> AnalysisRun:
            target = AnalysisTarget(model.namespace, model.name, revision_of(model), window)

            def fetch(query: str) -> float | None:
                if not prometheus:
                    raise PrometheusError(
                        "no Prometheus configured: set spec.rollout.analysis.prometheusUrl "
                        "or the operator's KINFER_PROMETHEUS_URL"
                    )
                return query_value(prometheus, query)

            run = run_analysis(spec.analysis, target, fetch, step=step, now=format_time(now))
            ANALYSES.labels(model.namespace, model.name, run.decision).inc()
            return run

        route = observed.find("HTTPRoute", model.name)
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
                now=now,
                annotations=body["metadata"].get("annotations") or {},
                analyze=analyze,
                route_problem=(lambda w: route_problem(route, w))
                if spec.traffic.mode == "GatewayAPI"
                else (lambda _w: None),
                refused=canary_write.describe()
                if canary_write is not None and canary_write.permanent
                else None,
            )
        )

    def _execute(
        self,
        model: InferenceModel,
        observed_find: Callable[[str, str], Mapping[str, Any] | None],
        decided: Plan,
        backoff: WriteBackoff,
    ) -> list[WriteFailure]:
        """Write what differs; returns the writes that failed or still back off.

        A failed write does not stop the others: a refused Deployment must not keep the
        Service or the cleanup of old revisions from happening.
        """
        kube = self.kube
        failures: list[WriteFailure] = []
        wanted: list[WriteKey] = []

        def write(key: WriteKey, digest: str, action: Callable[[], Any]) -> tuple[bool, Any]:
            wanted.append(key)
            waiting = backoff.waiting(key, digest)
            if waiting is not None:
                failures.append(waiting)
                return False, None
            try:
                result = action()
            except WriteError as err:
                delay = backoff.failed(key, digest, err.failure)
                _log.warning(
                    "%s/%s: %s (next attempt in %.0fs)",
                    model.namespace,
                    model.name,
                    err.failure.describe(),
                    delay,
                )
                failures.append(err.failure)
                return False, None
            backoff.succeeded(key)
            return True, result

        replicas_now: dict[str, int] = {}
        for desired in decided.applies:
            kind, obj_name = desired["kind"], desired["metadata"]["name"]
            current = observed_find(kind, obj_name)
            if needs_apply(desired, current):
                _log.info("applying %s %s/%s", kind, model.namespace, obj_name)
                digest = desired["metadata"]["annotations"][HASH_ANNOTATION]
                done, applied = write(
                    ("apply", kind, obj_name), digest, partial(kube.apply, desired)
                )
                if done:
                    current = applied
            if kind == "Deployment" and current is not None:
                replicas_now[obj_name] = int(current.get("spec", {}).get("replicas", 1))
        for scale in decided.scales:
            current_obj = observed_find("Deployment", scale.name)
            have = replicas_now.get(scale.name)
            if have is None and current_obj is None:
                continue  # not there (its apply failed): nothing to scale yet
            if have is None and current_obj is not None:
                have = int(current_obj.get("spec", {}).get("replicas", 1))
            if have != scale.replicas:
                _log.info("scaling %s/%s to %d", model.namespace, scale.name, scale.replicas)
                write(
                    ("scale", "Deployment", scale.name),
                    str(scale.replicas),
                    partial(kube.scale, model.namespace, scale.name, scale.replicas),
                )
        for delete in decided.deletes:
            _log.info("deleting %s %s/%s", delete.kind, model.namespace, delete.name)
            write(
                ("delete", delete.kind, delete.name),
                "",
                partial(kube.delete, model.namespace, delete.kind, delete.name),
            )
        backoff.keep_only(wanted)
        return failures

    def _publish(
        self, body: Mapping[str, Any], raw_status: Mapping[str, Any], report: StatusReport, now: str
    ) -> None:
        meta = body["metadata"]
        record_model(
            meta["namespace"], meta["name"], report.status.conditions, report.status.canary_weight
        )
        new = report.status.model_dump(by_alias=True, exclude_none=True)
        if new != dict(raw_status):
            self.kube.patch_model_status(
                body["metadata"]["namespace"],
                body["metadata"]["name"],
                _status_patch(raw_status, new),
            )
        for event in report.events:
            self.kube.post_event(body, event.type, event.reason, event.message, now)

"""The operator's own Prometheus metrics (served by `kinfer-operator --metrics-port`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from kinfer_operator.api.status import Condition

__all__ = [
    "ANALYSES",
    "API_REQUESTS",
    "API_WRITES",
    "API_WRITE_FAILURES",
    "CACHE_OBJECTS",
    "CANARY_WEIGHT",
    "LEADER",
    "MODEL_CONDITION",
    "PROMOTIONS",
    "QUEUE_DELAYED",
    "QUEUE_DEPTH",
    "QUEUE_RETRIES",
    "RECONCILES",
    "RECONCILE_ERRORS",
    "RECONCILE_SECONDS",
    "ROLLBACKS",
    "forget_model",
    "record_model",
]

RECONCILES = Counter(
    "kinfer_operator_reconciles_total", "Reconcile passes, by trigger.", ["trigger"]
)
RECONCILE_ERRORS = Counter(
    "kinfer_operator_reconcile_errors_total",
    "Reconcile passes that raised, by exception type.",
    ["error"],
)
RECONCILE_SECONDS = Histogram(
    "kinfer_operator_reconcile_duration_seconds",
    "Wall time of one reconcile pass.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
API_REQUESTS = Counter(
    "kinfer_operator_api_requests_total",
    "Calls to the Kubernetes API outside kopf's watches, by verb and kind; reconcile passes "
    "read from the informer cache, so this stays flat while nothing changes.",
    ["verb", "kind"],
)
API_WRITES = Counter(
    "kinfer_operator_api_writes_total",
    "Write calls to the Kubernetes API, by verb and kind; flat when nothing changes.",
    ["verb", "kind"],
)
API_WRITE_FAILURES = Counter(
    "kinfer_operator_api_write_failures_total",
    "Writes of children the API server did not take, by verb, kind and HTTP status "
    "(0: no answer); 4xx become Degraded/ChildRejected, the rest are retried.",
    ["verb", "kind", "code"],
)

QUEUE_DEPTH = Gauge(
    "kinfer_operator_workqueue_depth", "Models waiting for a reconcile worker right now."
)
QUEUE_DELAYED = Gauge(
    "kinfer_operator_workqueue_delayed", "Models with a reconcile scheduled for later."
)
QUEUE_RETRIES = Counter(
    "kinfer_operator_workqueue_retries_total", "Passes that failed and were requeued with backoff."
)
CACHE_OBJECTS = Gauge(
    "kinfer_operator_cache_objects", "Objects held in the informer cache, by kind.", ["kind"]
)
LEADER = Gauge(
    "kinfer_operator_leader",
    "1 on the replica that holds the leader-election Lease and may act (or runs standalone), "
    "0 on a standby.",
)

MODEL_CONDITION = Gauge(
    "kinfer_operator_model_condition",
    "1 when the InferenceModel's condition is True, else 0; one series per current reason.",
    ["namespace", "name", "type", "reason"],
)
CANARY_WEIGHT = Gauge(
    "kinfer_operator_canary_weight",
    "Percent of traffic on the canary revision (0 without a rollout).",
    ["namespace", "name"],
)
ANALYSES = Counter(
    "kinfer_operator_analysis_total",
    "Canary analyses, by decision (Pass, Fail, Inconclusive, Error).",
    ["namespace", "name", "decision"],
)
ROLLBACKS = Counter("kinfer_operator_rollbacks_total", "Canary rollbacks.", ["namespace", "name"])
PROMOTIONS = Counter(
    "kinfer_operator_promotions_total", "Canary promotions.", ["namespace", "name"]
)

_reasons: dict[tuple[str, str, str], str] = {}


def record_model(
    namespace: str, name: str, conditions: Iterable[Condition], canary_weight: int | None
) -> None:
    """Publish a model's conditions and canary weight, dropping series of replaced reasons."""
    for cond in conditions:
        key = (namespace, name, cond.type)
        old = _reasons.get(key)
        if old is not None and old != cond.reason:
            MODEL_CONDITION.remove(namespace, name, cond.type, old)
        _reasons[key] = cond.reason
        MODEL_CONDITION.labels(namespace, name, cond.type, cond.reason).set(
            1 if cond.status == "True" else 0
        )
    CANARY_WEIGHT.labels(namespace, name).set(canary_weight or 0)


def forget_model(namespace: str, name: str) -> None:
    """Remove a deleted model's gauges so dashboards do not show it forever."""
    for key, reason in list(_reasons.items()):
        if key[:2] == (namespace, name):
            MODEL_CONDITION.remove(namespace, name, key[2], reason)
            del _reasons[key]
    with contextlib.suppress(KeyError):  # never published: no canary ever ran
        CANARY_WEIGHT.remove(namespace, name)

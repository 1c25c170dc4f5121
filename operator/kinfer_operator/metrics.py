"""The operator's own Prometheus metrics (served by `kinfer-operator --metrics-port`)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = ["API_WRITES", "RECONCILES", "RECONCILE_ERRORS", "RECONCILE_SECONDS"]

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
API_WRITES = Counter(
    "kinfer_operator_api_writes_total",
    "Write calls to the Kubernetes API, by verb and kind; flat when nothing changes.",
    ["verb", "kind"],
)

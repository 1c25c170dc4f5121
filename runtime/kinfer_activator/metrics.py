"""The activator's own metrics, in a registry of their own (tests build many activators)."""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "COLD_START_SECONDS",
    "FORWARDED_REQUESTS_TOTAL",
    "HELD_REQUESTS",
    "REJECTED_REQUESTS_TOTAL",
    "WAKE_REQUESTS_TOTAL",
    "ActivatorMetrics",
]

COLD_START_SECONDS: Final = "kinfer_cold_start_seconds"
HELD_REQUESTS: Final = "kinfer_activator_held_requests"
FORWARDED_REQUESTS_TOTAL: Final = "kinfer_activator_forwarded_requests_total"  # + label `code`
REJECTED_REQUESTS_TOTAL: Final = "kinfer_activator_rejected_requests_total"  # + label `reason`
WAKE_REQUESTS_TOTAL: Final = "kinfer_activator_wake_requests_total"

LABELS: Final = ("namespace", "model")
# A warm pod answers in ms; a GPU cold start takes tens of seconds, up to maxHoldSeconds.
_COLD_BUCKETS: Final = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class ActivatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.cold_start = Histogram(
            COLD_START_SECONDS,
            "Time a request was held by the activator while its model had no Ready pod.",
            LABELS,
            buckets=_COLD_BUCKETS,
            registry=self.registry,
        )
        self.held = Gauge(
            HELD_REQUESTS, "Requests held now, waiting for a pod.", LABELS, registry=self.registry
        )
        self.forwarded = Counter(
            FORWARDED_REQUESTS_TOTAL,
            "Requests forwarded to a runtime pod, by the HTTP status it answered (502: none) or,"
            " over gRPC, the status code name.",
            [*LABELS, "code"],
            registry=self.registry,
        )
        self.rejected = Counter(
            REJECTED_REQUESTS_TOTAL,
            "Requests answered 503 by the activator: queue_full or hold_timeout.",
            [*LABELS, "reason"],
            registry=self.registry,
        )
        self.wakes = Counter(
            WAKE_REQUESTS_TOTAL,
            "Scale-ups the activator asked of a model's stable Deployment.",
            LABELS,
            registry=self.registry,
        )

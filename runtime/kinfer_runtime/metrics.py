"""Prometheus metrics. THE NAMES AND LABELS BELOW ARE PUBLIC API.

Canary analysis and the HorizontalPodAutoscaler query these series by name; renaming one, or
changing its labels, breaks rollouts. Every series carries `model`, `version` and `revision`
(the operator's KINFER_REVISION), so two revisions of one model are told apart.
"""

from collections.abc import Sequence
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kinfer_runtime._gpu_metrics import GpuCollector

__all__ = [
    "BATCH_SIZE",
    "GPU_MEMORY_USED_BYTES",
    "GPU_UTILIZATION_RATIO",
    "INFLIGHT_REQUESTS",
    "LABELS",
    "MODEL_LOAD_SECONDS",
    "QUEUE_DEPTH",
    "QUEUE_WAIT_SECONDS",
    "REQUESTS_TOTAL",
    "REQUEST_DURATION_SECONDS",
    "RuntimeMetrics",
]

REQUESTS_TOTAL: Final = "kinfer_requests_total"  # + label `code`: the HTTP status, as a string
REQUEST_DURATION_SECONDS: Final = "kinfer_request_duration_seconds"
QUEUE_WAIT_SECONDS: Final = "kinfer_queue_wait_seconds"
BATCH_SIZE: Final = "kinfer_batch_size"
INFLIGHT_REQUESTS: Final = "kinfer_inflight_requests"
QUEUE_DEPTH: Final = "kinfer_queue_depth"
MODEL_LOAD_SECONDS: Final = "kinfer_model_load_seconds"
GPU_MEMORY_USED_BYTES: Final = "kinfer_gpu_memory_used_bytes"  # + label `device`
GPU_UTILIZATION_RATIO: Final = "kinfer_gpu_utilization_ratio"  # + label `device`

LABELS: Final = ("model", "version", "revision")

# From a fast GPU kernel (~1 ms) to a request that sat out a long queue (30 s).
_LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
_QUEUE_BUCKETS: Final = (0.0001, 0.00025, 0.0005, *_LATENCY_BUCKETS)
_BATCH_BUCKETS: Final = tuple(float(2**i) for i in range(11))  # 1 .. 1024


class RuntimeMetrics:
    """The metrics of one served model, in a registry of their own (tests build many)."""

    def __init__(self, model: str, version: str, revision: str) -> None:
        self.registry = CollectorRegistry()
        self._label_values = (model, version, revision)
        values = self._label_values
        self._requests = Counter(
            REQUESTS_TOTAL,
            "Inference requests by HTTP status code.",
            [*LABELS, "code"],
            registry=self.registry,
        )
        self._codes: dict[int, Counter] = {}
        self.request_duration = Histogram(
            REQUEST_DURATION_SECONDS,
            "Inference request latency, from receipt to response.",
            LABELS,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        ).labels(*values)
        self._queue_wait = Histogram(
            QUEUE_WAIT_SECONDS,
            "Time a request waited in the batch queue before its batch started.",
            LABELS,
            buckets=_QUEUE_BUCKETS,
            registry=self.registry,
        ).labels(*values)
        self._batch_size = Histogram(
            BATCH_SIZE,
            "Rows per executed batch (padding excluded).",
            LABELS,
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        ).labels(*values)
        self.inflight = Gauge(
            INFLIGHT_REQUESTS,
            "Inference requests being handled: queued and executing.",
            LABELS,
            registry=self.registry,
        ).labels(*values)
        self._queue_depth = Gauge(
            QUEUE_DEPTH,
            "Requests waiting in the batch queue.",
            LABELS,
            registry=self.registry,
        ).labels(*values)
        self.model_load_seconds = Gauge(
            MODEL_LOAD_SECONDS,
            "Seconds taken to fetch, load and warm up the model.",
            LABELS,
            registry=self.registry,
        ).labels(*values)

    def request_done(self, status: int, seconds: float) -> None:
        counter = self._codes.get(status)
        if counter is None:
            counter = self._codes[status] = self._requests.labels(*self._label_values, str(status))
        counter.inc()
        self.request_duration.observe(seconds)

    # The batcher's observer interface (dataplane.batcher.BatchObserver).
    def batch_executed(self, rows: int, queue_waits: Sequence[float]) -> None:
        self._batch_size.observe(rows)
        for wait in queue_waits:
            self._queue_wait.observe(wait)

    def queue_depth(self, depth: int) -> None:
        self._queue_depth.set(depth)

    def watch_gpu(self, device_index: int) -> None:
        """Adds the GPU gauges; called only once a model is running on a GPU."""
        self.registry.register(
            GpuCollector(
                device_index,
                self._label_values,
                memory_name=GPU_MEMORY_USED_BYTES,
                utilization_name=GPU_UTILIZATION_RATIO,
                labels=LABELS,
            )
        )

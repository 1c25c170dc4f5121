"""Prometheus metrics. THE NAMES AND LABELS BELOW ARE PUBLIC API.

Canary analysis and the HorizontalPodAutoscaler query these series by name; renaming one, or
changing its labels, breaks rollouts. Every series carries `model`, `version` and `revision`
(the operator's KINFER_REVISION), so two revisions of one model are told apart.

Labels may be added to a series (queries that aggregate with `sum` keep working), never
removed or renamed: requests carry `protocol` (rest or grpc) and `source` (live, or shadow
for requests a stable runtime mirrored here), queue waits `priority`.
"""

import time
from collections.abc import Sequence
from typing import Final, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kinfer_runtime._gpu_metrics import GpuCollector

__all__ = [
    "BATCH_SIZE",
    "GPU_MEMORY_USED_BYTES",
    "GPU_UTILIZATION_RATIO",
    "INFLIGHT_REQUESTS",
    "LABELS",
    "MODEL_DOWNLOAD_BYTES",
    "MODEL_DOWNLOAD_SECONDS",
    "MODEL_LOAD_SECONDS",
    "PINNED_REQUESTS_TOTAL",
    "PINNED_REQUEST_DURATION_SECONDS",
    "QUEUE_DEPTH",
    "QUEUE_WAIT_SECONDS",
    "REJECTED_REQUESTS_TOTAL",
    "REQUESTS_TOTAL",
    "REQUEST_DURATION_SECONDS",
    "SHADOW_QUEUE_DEPTH",
    "SHADOW_REQUESTS_TOTAL",
    "WARMUP_REQUEST_DURATION_SECONDS",
    "RuntimeMetrics",
    "ShadowResult",
    "Source",
    "WireProtocol",
]

# + labels `protocol` and `code`: the HTTP status, as a string. A gRPC request counts with the
# HTTP status its outcome has over REST (200, 400, 404, 503...), so that error-rate queries
# such as the canary analysis's `code!~"2.."` see both protocols alike; a gRPC call cancelled
# by its client (or its deadline) is 499, nginx's "client closed request".
REQUESTS_TOTAL: Final = "kinfer_requests_total"
# + labels `protocol` and `source`
REQUEST_DURATION_SECONDS: Final = "kinfer_request_duration_seconds"
QUEUE_WAIT_SECONDS: Final = "kinfer_queue_wait_seconds"  # + label `priority`
# The latencies of the first KINFER_WARMUP_WINDOW_S seconds after Ready (labels as above):
# recorded here INSTEAD of kinfer_request_duration_seconds, so that latency analysis (built-in
# or custom) never sees a pod's warm-up. Their requests still count in kinfer_requests_total.
WARMUP_REQUEST_DURATION_SECONDS: Final = "kinfer_warmup_request_duration_seconds"
# Requests a gateway pinned to this revision by header (spec.rollout.traffic.pin), marked by
# the HTTPRoute (routes.inference.PINNED_MARKER_HEADER): counted here INSTEAD of the two series
# above, so testers reaching a canary on demand never skew its weight-based analysis.
PINNED_REQUESTS_TOTAL: Final = "kinfer_pinned_requests_total"  # + labels `protocol`, `code`
PINNED_REQUEST_DURATION_SECONDS: Final = "kinfer_pinned_request_duration_seconds"
# + labels `reason` (queue_full, queue_timeout, request_timeout) and `priority`
REJECTED_REQUESTS_TOTAL: Final = "kinfer_rejected_requests_total"
BATCH_SIZE: Final = "kinfer_batch_size"
INFLIGHT_REQUESTS: Final = "kinfer_inflight_requests"
QUEUE_DEPTH: Final = "kinfer_queue_depth"
MODEL_LOAD_SECONDS: Final = "kinfer_model_load_seconds"
MODEL_DOWNLOAD_SECONDS: Final = "kinfer_model_download_seconds"
MODEL_DOWNLOAD_BYTES: Final = "kinfer_model_download_bytes"
GPU_MEMORY_USED_BYTES: Final = "kinfer_gpu_memory_used_bytes"  # + label `device`
GPU_UTILIZATION_RATIO: Final = "kinfer_gpu_utilization_ratio"  # + label `device`
# On the mirroring (stable) side: + label `result` (mirrored, failed, dropped).
SHADOW_REQUESTS_TOTAL: Final = "kinfer_shadow_requests_total"
SHADOW_QUEUE_DEPTH: Final = "kinfer_shadow_queue_depth"
# The response cache (dataplane.response_cache); all stay 0 without one.
RESPONSE_CACHE_HITS_TOTAL: Final = "kinfer_response_cache_hits_total"
RESPONSE_CACHE_MISSES_TOTAL: Final = "kinfer_response_cache_misses_total"
RESPONSE_CACHE_EVICTIONS_TOTAL: Final = "kinfer_response_cache_evictions_total"
RESPONSE_CACHE_BYTES: Final = "kinfer_response_cache_bytes"

LABELS: Final = ("model", "version", "revision")

# From a fast GPU kernel (~1 ms) to a request that sat out a long queue (30 s).
_LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
_QUEUE_BUCKETS: Final = (0.0001, 0.00025, 0.0005, *_LATENCY_BUCKETS)
_BATCH_BUCKETS: Final = tuple(float(2**i) for i in range(11))  # 1 .. 1024

WireProtocol = Literal["rest", "grpc"]
Source = Literal["live", "shadow", "cold_start"]
"""cold_start: a request the activator held while the model had no Ready pod (its marker
counts on the classified port only); canary analysis leaves these out, idle detection not."""
ShadowResult = Literal["mirrored", "failed", "dropped"]


class RuntimeMetrics:
    """The metrics of one served model, in a registry of their own (tests build many)."""

    def __init__(self, model: str, version: str, revision: str) -> None:
        self.registry = CollectorRegistry()
        self._label_values = (model, version, revision)
        values = self._label_values
        self._requests = Counter(
            REQUESTS_TOTAL,
            "Inference requests by protocol, source (live or shadow) and HTTP status code.",
            [*LABELS, "protocol", "source", "code"],
            registry=self.registry,
        )
        self._codes: dict[tuple[WireProtocol, Source, int], Counter] = {}
        self._request_duration = Histogram(
            REQUEST_DURATION_SECONDS,
            "Inference request latency, from receipt to response.",
            [*LABELS, "protocol", "source"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._durations: dict[tuple[WireProtocol, Source], Histogram] = {}
        self._warmup_duration = Histogram(
            WARMUP_REQUEST_DURATION_SECONDS,
            "Inference request latency during the warm-up window after Ready (not analysed).",
            [*LABELS, "protocol", "source"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._warm_until: float | None = None  # time.monotonic(); None: warm
        self._pinned = Counter(
            PINNED_REQUESTS_TOTAL,
            "Inference requests pinned to this revision by header, by protocol and status.",
            [*LABELS, "protocol", "code"],
            registry=self.registry,
        )
        self._pinned_duration = Histogram(
            PINNED_REQUEST_DURATION_SECONDS,
            "Latency of requests pinned to this revision by header.",
            [*LABELS, "protocol"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._queue_wait = Histogram(
            QUEUE_WAIT_SECONDS,
            "Time a request waited in the batch queue before its batch started.",
            [*LABELS, "priority"],
            buckets=_QUEUE_BUCKETS,
            registry=self.registry,
        )
        self._queue_waits: dict[int, Histogram] = {}
        self._rejected = Counter(
            REJECTED_REQUESTS_TOTAL,
            "Requests the batch queue turned away, by reason and priority level.",
            [*LABELS, "reason", "priority"],
            registry=self.registry,
        )
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
        self._shadow = Counter(
            SHADOW_REQUESTS_TOTAL,
            "Answered requests this runtime copied to a shadow (candidate) revision, by result: "
            "mirrored (the candidate answered), failed (no answer in time), dropped (queue full).",
            [*LABELS, "result"],
            registry=self.registry,
        )
        self._shadow_queue = Gauge(
            SHADOW_QUEUE_DEPTH,
            "Mirrored requests waiting to be sent to the shadow revision.",
            LABELS,
            registry=self.registry,
        ).labels(*values)
        self._cache_hits = Counter(
            RESPONSE_CACHE_HITS_TOTAL,
            "Requests the response cache answered (the model did not run).",
            LABELS,
            registry=self.registry,
        ).labels(*values)
        self._cache_misses = Counter(
            RESPONSE_CACHE_MISSES_TOTAL,
            "Requests the response cache did not hold (they ran the model).",
            LABELS,
            registry=self.registry,
        ).labels(*values)
        self._cache_evictions = Counter(
            RESPONSE_CACHE_EVICTIONS_TOTAL,
            "Entries the response cache dropped, least recently used first, to stay in bounds.",
            LABELS,
            registry=self.registry,
        ).labels(*values)
        self._cache_bytes = Gauge(
            RESPONSE_CACHE_BYTES,
            "Bytes of model outputs the response cache holds.",
            LABELS,
            registry=self.registry,
        ).labels(*values)
        # Both stay 0 when the model came from a path or the shared cache: nothing downloaded.
        self.model_download_seconds = Gauge(
            MODEL_DOWNLOAD_SECONDS,
            "Seconds spent downloading the model file (so far, while it downloads).",
            LABELS,
            registry=self.registry,
        ).labels(*values)
        self.model_download_bytes = Gauge(
            MODEL_DOWNLOAD_BYTES,
            "Bytes of the model file downloaded (so far, while it downloads).",
            LABELS,
            registry=self.registry,
        ).labels(*values)

    def request_done(
        self,
        status: int,
        seconds: float,
        protocol: WireProtocol = "rest",
        source: Source = "live",
    ) -> None:
        key = (protocol, source, status)
        counter = self._codes.get(key)
        if counter is None:
            counter = self._requests.labels(*self._label_values, protocol, source, str(status))
            self._codes[key] = counter
        counter.inc()
        if self._warm_until is not None:
            if time.monotonic() < self._warm_until:
                self._warmup_duration.labels(*self._label_values, protocol, source).observe(seconds)
                return
            self._warm_until = None
        duration = self._durations.get((protocol, source))
        if duration is None:
            duration = self._durations[(protocol, source)] = self._request_duration.labels(
                *self._label_values, protocol, source
            )
        duration.observe(seconds)

    def start_warmup_window(self, seconds: float) -> None:
        """Called on Ready: the next `seconds` of request latencies are warm-up."""
        self._warm_until = time.monotonic() + seconds if seconds > 0 else None

    @property
    def warming_up(self) -> bool:
        return self._warm_until is not None and time.monotonic() < self._warm_until

    def shadow_done(self, result: ShadowResult) -> None:
        self._shadow.labels(*self._label_values, result).inc()

    def shadow_queue_depth(self, depth: int) -> None:
        self._shadow_queue.set(depth)

    def pinned_request_done(
        self, status: int, seconds: float, protocol: WireProtocol = "rest"
    ) -> None:
        """A request the gateway pinned here: counted apart from the analysed traffic."""
        values = self._label_values
        self._pinned.labels(*values, protocol, str(status)).inc()
        self._pinned_duration.labels(*values, protocol).observe(seconds)

    # The batcher's observer interface (dataplane.batcher.BatchObserver).
    def batch_executed(self, rows: int, queue_waits: Sequence[tuple[int, float]]) -> None:
        self._batch_size.observe(rows)
        for priority, wait in queue_waits:
            histogram = self._queue_waits.get(priority)
            if histogram is None:
                histogram = self._queue_wait.labels(*self._label_values, str(priority))
                self._queue_waits[priority] = histogram
            histogram.observe(wait)

    def cache_hit(self) -> None:
        self._cache_hits.inc()

    def cache_miss(self) -> None:
        self._cache_misses.inc()

    def cache_evicted(self, count: int) -> None:
        self._cache_evictions.inc(count)

    def cache_bytes(self, size: int) -> None:
        self._cache_bytes.set(size)

    def queue_depth(self, depth: int) -> None:
        self._queue_depth.set(depth)

    def request_rejected(self, reason: str, priority: int) -> None:
        self._rejected.labels(*self._label_values, reason, str(priority)).inc()

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

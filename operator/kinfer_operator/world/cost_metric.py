"""`kinfer_gpu_seconds_total{namespace, model, revision}`, computed at scrape time.

A collector rather than a Counter incremented by passes: the figure grows with the clock,
and passes run only when something changes. Each scrape adds the ledger's deleted pods to
the live pods in the informer cache, so after a restart the counter is rebuilt from status
and pod start times, never double-counted.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from kinfer_operator.world.cost import CostLedger, pod_usage, resource_name_of
from kinfer_operator.world.store import Store

__all__ = ["GPU_SECONDS_METRIC", "GpuSecondsCollector"]

GPU_SECONDS_METRIC = "kinfer_gpu_seconds"
"""Exposed as kinfer_gpu_seconds_total (a counter)."""
_HELP = "GPU-seconds held by started pods of each model revision (GPU request x lifetime)."
_LABELS = ["namespace", "model", "revision"]


class GpuSecondsCollector(Collector):
    """Reads the cache and the ledger; never calls the API server."""

    def __init__(
        self, store: Store, ledger: CostLedger, clock: Callable[[], float] = time.time
    ) -> None:
        self._store, self._ledger, self._clock = store, ledger, clock
        self._last: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(GPU_SECONDS_METRIC, _HELP, labels=_LABELS)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(GPU_SECONDS_METRIC, _HELP, labels=_LABELS)
        # Whole seconds, as the ledger keeps them: a pod's figure then never drops when it
        # moves from live to retired, nor when a restarted operator rebuilds it.
        now = math.floor(self._clock())
        seen: dict[tuple[str, str, str], float] = {}
        models = set(self._store.models())
        for namespace, name in models:
            model = self._store.model(namespace, name)
            if model is None:
                continue
            uid = str(model["metadata"].get("uid", ""))
            resource = resource_name_of(model)
            # Pods before the ledger: a pod deleted in between is missed once, not counted twice.
            pods = self._store.observe(namespace, name, uid).pods
            totals: dict[str, float] = {}
            for pod in pods:
                use = pod_usage(pod, resource)
                if use.gpus and use.start is not None:
                    totals[use.revision] = totals.get(use.revision, 0.0) + use.seconds(now)
            for revision, retired in self._ledger.retired(model).items():
                totals[revision] = totals.get(revision, 0.0) + retired
            for revision, total in totals.items():
                seen[(namespace, name, revision)] = total
        with self._lock:
            # A counter never goes back: a pod's end time may be reported a second earlier
            # than a previous scrape assumed, or missed for one scrape while it is retired.
            for series, last in self._last.items():
                if series[:2] in models:  # a series stays while its model exists
                    seen[series] = max(last, seen.get(series, 0.0))
            self._last = seen
        for (namespace, name, revision), seconds in sorted(seen.items()):
            family.add_metric([namespace, name, revision], seconds)
        yield family

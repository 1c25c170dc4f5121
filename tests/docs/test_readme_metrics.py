"""The README's two metric lists name exactly what the runtime and the operator export, each
once (a merge once left the runtime's list with several metrics twice and some missing).

Exported names come from the prometheus_client collectors themselves, never from a list here.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from kinfer_activator.metrics import ActivatorMetrics
from kinfer_operator import metrics as operator_metrics
from kinfer_operator.world import Store
from kinfer_operator.world.cost import CostLedger
from kinfer_operator.world.cost_metric import GpuSecondsCollector
from kinfer_runtime._gpu_metrics import GpuCollector
from kinfer_runtime.metrics import (
    GPU_MEMORY_USED_BYTES,
    GPU_UTILIZATION_RATIO,
    LABELS,
    RuntimeMetrics,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

README = Path(__file__).resolve().parents[2] / "README.md"


class _ReadingGpu(GpuCollector):
    """The runtime's GPU collector with a reading, so its families show without a GPU."""

    def _read(self) -> tuple[float | None, float | None]:
        return 1.0, 0.5


def _documented_name(family: Metric) -> str:
    """The name a user queries: prometheus_client keeps a counter's family name without
    `_total`."""
    return f"{family.name}_total" if family.type == "counter" else family.name


def _names(families: Iterable[Metric]) -> set[str]:
    return {_documented_name(f) for f in families}


def runtime_exports() -> set[str]:
    gpu = _ReadingGpu(
        0,
        ("m", "1", "r"),
        memory_name=GPU_MEMORY_USED_BYTES,
        utilization_name=GPU_UTILIZATION_RATIO,
        labels=LABELS,
    )
    return _names(RuntimeMetrics("m", "1", "r").registry.collect()) | _names(gpu.collect())


def operator_exports() -> set[str]:
    wrappers = [v for v in vars(operator_metrics).values() if isinstance(v, MetricWrapperBase)]
    families = [f for w in wrappers for f in w.describe()]
    return _names(families) | _names(GpuSecondsCollector(Store(), CostLedger()).describe())


def _block(text: str, start: str, end: str) -> str:
    begin = text.index(start)
    return text[begin : text.index(end, begin + len(start))]


def listed(block: str) -> Counter[str]:
    """Metric names written in a block, counted (`name{labels}` counts as `name`)."""
    return Counter(re.findall(r"`(kinfer_[a-z0-9_]+)(?:\{[a-z_,]*\})?`", block))


def _runtime_list() -> Counter[str]:
    return listed(_block(README.read_text(), "* **Metrics**", "\n* **"))


def _operator_list() -> Counter[str]:
    return listed(_block(README.read_text(), "**Operator metrics**", "\n\n"))


def test_listing_counts_labelled_and_bare_names_alike() -> None:
    block = "`kinfer_a_total{x,y}`, `kinfer_b` and `kinfer_a_total`; {`model`} kinfer_c"
    assert listed(block) == Counter({"kinfer_a_total": 2, "kinfer_b": 1})


def test_exports_are_read_from_the_collectors() -> None:
    assert {"kinfer_requests_total", "kinfer_batch_size", "kinfer_gpu_memory_used_bytes"} <= (
        runtime_exports()
    )
    assert {"kinfer_operator_reconciles_total", "kinfer_gpu_seconds_total"} <= operator_exports()


def test_readme_runtime_metrics_are_exactly_the_runtime_exports_each_once() -> None:
    names = _runtime_list()
    assert [n for n, c in names.items() if c > 1] == [], "listed more than once"
    assert set(names) == runtime_exports()


def test_readme_operator_metrics_are_exactly_the_operator_exports_each_once() -> None:
    names = _operator_list()
    assert [n for n, c in names.items() if c > 1] == [], "listed more than once"
    assert set(names) == operator_exports()


def activator_exports() -> set[str]:
    return _names(ActivatorMetrics().registry.collect())


def test_readme_activator_metrics_are_exactly_the_activator_exports_each_once() -> None:
    names = listed(_block(README.read_text(), "**Activator metrics**", "\n\n"))
    assert [n for n, c in names.items() if c > 1] == [], "listed more than once"
    assert set(names) == activator_exports()

"""The dashboard, alerts and adapter rules query only series kinfer really exports.

Exported names are read from the prometheus_client collectors of the operator
(kinfer_operator.metrics) and the runtime (kinfer_runtime.metrics), never from a list here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from kinfer_operator import metrics as operator_metrics
from kinfer_operator.children.hpa import GPU_UTIL_METRIC, INFLIGHT_METRIC, QUEUE_DEPTH_METRIC
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
from prometheus_client.registry import Collector

OBSERVABILITY = Path(__file__).resolve().parents[2] / "examples" / "observability"
Render = Callable[..., list[dict[str, Any]]]

# Operator series that assets may reference before the operator exports them. Remove a name
# here in the change that exports it (test_pending_metrics_are_not_exported_yet enforces that).
PENDING_OPERATOR_METRICS: set[str] = set()
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "unknown": ("",),
}


def _series_names(collector: Collector) -> Iterator[str]:
    for family in collector.collect():
        for suffix in _SUFFIXES[family.type]:
            yield family.name + suffix


class _FakeGpu(GpuCollector):
    """The runtime's GPU collector with a reading, so its families show without a GPU."""

    def _read(self) -> tuple[float | None, float | None]:
        return 1.0, 0.5


def exported_names() -> set[str]:
    names: set[str] = set()
    for value in vars(operator_metrics).values():
        if isinstance(value, MetricWrapperBase):
            names.update(_series_names(value))
    names.update(_series_names(GpuSecondsCollector(Store(), CostLedger())))
    runtime = RuntimeMetrics("m", "1", "r")
    names.update(_series_names(runtime.registry))
    gpu = _FakeGpu(
        0,
        ("m", "1", "r"),
        memory_name=GPU_MEMORY_USED_BYTES,
        utilization_name=GPU_UTILIZATION_RATIO,
        labels=LABELS,
    )
    names.update(_series_names(gpu))
    return names


_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "inf", "nan",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or Grafana label_values query) selects.

    A tokenizer rather than a parser (no PromQL parser is packaged for Python): strings,
    label matchers, ranges and grouping clauses are removed, then every identifier that is
    not a function call, keyword or Grafana variable is a metric name.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\w+", " ", text)
    text = re.sub(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*\w+\s*\)", r" \1 ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if not call and word not in _PROMQL_WORDS:
            names.add(word)
    return names


def _dashboard_queries() -> Iterator[tuple[str, str]]:
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield f"${variable['name']}", variable["query"]["query"]


def test_metric_name_extraction_ignores_functions_labels_and_grouping() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, model) (rate(kinfer_request_duration_seconds_bucket"
        '{namespace=~"$namespace", code=~"5.."}[$__rate_interval]))) / on (model) group_left '
        "max(kinfer_queue_depth) > bool 0"
    )
    assert metric_names(expr) == {"kinfer_request_duration_seconds_bucket", "kinfer_queue_depth"}
    assert metric_names('label_values(kinfer_requests_total{namespace=~"$ns"}, model)') == {
        "kinfer_requests_total"
    }


def test_exported_names_come_from_both_collectors() -> None:
    names = exported_names()
    assert {
        "kinfer_requests_total",
        "kinfer_batch_size_bucket",
        "kinfer_gpu_memory_used_bytes",
    } <= names
    assert {"kinfer_operator_reconciles_total", "kinfer_operator_api_writes_total"} <= names


def test_every_dashboard_query_uses_only_exported_metrics() -> None:
    known = exported_names() | PENDING_OPERATOR_METRICS
    queries = list(_dashboard_queries())
    assert len(queries) > 15
    for title, expr in queries:
        used = metric_names(expr)
        assert used, f"{title}: no metric in {expr!r}"
        assert used <= known, f"{title}: {sorted(used - known)} are not exported"


def test_dashboard_covers_requests_latency_batching_queue_gpu_and_canary() -> None:
    used = set().union(*(metric_names(expr) for _, expr in _dashboard_queries()))
    for needed in (
        "kinfer_requests_total",
        "kinfer_request_duration_seconds_bucket",
        "kinfer_batch_size_sum",
        "kinfer_queue_depth",
        "kinfer_gpu_utilization_ratio",
        "kinfer_operator_canary_weight",
        "kinfer_operator_analysis_total",
    ):
        assert needed in used


def _rule_exprs(rule: dict[str, Any]) -> list[str]:
    return [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]


def test_alert_rules_use_only_exported_metrics_and_match_the_chart(render: Render) -> None:
    example = yaml.safe_load((OBSERVABILITY / "prometheusrule.yaml").read_text())
    known = exported_names() | PENDING_OPERATOR_METRICS
    for expr in _rule_exprs(example):
        assert metric_names(expr) and metric_names(expr) <= known, expr
    (chart_rule,) = [
        d
        for d in render(**{"monitoring.prometheusRule.enabled": "true"})
        if d["kind"] == "PrometheusRule"
    ]
    assert chart_rule["spec"] == example["spec"], "examples/ and the chart's alerts differ"


def test_adapter_serves_the_metrics_the_hpa_builder_asks_for_per_pod() -> None:
    values = yaml.safe_load((OBSERVABILITY / "prometheus-adapter-values.yaml").read_text())
    rules = values["rules"]["custom"]
    assert {r["name"]["as"] for r in rules} == {
        INFLIGHT_METRIC,
        QUEUE_DEPTH_METRIC,
        GPU_UTIL_METRIC,
    }
    exported = exported_names()
    for rule in rules:
        (series,) = metric_names(rule["seriesQuery"])
        assert series == rule["name"]["as"]
        if series.startswith("kinfer_"):
            assert series in exported
        resources = {o["resource"] for o in rule["resources"]["overrides"].values()}
        assert resources == {"namespace", "pod"}


def test_pending_metrics_are_not_exported_yet() -> None:
    assert not PENDING_OPERATOR_METRICS & exported_names(), "exported now: drop from PENDING"


def test_plain_prometheus_scrape_job_selects_what_the_chart_s_pod_monitor_does(
    render: Render,
) -> None:
    (job,) = yaml.safe_load((OBSERVABILITY / "prometheus-scrape.yaml").read_text())
    (monitor,) = [
        d for d in render(**{"monitoring.podMonitor.enabled": "true"}) if d["kind"] == "PodMonitor"
    ]
    keeps = {
        r["source_labels"][0]: r["regex"]
        for r in job["relabel_configs"]
        if r.get("action") == "keep"
    }
    ((label, value),) = monitor["spec"]["selector"]["matchLabels"].items()
    meta = "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9]", "_", label)
    assert keeps[meta] == value
    assert (
        keeps["__meta_kubernetes_pod_container_port_name"]
        == (monitor["spec"]["podMetricsEndpoints"][0]["port"])
    )
    # Canary analysis and prometheus-adapter select on these, as on a PodMonitor's series.
    targets = {r.get("target_label") for r in job["relabel_configs"]}
    assert {"namespace", "pod"} <= targets

"""The HPA's metric names are a contract between three parties that never meet in one process.

The HPA builder asks custom.metrics.k8s.io for a per-pod metric by name, the runtime exports
the series under that name, and prometheus-adapter's rules turn the series into the per-pod
metric. A rename on any one side still builds, deploys and reconciles; the HPA then just
reports `FailedGetPodsMetric` in production and never scales. These tests read the names from
each party (the builder's output, the runtime's prometheus_client collectors, the rules file
users install) instead of from a list kept here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from kinfer_operator.api.spec import AutoscalingMetric
from kinfer_operator.children.hpa import GPU_UTIL_METRIC, metric_spec
from kinfer_runtime.metrics import RuntimeMetrics
from prometheus_client.metrics_core import Metric

RULES_FILE = (
    Path(__file__).resolve().parents[3]
    / "examples"
    / "autoscaling"
    / "prometheus-adapter-rules.yaml"
)
EXTERNAL_EXPORTERS = {GPU_UTIL_METRIC: "NVIDIA dcgm-exporter"}
"""Pods metrics the HPA may ask for that come from another exporter, not the runtime."""

TYPED_METRICS = [
    t for t in get_args(AutoscalingMetric.model_fields["type"].annotation) if t != "raw"
]


def hpa_pods_metric(metric_type: str) -> str | None:
    """The custom metric name the built HPA asks for, or None for resource metrics."""
    spec = metric_spec(AutoscalingMetric(type=metric_type, target=50))
    if spec["type"] != "Pods":
        return None
    return str(spec["pods"]["metric"]["name"])


def runtime_families() -> dict[str, Metric]:
    """The runtime's metric families as its /metrics would expose them, by sample name."""
    registry = RuntimeMetrics("resnet50", "3", "5d1c0e2a9b").registry
    return {sample.name: family for family in registry.collect() for sample in family.samples}


def adapter_rules() -> list[dict[str, Any]]:
    return list(yaml.safe_load(RULES_FILE.read_text())["rules"])


def served_name(rule: dict[str, Any]) -> str:
    """The metric name the adapter serves for a rule (`name.as`, else the series name)."""
    name = rule.get("name") or {}
    return str(name.get("as") or series_name(rule))


def series_name(rule: dict[str, Any]) -> str:
    match = re.match(r"\s*([A-Za-z_:][A-Za-z0-9_:]*)", rule["seriesQuery"])
    assert match, rule["seriesQuery"]
    return match.group(1)


PODS_METRICS = sorted({m for t in TYPED_METRICS if (m := hpa_pods_metric(t)) is not None})


def test_the_typed_metrics_include_custom_pods_metrics() -> None:
    # Guards the parametrisations below against silently testing nothing.
    assert len(PODS_METRICS) >= 3, PODS_METRICS


@pytest.mark.parametrize("metric", PODS_METRICS)
def test_every_pods_metric_the_hpa_asks_for_is_served_by_the_adapter_rules(metric: str) -> None:
    rules = {served_name(r): r for r in adapter_rules()}
    assert metric in rules, f"{metric} has no rule in {RULES_FILE.name}"
    overrides = rules[metric]["resources"]["overrides"]
    # Per-pod: the series must map onto pods and namespaces, or the HPA's pods query is empty.
    assert {v["resource"] for v in overrides.values()} == {"namespace", "pod"}


@pytest.mark.parametrize("metric", [m for m in PODS_METRICS if m not in EXTERNAL_EXPORTERS])
def test_runtime_exports_every_pods_metric_it_is_responsible_for(metric: str) -> None:
    families = runtime_families()
    assert metric in families, f"the runtime exports no {metric}: {sorted(families)}"
    # The adapter rules average the instantaneous value; a counter would need rate().
    assert families[metric].type == "gauge"
    rule = next(r for r in adapter_rules() if served_name(r) == metric)
    assert series_name(rule) == metric


def test_only_the_documented_external_metrics_come_from_other_exporters() -> None:
    families = runtime_families()
    external = {m for m in PODS_METRICS if m not in families}
    assert external == set(EXTERNAL_EXPORTERS), external


def test_adapter_rules_serve_nothing_the_hpa_never_asks_for() -> None:
    # A rule for a misspelt name would look like coverage while serving nothing useful.
    assert {served_name(r) for r in adapter_rules()} <= set(PODS_METRICS)

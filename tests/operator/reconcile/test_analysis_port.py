"""The analysis port: which of the platform's Prometheus endpoints a model's analysis asks,
and what it asks."""

from __future__ import annotations

from typing import Any

import pytest
from kinfer_operator.model import InferenceModel
from kinfer_operator.reconcile.analysis_port import AnalysisPort
from kinfer_operator.rollout.endpoints import Endpoint, PrometheusConfig
from support.clock import EPOCH
from support.factories import deep_merge, model_body

ROLLOUT: dict[str, Any] = {
    "rollout": {"canary": {"steps": [{"weight": 25}]}, "analysis": {"errorRate": None}}
}
"""One canary step; only the request-count check, so enough requests pass."""
OPERATOR_URL = "http://prometheus.operator.invalid:9090"
TEAM_URL = "http://prometheus.team.invalid:9090"
CONFIG = PrometheusConfig.model_validate(
    {"url": OPERATOR_URL, "endpoints": {"team": {"url": TEAM_URL}}}
)


def _model(spec: dict[str, Any]) -> InferenceModel:
    return InferenceModel.from_body(model_body(spec))


class _Prometheus:
    """Answers every query with `value` and remembers which endpoint was asked what."""

    def __init__(self, value: float = 100.0) -> None:
        self.value = value
        self.asked: list[tuple[str, str]] = []

    def __call__(self, endpoint: Endpoint, promql: str, timeout: float, name: str) -> float:
        self.asked.append((endpoint.url, promql))
        return self.value


def test_no_prometheus_configured_is_an_analysis_error_naming_the_settings() -> None:
    prometheus = _Prometheus()
    port = AnalysisPort(PrometheusConfig(), query=prometheus)
    run = port.analyzers(_model(ROLLOUT), EPOCH).analyze(1)
    assert run.decision == "Error"
    assert "no default Prometheus endpoint is configured" in run.message
    assert "spec.rollout.analysis.prometheus" in run.message
    assert prometheus.asked == []


def test_the_endpoint_the_model_names_is_the_one_asked() -> None:
    prometheus = _Prometheus()
    spec = deep_merge(ROLLOUT, {"rollout": {"analysis": {"prometheus": "team"}}})
    run = AnalysisPort(CONFIG, query=prometheus).analyzers(_model(spec), EPOCH).analyze(1)
    assert run.decision == "Pass"
    assert prometheus.asked and {url for url, _ in prometheus.asked} == {TEAM_URL}


def test_an_endpoint_the_platform_lacks_is_an_error_and_nothing_is_sent() -> None:
    prometheus = _Prometheus()
    spec = deep_merge(ROLLOUT, {"rollout": {"analysis": {"prometheus": "elsewhere"}}})
    run = AnalysisPort(CONFIG, query=prometheus).analyzers(_model(spec), EPOCH).analyze(1)
    assert run.decision == "Error"
    assert "elsewhere" in run.message and TEAM_URL not in run.message
    assert prometheus.asked == []


def test_the_operators_default_answers_models_that_name_none() -> None:
    prometheus = _Prometheus()
    AnalysisPort(CONFIG, query=prometheus).analyzers(_model(ROLLOUT), EPOCH).analyze(1)
    assert prometheus.asked and {url for url, _ in prometheus.asked} == {OPERATOR_URL}


def test_the_run_is_stamped_with_the_step_and_the_pass_time() -> None:
    port = AnalysisPort(CONFIG, query=_Prometheus())
    run = port.analyzers(_model(ROLLOUT), EPOCH).analyze(2)
    assert (run.step, run.time) == (2, EPOCH)


def test_with_a_shadow_phase_live_and_mirrored_requests_are_analysed_apart() -> None:
    prometheus = _Prometheus()
    spec = deep_merge(ROLLOUT, {"rollout": {"shadow": {"percent": 10}}})
    analyzers = AnalysisPort(CONFIG, query=prometheus).analyzers(_model(spec), EPOCH)
    analyzers.analyze(1)
    live = [q for _, q in prometheus.asked]
    prometheus.asked.clear()
    analyzers.analyze_shadow(1)
    mirrored = [q for _, q in prometheus.asked]
    assert live and all('source!~"shadow|cold_start"' in q for q in live)
    assert mirrored and all('source="shadow"' in q for q in mirrored)


def test_without_a_shadow_phase_every_request_of_the_revision_is_analysed() -> None:
    prometheus = _Prometheus()
    model = _model(ROLLOUT)
    AnalysisPort(CONFIG, query=prometheus).analyzers(model, EPOCH).analyze(1)
    queries = [q for _, q in prometheus.asked]
    assert queries and all("source" not in q for q in queries)
    assert all(f'model="{model.name}"' in q for q in queries)


def test_a_model_without_a_rollout_has_nothing_to_analyse() -> None:
    with pytest.raises(ValueError, match=r"no spec\.rollout"):
        AnalysisPort(CONFIG, query=_Prometheus()).analyzers(_model({}), EPOCH)


ZERO: dict[str, Any] = {"replicas": None, "autoscaling": {"minReplicas": 0, "maxReplicas": 2}}


def test_request_count_asks_the_default_endpoint_within_the_model_namespace() -> None:
    prometheus = _Prometheus(value=0.0)
    assert AnalysisPort(CONFIG, query=prometheus).request_count(_model(ZERO)) == 0.0
    ((url, promql),) = prometheus.asked
    assert url == OPERATOR_URL
    assert "kinfer_requests_total" in promql and 'namespace="ml"' in promql
    assert "[5m]" in promql  # idleSeconds 300, as the confining rewrite prints it


def test_request_count_without_prometheus_says_scale_to_zero_is_unavailable() -> None:
    prometheus = _Prometheus()
    answer = AnalysisPort(PrometheusConfig(), query=prometheus).request_count(_model(ZERO))
    assert not isinstance(answer, float)
    assert answer.reason == "PrometheusNotConfigured"
    assert prometheus.asked == []


def test_request_count_from_an_endpoint_the_platform_lacks_sends_nothing() -> None:
    prometheus = _Prometheus()
    spec = deep_merge(ZERO, {"autoscaling": {"prometheus": "elsewhere"}})
    answer = AnalysisPort(CONFIG, query=prometheus).request_count(_model(spec))
    assert not isinstance(answer, float) and answer.reason == "IdleSignalUnavailable"
    assert prometheus.asked == []


def test_no_series_counts_as_no_request() -> None:
    def nothing(endpoint: Endpoint, promql: str, timeout: float, name: str) -> None:
        return None

    assert AnalysisPort(CONFIG, query=nothing).request_count(_model(ZERO)) == 0.0

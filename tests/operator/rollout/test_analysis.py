"""run_analysis: verdicts from values; inconclusive and error are not failures."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from kinfer_operator.api.spec import Analysis
from kinfer_operator.rollout._prometheus import PrometheusError
from kinfer_operator.rollout.analysis import AnalysisTarget, analysis_queries, run_analysis

T = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T
T2 = T + timedelta(seconds=60)


TARGET = AnalysisTarget("ml", "resnet50", "abc123", 30)


def _fetch(count: float, error_rate: float, p99: float | None = None) -> Callable[[str], float]:
    def fetch(query: str) -> float:
        if query.startswith("sum(increase"):
            return count
        if "histogram_quantile" in query:
            assert p99 is not None
            return p99
        return error_rate

    return fetch


def _analysis(**overrides: object) -> Analysis:
    return Analysis.model_validate({"minRequestCount": 20, **overrides})


def test_queries_select_the_canary_revision_and_exclude_client_errors() -> None:
    count, checks = analysis_queries(_analysis(), TARGET)
    assert 'revision="abc123"' in count and 'namespace="ml"' in count
    error_rate = checks[0].query
    assert 'code!~"4.."' in error_rate and 'code!~"2.."' in error_rate and "[30s]" in error_rate


def test_client_errors_can_be_counted() -> None:
    _, checks = analysis_queries(_analysis(errorRate={"excludeClientErrors": False}), TARGET)
    assert 'code!~"4.."' not in checks[0].query


def test_healthy_canary_passes() -> None:
    run = run_analysis(_analysis(), TARGET, _fetch(100, 0.0), step=0, now=T)
    assert run.decision == "Pass"
    assert {m.name: m.verdict for m in run.metrics} == {
        "request-count": "Pass",
        "error-rate": "Pass",
    }


def test_error_rate_above_max_fails_naming_metric_and_value() -> None:
    run = run_analysis(_analysis(), TARGET, _fetch(100, 0.25), step=1, now=T)
    assert run.decision == "Fail"
    assert "error-rate = 0.25" in run.message
    failing = next(m for m in run.metrics if m.name == "error-rate")
    assert (failing.value, failing.threshold, failing.verdict) == ("0.25", "<= 0.01", "Fail")


def test_latency_check_fails_slow_canary() -> None:
    analysis = _analysis(latencyP99={"maxSeconds": 0.2})
    run = run_analysis(analysis, TARGET, _fetch(100, 0.0, p99=1.5), step=0, now=T)
    assert run.decision == "Fail" and "latency-p99 = 1.5" in run.message


def test_too_few_requests_is_inconclusive_not_failed() -> None:
    run = run_analysis(_analysis(), TARGET, _fetch(3, 1.0), step=0, now=T)
    assert run.decision == "Inconclusive"
    assert "minRequestCount 20" in run.message


def test_unreachable_prometheus_is_an_error_not_a_failure() -> None:
    def down(_query: str) -> float:
        raise PrometheusError("Prometheus unreachable at http://x: refused")

    run = run_analysis(_analysis(), TARGET, down, step=0, now=T)
    assert run.decision == "Error" and "unreachable" in run.message


@pytest.mark.parametrize(("value", "decision"), [(5.0, "Pass"), (50.0, "Fail")])
def test_custom_check_uses_template_and_bounds(value: float, decision: str) -> None:
    analysis = _analysis(
        errorRate=None,
        custom=[{"name": "gpu-mem", "query": 'x{revision="{{revision}}"}[{{window}}]', "max": 10}],
    )
    seen: list[str] = []

    def fetch(query: str) -> float:
        seen.append(query)
        return 100.0 if query.startswith("sum(increase") else value

    run = run_analysis(analysis, TARGET, fetch, step=0, now=T)
    assert run.decision == decision
    assert 'x{revision="abc123",namespace="ml"}[30s]' in seen


def test_a_custom_query_is_confined_to_the_model_namespace() -> None:
    analysis = _analysis(
        errorRate=None,
        custom=[{"name": "peek", "query": 'sum(x{namespace="other"})', "max": 10}],
    )
    seen: list[str] = []

    def fetch(query: str) -> float:
        seen.append(query)
        return 100.0 if query.startswith("sum(increase") else 1.0

    run_analysis(analysis, TARGET, fetch, step=0, now=T)
    assert seen[1] == 'sum(x{namespace="ml"})'
    assert all('namespace="other"' not in q for q in seen)


def test_a_custom_query_that_does_not_parse_is_an_error_naming_the_check_and_never_sent() -> None:
    analysis = _analysis(
        errorRate=None, custom=[{"name": "broken", "query": "sum(rate(x[5m]", "max": 1}]
    )
    seen: list[str] = []

    def fetch(query: str) -> float:
        seen.append(query)
        return 100.0

    run = run_analysis(analysis, TARGET, fetch, step=0, now=T)
    assert run.decision == "Error"
    assert "broken" in run.message and "does not parse" in run.message
    assert len(seen) == 1  # only the request count went out

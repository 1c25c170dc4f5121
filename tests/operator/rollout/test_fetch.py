"""analysis_fetch: the endpoint a model names, and a time budget across all its queries."""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from kinfer_operator.api.spec import Analysis
from kinfer_operator.rollout._prometheus import PrometheusError
from kinfer_operator.rollout.analysis import AnalysisTarget, run_analysis
from kinfer_operator.rollout.endpoints import Endpoint, PrometheusConfig
from kinfer_operator.rollout.fetch import Budget, Query, analysis_fetch

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TARGET = AnalysisTarget("ml", "resnet50", "abc123", 30)
CONFIG = PrometheusConfig(
    url="http://prometheus:9090", endpoints={"thanos": Endpoint(url="http://thanos:10902")}
)
# Request count, error rate, p99 and three custom checks: six queries an analysis may send.
ANALYSIS = Analysis.model_validate(
    {
        "minRequestCount": 0,
        "latencyP99": {"maxSeconds": 1},
        "custom": [{"name": f"c{i}", "query": "sum(up)", "max": 1} for i in range(3)],
    }
)


def _stuck(timeouts: list[float]) -> Query:
    """A Prometheus that never answers: each query waits out its timeout."""

    def query(_endpoint: Endpoint, _promql: str, timeout: float, _name: str) -> float:
        timeouts.append(timeout)
        time.sleep(timeout)
        raise PrometheusError("timed out")

    return query


def test_the_named_endpoint_is_queried() -> None:
    asked: list[tuple[str, str]] = []

    def query(endpoint: Endpoint, promql: str, _timeout: float, name: str) -> float:
        asked.append((name, endpoint.url))
        return 1.0

    analysis_fetch(CONFIG, "thanos", query)("up")
    analysis_fetch(CONFIG, None, query)("up")
    assert asked == [("thanos", "http://thanos:10902"), ("default", "http://prometheus:9090")]


def test_an_unknown_endpoint_fails_the_analysis_and_sends_nothing() -> None:
    asked: list[str] = []

    def query(_endpoint: Endpoint, promql: str, _timeout: float, _name: str) -> float:
        asked.append(promql)
        return 1.0

    fetch = analysis_fetch(CONFIG, "elsewhere", query)
    run = run_analysis(ANALYSIS, TARGET, fetch, step=0, now=NOW)
    assert run.decision == "Error"
    assert "'elsewhere'" in run.message and "spec.rollout.analysis.prometheus" in run.message
    assert "http" not in run.message
    assert asked == []


def test_each_query_waits_at_most_what_is_left_of_the_budget() -> None:
    clock = [0.0]
    timeouts: list[float] = []

    def hanging(_endpoint: Endpoint, _promql: str, timeout: float, _name: str) -> float:
        timeouts.append(timeout)
        clock[0] += timeout  # waits out its timeout
        raise PrometheusError("timed out")

    budget = Budget(12, monotonic=lambda: clock[0])
    fetch = analysis_fetch(CONFIG, None, hanging, budget=budget, query_timeout=5)
    for _ in range(4):
        with contextlib.suppress(PrometheusError):
            fetch("up")
    assert timeouts == [5, 5, 2]  # the fourth found the budget spent and sent nothing
    assert clock[0] == 12


def test_stuck_prometheus_canaries_do_not_hold_the_workers() -> None:
    """Eight canaries on a hanging Prometheus, two workers: with a 0.3 s budget every
    analysis gives up in about 0.3 s instead of 6 queries x 0.2 s, so the pool drains in
    about 8 / 2 x 0.3 s and a healthy model queued behind them is reached quickly."""
    budget = 0.3
    timeouts: list[float] = []

    def analyse(_: int) -> str:
        fetch = analysis_fetch(
            CONFIG, None, _stuck(timeouts), budget=Budget(budget), query_timeout=0.2
        )
        return run_analysis(ANALYSIS, TARGET, fetch, step=0, now=NOW).decision

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as workers:
        decisions = list(workers.map(analyse, range(8)))
    elapsed = time.monotonic() - started
    assert decisions == ["Error"] * 8
    assert elapsed < 8 / 2 * budget + 0.8, elapsed  # far below 8 / 2 x 6 x 0.2 = 4.8 s


def test_the_budget_message_names_the_endpoint_and_the_budget() -> None:
    clock = [0.0]
    budget = Budget(10, monotonic=lambda: clock[0])
    fetch = analysis_fetch(CONFIG, "thanos", lambda *_: 1.0, budget=budget)
    assert fetch("up") == 1.0
    clock[0] = 10.0
    try:
        fetch("up")
    except PrometheusError as err:
        assert "10s" in str(err) and "'thanos'" in str(err)
    else:
        raise AssertionError("the spent budget did not stop the query")


def test_one_budget_covers_every_analysis_of_a_pass() -> None:
    """A shadow phase analyses mirrored and live requests in one pass: together they get the
    budget once, not once each."""
    clock = [0.0]
    timeouts: list[float] = []

    def hanging(_endpoint: Endpoint, _promql: str, timeout: float, _name: str) -> float:
        timeouts.append(timeout)
        clock[0] += timeout
        raise PrometheusError("timed out")

    budget = Budget(8, monotonic=lambda: clock[0])
    for _ in range(2):
        fetch = analysis_fetch(CONFIG, None, hanging, budget=budget, query_timeout=5)
        run = run_analysis(ANALYSIS, TARGET, fetch, step=0, now=NOW)
        assert run.decision == "Error"
    assert timeouts == [5, 3] and clock[0] == 8

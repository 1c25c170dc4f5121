"""How one analysis reaches Prometheus: the endpoint the model picked, within a time budget.

The budget bounds what one model's analysis may spend across all its queries, so canaries
whose Prometheus hangs cannot hold every work-queue worker for (queries x timeout) seconds:
the remaining budget caps each query's timeout, and once it is spent the analysis is an
Error (retried at the next interval) and the worker moves on.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kinfer_operator.rollout._prometheus import PrometheusError
from kinfer_operator.rollout.endpoints import Endpoint, PrometheusConfig, UnknownEndpoint

__all__ = ["ANALYSIS_BUDGET_SECONDS", "QUERY_TIMEOUT_SECONDS", "Budget", "Query", "analysis_fetch"]

QUERY_TIMEOUT_SECONDS = 5.0
"""Longest wait for one query."""
ANALYSIS_BUDGET_SECONDS = 10.0
"""Default total per analysis (KINFER_ANALYSIS_BUDGET_SECONDS)."""
MIN_QUERY_SECONDS = 0.05
"""Below this much budget left, no query is started."""

Query = Callable[[Endpoint, str, float, str], float | None]
"""(endpoint, promql, timeout seconds, endpoint name) -> value; raises PrometheusError."""


class Budget:
    """Seconds one model's analyses may spend in one pass (a shadow phase analyses twice);
    the clock starts at the first query."""

    def __init__(
        self,
        seconds: float = ANALYSIS_BUDGET_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self._monotonic = monotonic
        self._deadline: float | None = None

    def left(self) -> float:
        now = self._monotonic()
        if self._deadline is None:
            self._deadline = now + self.seconds
        return self._deadline - now


def analysis_fetch(
    config: PrometheusConfig,
    name: str | None,
    query: Query,
    *,
    budget: Budget | None = None,
    query_timeout: float = QUERY_TIMEOUT_SECONDS,
) -> Callable[[str], float | None]:
    """A `fetch(promql)` for run_analysis. It sends nothing when the model names an endpoint
    the operator lacks: every call then raises PrometheusError saying so."""
    try:
        chosen, endpoint = config.resolve(name)
    except UnknownEndpoint as err:
        problem = str(err)

        def refuse(_promql: str) -> float | None:
            raise PrometheusError(problem)

        return refuse
    spend = budget or Budget()

    def fetch(promql: str) -> float | None:
        left = spend.left()
        if left < MIN_QUERY_SECONDS:
            raise PrometheusError(
                f"analysis time budget ({spend.seconds:g}s) spent: Prometheus endpoint "
                f"{chosen!r} is too slow"
            )
        return query(endpoint, promql, min(query_timeout, left), chosen)

    return fetch

"""Canary analysis: PromQL for the built-in and custom checks, and their verdicts.

Queries select the canary by namespace, model and revision: the runtime labels every metric
with model and revision, and Prometheus adds namespace when it discovers the pod. With a
shadow phase, requests also carry `source`: the shadow phase reads only the mirrored ones
(`source="shadow"`), the canary steps everything else, so neither sees the other's traffic.
Every query, built-in or custom, is confined to the model's namespace before it is sent
(rollout/promql_scope.py): custom PromQL is tenant input running on a shared Prometheus.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from kinfer_operator.api.spec import Analysis
from kinfer_operator.api.status import AnalysisRun, Decision, MetricResult
from kinfer_operator.rollout._prometheus import PrometheusError
from kinfer_operator.rollout.promql_scope import ScopeError, confine

__all__ = ["AnalysisTarget", "Check", "analysis_queries", "run_analysis"]

REQUESTS = "kinfer_requests_total"
LATENCY_BUCKETS = "kinfer_request_duration_seconds_bucket"


@dataclass(frozen=True)
class AnalysisTarget:
    """Which series the analysis reads."""

    namespace: str
    model: str
    revision: str
    window_seconds: int
    source: Literal["shadow", "live"] | None = None
    """shadow: mirrored requests only; live: all but those; None: every request."""

    @property
    def selector(self) -> str:
        sel = f'namespace="{self.namespace}",model="{self.model}",revision="{self.revision}"'
        if self.source == "shadow":
            return f'{sel},source="shadow"'
        if self.source == "live":
            # !~ rather than ="live": series of runtimes without the label still match. Requests
            # the activator held for a cold start (source="cold_start") are left out too.
            return f'{sel},source!~"shadow|cold_start"'
        return sel


@dataclass(frozen=True)
class Check:
    """One bounded query."""

    name: str
    query: str
    min: float | None = None
    max: float | None = None

    @property
    def threshold(self) -> str:
        bounds = []
        if self.min is not None:
            bounds.append(f">= {self.min:g}")
        if self.max is not None:
            bounds.append(f"<= {self.max:g}")
        return " and ".join(bounds)

    def passes(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


def _fill(template: str, target: AnalysisTarget) -> str:
    return (
        template.replace("{{namespace}}", target.namespace)
        .replace("{{model}}", target.model)
        .replace("{{revision}}", target.revision)
        .replace("{{window}}", f"{target.window_seconds}s")
        .replace("{{selector}}", target.selector)
    )


def analysis_queries(analysis: Analysis, target: AnalysisTarget) -> tuple[str, list[Check]]:
    """(request-count query, checks) for the canary."""
    sel, window = target.selector, f"{target.window_seconds}s"
    count = f"sum(increase({REQUESTS}{{{sel}}}[{window}]))"
    checks: list[Check] = []
    if analysis.error_rate is not None:
        counted = f'{sel},code!~"4.."' if analysis.error_rate.exclude_client_errors else sel
        failed = f'{counted},code!~"2.."'
        checks.append(
            Check(
                "error-rate",
                f"(sum(rate({REQUESTS}{{{failed}}}[{window}])) or vector(0))"
                f" / sum(rate({REQUESTS}{{{counted}}}[{window}]))",
                max=analysis.error_rate.max,
            )
        )
    if analysis.latency_p99 is not None:
        checks.append(
            Check(
                "latency-p99",
                "histogram_quantile(0.99, sum by (le) "
                f"(rate({LATENCY_BUCKETS}{{{sel}}}[{window}])))",
                max=analysis.latency_p99.max_seconds,
            )
        )
    checks.extend(
        Check(c.name, _fill(c.query, target), min=c.min, max=c.max) for c in analysis.custom
    )
    return count, checks


def run_analysis(
    analysis: Analysis,
    target: AnalysisTarget,
    fetch: Callable[[str], float | None],
    *,
    step: int,
    now: datetime,
) -> AnalysisRun:
    """Run every check; `fetch` does the I/O and raises PrometheusError when it cannot.
    A query that cannot be confined to the namespace is an Error, and is never sent."""
    count_query, checks = analysis_queries(analysis, target)
    results: list[MetricResult] = []

    def ask(name: str, query: str) -> float | None:
        try:
            scoped = confine(query, target.namespace)
        except ScopeError as err:
            raise PrometheusError(f"check {name}: {err}") from err
        return fetch(scoped)

    def done(decision: Decision, message: str) -> AnalysisRun:
        return AnalysisRun(time=now, step=step, decision=decision, message=message, metrics=results)

    try:
        count = ask("request-count", count_query) or 0.0
    except PrometheusError as err:
        results.append(MetricResult(name="request-count", threshold="reachable", verdict="Error"))
        return done("Error", str(err))
    enough = count >= analysis.min_request_count
    results.append(
        MetricResult(
            name="request-count",
            value=f"{count:g}",
            threshold=f">= {analysis.min_request_count}",
            verdict="Pass" if enough else "Inconclusive",
        )
    )
    if not enough:
        kind = "mirrored (shadow)" if target.source == "shadow" else "canary"
        return done(
            "Inconclusive",
            f"{count:g} {kind} requests in {target.window_seconds}s, "
            f"below minRequestCount {analysis.min_request_count}: holding the step",
        )
    failed: list[str] = []
    for check in checks:
        try:
            value = ask(check.name, check.query)
        except PrometheusError as err:
            results.append(
                MetricResult(name=check.name, threshold=check.threshold, verdict="Error")
            )
            return done("Error", str(err))
        if value is None:
            results.append(
                MetricResult(name=check.name, threshold=check.threshold, verdict="Inconclusive")
            )
            continue
        ok = check.passes(value)
        results.append(
            MetricResult(
                name=check.name,
                value=f"{value:.6g}",
                threshold=check.threshold,
                verdict="Pass" if ok else "Fail",
            )
        )
        if not ok:
            failed.append(f"{check.name} = {value:.6g} (want {check.threshold})")
    if failed:
        where = "in shadow (mirrored requests): " if target.source == "shadow" else ""
        return done("Fail", where + "; ".join(failed))
    if any(r.verdict == "Inconclusive" for r in results):
        return done("Inconclusive", "a check returned no data: holding the step")
    return done("Pass", f"all {len(checks)} checks passed on {count:g} requests")

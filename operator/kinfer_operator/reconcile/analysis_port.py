"""Canary analysis as the rollout machine sees it: `analyze(step)` callables for one model.

The rollout machine is pure; this is where its analysis meets Prometheus: the endpoint the
model names among those the platform configured (`rollout.endpoints`), within one time budget
per pass (`rollout.fetch`), every query through one injected callable that tests fake.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Literal

from kinfer_operator.api.spec import Rollout
from kinfer_operator.api.status import AnalysisRun
from kinfer_operator.metrics import ANALYSES
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import revision_of
from kinfer_operator.rollout._prometheus import PrometheusError, query_value
from kinfer_operator.rollout.analysis import AnalysisTarget, run_analysis
from kinfer_operator.rollout.endpoints import PrometheusConfig, UnknownEndpoint, load_config
from kinfer_operator.rollout.fetch import ANALYSIS_BUDGET_SECONDS, Budget, Query, analysis_fetch
from kinfer_operator.rollout.idle import RequestCount, SignalUnavailable, requests_query
from kinfer_operator.rollout.promql_scope import ScopeError, confine

__all__ = ["AnalysisPort", "Analyzers"]


@dataclass(frozen=True)
class Analyzers:
    """The two analysis callables a `RolloutContext` takes."""

    analyze: Callable[[int], AnalysisRun]
    """Analysis of the live (canary) step's requests."""
    analyze_shadow: Callable[[int], AnalysisRun]
    """Analysis of mirrored requests only, for the shadow phase."""


class AnalysisPort:
    """Owns which Prometheus endpoints the platform configured, how they are asked, and how
    long one pass may wait for them; hands the rollout ready callables."""

    def __init__(
        self,
        prometheus: PrometheusConfig | None = None,
        query: Query = query_value,
        budget_seconds: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`prometheus`: the operator's endpoints (else loaded from its environment);
        `budget_seconds`: what one model's analyses may spend per pass (else
        KINFER_ANALYSIS_BUDGET_SECONDS)."""
        self._prometheus = prometheus if prometheus is not None else load_config()
        self._query = query
        self._budget_seconds = budget_seconds or float(
            os.environ.get("KINFER_ANALYSIS_BUDGET_SECONDS", ANALYSIS_BUDGET_SECONDS)
        )
        self._monotonic = monotonic

    def analyzers(self, model: InferenceModel, now: datetime) -> Analyzers:
        """Callables that run `spec.rollout.analysis` against the model's current revision,
        sharing one time budget (a shadow phase analyses twice in a pass)."""
        rollout = model.spec.rollout
        if rollout is None:
            raise ValueError(f"{model.namespace}/{model.name} has no spec.rollout to analyse")
        fetch = analysis_fetch(
            self._prometheus,
            rollout.analysis.prometheus,
            self._query,
            budget=Budget(self._budget_seconds, self._monotonic),
        )
        analyze = partial(self._analyze, model, rollout, fetch, now)
        return Analyzers(analyze=analyze, analyze_shadow=partial(analyze, source="shadow"))

    def request_count(self, model: InferenceModel) -> RequestCount:
        """Requests the model served over its last idleSeconds (the scale-to-zero signal),
        from the endpoint spec.autoscaling.prometheus names, within the analysis budget."""
        autoscaling = model.spec.autoscaling
        name = autoscaling.prometheus if autoscaling else None
        try:
            self._prometheus.resolve(name)
        except UnknownEndpoint as err:
            message = f"scale to zero is unavailable: {err}"
            if name is None:
                return SignalUnavailable("PrometheusNotConfigured", message)
            return SignalUnavailable("IdleSignalUnavailable", message)
        fetch = analysis_fetch(
            self._prometheus,
            name,
            self._query,
            budget=Budget(self._budget_seconds, self._monotonic),
        )
        try:
            query = confine(requests_query(model, model.spec.idle_seconds), model.namespace)
            value = fetch(query)
        except (PrometheusError, ScopeError) as err:
            return SignalUnavailable(
                "IdleSignalUnavailable", f"no request count, the model stays up: {err}"
            )
        # No series: the runtime has not counted a request since it started.
        return 0.0 if value is None else value

    def _analyze(
        self,
        model: InferenceModel,
        rollout: Rollout,
        fetch: Callable[[str], float | None],
        now: datetime,
        step: int,
        source: Literal["shadow", "live"] | None = None,
    ) -> AnalysisRun:
        window = rollout.analysis.interval_seconds
        target = AnalysisTarget(model.namespace, model.name, revision_of(model), window)
        if rollout.shadow is not None:  # mirrored and live requests are analysed apart
            target = replace(target, source=source or "live")

        run = run_analysis(rollout.analysis, target, fetch, step=step, now=now)
        ANALYSES.labels(model.namespace, model.name, run.decision).inc()
        return run

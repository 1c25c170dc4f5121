"""Canary analysis as the rollout machine sees it: `analyze(step)` callables for one model.

The rollout machine is pure; this is where its analysis meets Prometheus. The endpoint is
chosen in one place (`AnalysisPort.endpoint`) and every query goes through one injected
callable, so tests fake Prometheus and a different endpoint choice changes one method.
"""

from __future__ import annotations

import os
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

__all__ = ["AnalysisPort", "Analyzers", "Query"]

Query = Callable[[str, str], float | None]
"""`query(prometheus_url, promql)`: the single value of an instant query, or None."""

NO_PROMETHEUS = (
    "no Prometheus configured: set spec.rollout.analysis.prometheusUrl "
    "or the operator's KINFER_PROMETHEUS_URL"
)


@dataclass(frozen=True)
class Analyzers:
    """The two analysis callables a `RolloutContext` takes."""

    analyze: Callable[[int], AnalysisRun]
    """Analysis of the live (canary) step's requests."""
    analyze_shadow: Callable[[int], AnalysisRun]
    """Analysis of mirrored requests only, for the shadow phase."""


class AnalysisPort:
    """Owns where Prometheus is and how it is asked; hands the rollout ready callables."""

    def __init__(self, prometheus_url: str | None = None, query: Query = query_value) -> None:
        """`prometheus_url` is the operator-wide default (else KINFER_PROMETHEUS_URL)."""
        self._default_url = prometheus_url or os.environ.get("KINFER_PROMETHEUS_URL")
        self._query = query

    def endpoint(self, rollout: Rollout) -> str | None:
        """The Prometheus to ask for this model's analysis; None when there is none."""
        return rollout.analysis.prometheus_url or self._default_url

    def analyzers(self, model: InferenceModel, now: datetime) -> Analyzers:
        """Callables that run `spec.rollout.analysis` against the model's current revision."""
        rollout = model.spec.rollout
        if rollout is None:
            raise ValueError(f"{model.namespace}/{model.name} has no spec.rollout to analyse")
        analyze = partial(self._analyze, model, rollout, self.endpoint(rollout), now)
        return Analyzers(analyze=analyze, analyze_shadow=partial(analyze, source="shadow"))

    def _analyze(
        self,
        model: InferenceModel,
        rollout: Rollout,
        prometheus: str | None,
        now: datetime,
        step: int,
        source: Literal["shadow", "live"] | None = None,
    ) -> AnalysisRun:
        window = rollout.analysis.interval_seconds
        target = AnalysisTarget(model.namespace, model.name, revision_of(model), window)
        if rollout.shadow is not None:  # mirrored and live requests are analysed apart
            target = replace(target, source=source or "live")

        def fetch(promql: str) -> float | None:
            if not prometheus:
                raise PrometheusError(NO_PROMETHEUS)
            return self._query(prometheus, promql)

        run = run_analysis(rollout.analysis, target, fetch, step=step, now=now)
        ANALYSES.labels(model.namespace, model.name, run.decision).inc()
        return run

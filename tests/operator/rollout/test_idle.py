"""Scale to zero: when a model goes to zero, and how it is shown at zero and waking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kinfer_operator.model import InferenceModel
from kinfer_operator.rollout.idle import (
    SignalUnavailable,
    decide_idle,
    needs_count,
    requests_query,
    up_since,
)
from kinfer_operator.world import DeploymentView
from support.factories import model_body

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ZERO: dict[str, Any] = {
    "replicas": None,
    "autoscaling": {"minReplicas": 0, "maxReplicas": 4, "idleSeconds": 120},
}


def _model(spec: dict[str, Any] | None = None) -> InferenceModel:
    return InferenceModel.from_body(model_body(ZERO if spec is None else spec))


def _serving(replicas: int = 1, ready: int = 1) -> DeploymentView:
    return DeploymentView.of(
        {
            "metadata": {
                "name": "resnet50-abc",
                "labels": {
                    "serving.kinfer.io/revision": "abc",
                    "serving.kinfer.io/track": "stable",
                },
                "generation": 1,
            },
            "spec": {"replicas": replicas},
            "status": {
                "observedGeneration": 1,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": ready,
                "availableReplicas": ready,
            },
        }
    )


def _decide(
    serving: DeploymentView | None = None,
    *,
    up: float = 600,
    requests: float | SignalUnavailable | None = 0.0,
    rolling: bool = False,
    was_at_zero: bool = False,
    model: InferenceModel | None = None,
) -> Any:
    return decide_idle(
        model or _model(),
        serving if serving is not None else _serving(),
        rolling=rolling,
        awake_since=NOW - timedelta(seconds=up),
        now=NOW,
        requests=requests,
        was_at_zero=was_at_zero,
    )


def test_no_requests_for_idle_seconds_goes_to_zero() -> None:
    decision = _decide()
    assert decision.scale_to_zero and decision.state == "Idle" and decision.at_zero


def test_a_request_in_the_window_keeps_the_model_up_and_looks_again() -> None:
    decision = _decide(requests=3.0)
    assert not decision.scale_to_zero and decision.state == "Awake"
    assert decision.recheck_after is not None


def test_a_woken_model_stays_up_for_idle_seconds_from_the_wake() -> None:
    decision = _decide(up=30)
    assert not decision.scale_to_zero
    assert decision.recheck_after == 90


def test_an_unknown_request_count_keeps_the_model_up_and_says_why() -> None:
    problem = SignalUnavailable("PrometheusNotConfigured", "no default Prometheus endpoint")
    decision = _decide(requests=problem)
    assert not decision.scale_to_zero and decision.problem == problem


def test_a_rollout_in_flight_is_never_sent_to_zero() -> None:
    assert not _decide(rolling=True).scale_to_zero


def test_models_with_a_floor_never_go_to_zero() -> None:
    model = _model({"replicas": None, "autoscaling": {"minReplicas": 1, "maxReplicas": 4}})
    decision = _decide(model=model)
    assert decision.state == "Awake" and not decision.scale_to_zero


def test_a_deployment_at_zero_is_idle_and_is_not_scaled_again() -> None:
    decision = _decide(_serving(replicas=0, ready=0))
    assert decision.state == "Idle" and not decision.scale_to_zero


def test_replicas_asked_for_at_zero_with_none_ready_is_waking() -> None:
    decision = _decide(_serving(replicas=2, ready=0), was_at_zero=True)
    assert decision.state == "Waking" and decision.at_zero and not decision.scale_to_zero


def test_a_first_deployment_with_no_ready_pod_is_not_waking() -> None:
    assert _decide(_serving(replicas=1, ready=0), was_at_zero=False).state == "Awake"


@pytest.mark.parametrize(
    ("up", "ready", "rolling", "asks"),
    [(600, 1, False, True), (30, 1, False, False), (600, 0, False, False), (600, 1, True, False)],
)
def test_prometheus_is_asked_only_when_the_answer_could_send_the_model_to_zero(
    up: float, ready: int, rolling: bool, asks: bool
) -> None:
    assert (
        needs_count(
            _model(),
            _serving(ready=ready),
            rolling=rolling,
            awake_since=NOW - timedelta(seconds=up),
            now=NOW,
        )
        is asks
    )


def test_the_query_reads_the_model_request_counter_over_idle_seconds() -> None:
    query = requests_query(_model(), 120)
    assert query == ('sum(increase(kinfer_requests_total{namespace="ml",model="resnet50"}[120s]))')


def test_awake_since_is_the_oldest_running_pod_start() -> None:
    pods = [
        {"status": {"phase": "Running", "startTime": "2026-01-01T11:50:00Z"}},
        {"status": {"phase": "Running", "startTime": "2026-01-01T11:40:00Z"}},
        {"status": {"phase": "Pending", "startTime": "2026-01-01T10:00:00Z"}},
        {"status": {"phase": "Pending"}},
    ]
    assert up_since(pods) == datetime(2026, 1, 1, 11, 40, tzinfo=UTC)
    assert up_since([]) is None


def test_without_an_activator_the_model_stays_up_and_says_why() -> None:
    decision = decide_idle(
        _model(),
        _serving(),
        rolling=False,
        awake_since=NOW - timedelta(seconds=600),
        now=NOW,
        requests=0.0,
        was_at_zero=False,
        activator=False,
    )
    assert not decision.scale_to_zero
    assert decision.problem is not None and decision.problem.reason == "ActivatorNotInstalled"

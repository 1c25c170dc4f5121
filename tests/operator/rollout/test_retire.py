"""retire_step: a replaced revision goes podsPerStep at a time, each step once the last one's
pods left the Service's EndpointSlices and the receivers are ready, at least intervalSeconds
apart; everything read from the observed world."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kinfer_operator.api.spec import Retire
from kinfer_operator.rollout.retire import retire_step
from kinfer_operator.world import DeploymentView
from kinfer_operator.world.endpoints import routed_pods
from kinfer_operator.world.observed import Observed

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
PACE = Retire(pods_per_step=1, interval_seconds=10)


def _view(replicas: int, status_replicas: int | None = None) -> DeploymentView:
    have = replicas if status_replicas is None else status_replicas
    return DeploymentView.of(
        {
            "metadata": {"name": "m-old", "labels": {}, "generation": 1},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": 1, "replicas": have, "availableReplicas": have},
        }
    )


def _pod(name: str, leaving_since: float | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if leaving_since is not None:
        grace = 30
        at = NOW - timedelta(seconds=leaving_since) + timedelta(seconds=grace)
        meta["deletionTimestamp"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        meta["deletionGracePeriodSeconds"] = grace
    return {"metadata": meta, "status": {"phase": "Running"}}


def test_a_whole_revision_loses_one_pod_per_step() -> None:
    pods = [_pod("a"), _pod("b"), _pod("c")]
    step = retire_step(_view(3), pods, frozenset({"a", "b", "c"}), True, PACE, NOW)
    assert (step.replicas, step.delete) == (2, False) and step.wait == 10


def test_a_removed_pod_still_listed_in_the_endpoints_holds_the_next_step() -> None:
    pods = [_pod("a", leaving_since=30), _pod("b"), _pod("c")]
    step = retire_step(_view(2), pods, frozenset({"a", "b", "c"}), True, PACE, NOW)
    assert step.replicas is None and "a still routed" in step.why
    step = retire_step(_view(2), pods, frozenset({"b", "c"}), True, PACE, NOW)
    assert step.replicas == 1


def test_the_interval_counts_from_when_the_last_pods_were_asked_to_go() -> None:
    pods = [_pod("a", leaving_since=4), _pod("b"), _pod("c")]
    step = retire_step(_view(2), pods, frozenset({"b", "c"}), True, PACE, NOW)
    assert step.replicas is None and step.wait == 6


def test_receivers_not_ready_hold_the_step() -> None:
    step = retire_step(_view(2), [_pod("b"), _pod("c")], frozenset(), False, PACE, NOW)
    assert step.replicas is None and step.why == "receivers not ready"


def test_a_written_step_whose_pods_are_not_marked_yet_is_not_taken_twice() -> None:
    step = retire_step(_view(2), [_pod("a"), _pod("b"), _pod("c")], None, True, PACE, NOW)
    assert step.replicas is None
    step = retire_step(_view(2, status_replicas=3), [], None, True, PACE, NOW)
    assert step.replicas is None and step.why == "last step not taken yet"


def test_at_zero_the_deployment_goes_once_nothing_routes_to_it() -> None:
    pods = [_pod("a", leaving_since=1)]
    assert not retire_step(_view(0), pods, frozenset({"a"}), True, PACE, NOW).delete
    assert retire_step(_view(0), pods, frozenset({"x"}), True, PACE, NOW).delete


def test_larger_steps_remove_more_pods_at_once() -> None:
    pods = [_pod(n) for n in "abcde"]
    pace = Retire(pods_per_step=2, interval_seconds=0)
    assert retire_step(_view(5), pods, None, True, pace, NOW).replicas == 3


def test_routed_pods_reads_ready_endpoints_of_the_model_service_only() -> None:
    def _slice(service: str, *endpoints: tuple[str, bool | None]) -> dict[str, Any]:
        return {
            "metadata": {"labels": {"kubernetes.io/service-name": service}},
            "endpoints": [
                {"conditions": {} if ready is None else {"ready": ready}, "targetRef": {"name": n}}
                for n, ready in endpoints
            ],
        }

    observed = Observed(
        endpoint_slices=(
            _slice("m", ("a", True), ("b", False), ("c", None)),
            _slice("m-canary", ("d", True)),
        )
    )
    assert routed_pods(observed, "m") == frozenset({"a", "c"})
    assert routed_pods(observed, "other") is None

"""set_condition: lastTransitionTime moves only on a status change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kinfer_operator.status import find_condition, set_condition

T = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T
T2 = T + timedelta(seconds=60)


def test_new_condition_gets_now_as_transition_time() -> None:
    out = set_condition([], "Ready", "False", "Deploying", "0/2", now=T1)
    assert out[0].last_transition_time == T1


def test_same_status_keeps_transition_time_but_updates_reason() -> None:
    first = set_condition([], "Ready", "False", "Deploying", "0/2", now=T1)
    second = set_condition(first, "Ready", "False", "GPUUnschedulable", "wait", now=T2)
    ready = find_condition(second, "Ready")
    assert ready is not None
    assert (ready.last_transition_time, ready.reason) == (T1, "GPUUnschedulable")


def test_status_change_moves_transition_time() -> None:
    first = set_condition([], "Ready", "False", "Deploying", "", now=T1)
    second = set_condition(first, "Ready", "True", "Serving", "", now=T2)
    assert second[0].last_transition_time == T2


def test_other_conditions_are_kept() -> None:
    out = set_condition([], "Ready", "True", "Serving", "", now=T1)
    out = set_condition(out, "Degraded", "False", "AsExpected", "", now=T1)
    assert {c.type for c in out} == {"Ready", "Degraded"}

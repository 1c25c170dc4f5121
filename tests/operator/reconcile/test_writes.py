"""The write executor: what it sends, what it holds back, and what it reports."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import HASH_ANNOTATION
from kinfer_operator.reconcile.backoff import BASE_SECONDS
from kinfer_operator.reconcile.plan import Delete, Plan, Scale
from kinfer_operator.reconcile.writes import WriteExecutor
from kinfer_operator.world import WriteFailure
from support.clock import Clock
from support.factories import model_body
from support.fake_kube import FakeKube

MODEL = InferenceModel.from_body(model_body())
NS = MODEL.namespace


def _child(kind: str, name: str, digest: str = "h1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NS, "annotations": {HASH_ANNOTATION: digest}},
        "spec": dict(spec),
    }


def _setup() -> tuple[FakeKube, WriteExecutor, Clock]:
    kube, clock = FakeKube(model_body()), Clock()
    return kube, WriteExecutor(kube, clock.monotonic), clock


def _find(kube: FakeKube) -> Any:
    """Reads of the fake's current children, as an up-to-date cache would answer."""
    return lambda kind, name: copy.deepcopy(kube.children.get((kind, name)))


def _refuse(kind: str, code: int = 422) -> Any:
    def refuse(verb: str, obj: Mapping[str, Any]) -> WriteFailure | None:
        if obj["kind"] != kind:
            return None
        return WriteFailure(verb, kind, obj["metadata"]["name"], code, "Invalid", "no")

    return refuse


def test_a_409_counts_as_a_conflict_not_a_failure_and_does_not_back_off() -> None:
    kube, executor, _ = _setup()
    kube.apply(_child("Deployment", "d", replicas=1))
    stale = copy.deepcopy(kube.children[("Deployment", "d")])
    kube.scale(NS, "d", 2)  # someone else wrote since the pass read it
    backoff = executor.backoff_for(NS, MODEL.name, 1)
    written = executor.execute(MODEL, lambda _k, _n: stale, Plan(scales=[Scale("d", 3)]), backoff)
    assert (written.conflicts, written.failures) == (1, [])
    assert backoff.next_retry_in() is None
    assert kube.children[("Deployment", "d")]["spec"]["replicas"] == 2


def test_a_write_in_backoff_is_reported_and_not_sent() -> None:
    kube, executor, clock = _setup()
    kube.refuse = _refuse("ConfigMap")
    decided = Plan(applies=[_child("ConfigMap", "c")])
    first = executor.execute(MODEL, _find(kube), decided, executor.backoff_for(NS, "m", 1))
    clock.t = BASE_SECONDS / 2
    again = executor.execute(MODEL, _find(kube), decided, executor.backoff_for(NS, "m", 1))
    assert kube.writes[("apply", "ConfigMap")] == 1
    assert [f.code for f in first.failures] == [422]
    assert again.failures == first.failures
    clock.t = BASE_SECONDS
    executor.execute(MODEL, _find(kube), decided, executor.backoff_for(NS, "m", 1))
    assert kube.writes[("apply", "ConfigMap")] == 2  # its backoff ran out


def test_a_refused_apply_does_not_stop_later_writes() -> None:
    kube, executor, _ = _setup()
    kube.apply(_child("ConfigMap", "old"))
    kube.refuse = _refuse("Deployment")
    decided = Plan(
        applies=[_child("Deployment", "d"), _child("Service", "s")],
        scales=[Scale("d", 2)],
        deletes=[Delete("ConfigMap", "old")],
    )
    written = executor.execute(MODEL, _find(kube), decided, executor.backoff_for(NS, "m", 1))
    assert [(f.verb, f.kind) for f in written.failures] == [("apply", "Deployment")]
    assert set(kube.children) == {("Service", "s")}  # applied, and the old one deleted
    assert kube.writes[("scale", "Deployment")] == 0  # nothing to scale yet


def test_only_what_differs_is_written_and_a_fresh_apply_is_scaled_at_once() -> None:
    kube, executor, _ = _setup()
    decided = Plan(applies=[_child("Deployment", "d", replicas=1)], scales=[Scale("d", 3)])
    backoff = executor.backoff_for(NS, "m", 1)
    executor.execute(MODEL, _find(kube), decided, backoff)
    assert kube.children[("Deployment", "d")]["spec"]["replicas"] == 3
    executor.execute(MODEL, _find(kube), decided, backoff)
    assert kube.writes[("apply", "Deployment")] == 1
    assert kube.writes[("scale", "Deployment")] == 1


def test_a_new_generation_lets_a_backed_off_write_through_at_once() -> None:
    kube, executor, _ = _setup()
    kube.refuse = _refuse("ConfigMap")
    decided = Plan(applies=[_child("ConfigMap", "c")])
    executor.execute(MODEL, _find(kube), decided, executor.backoff_for(NS, "m", 1))
    kube.refuse = lambda _verb, _obj: None
    written = executor.execute(MODEL, _find(kube), decided, executor.backoff_for(NS, "m", 2))
    assert written.failures == []
    assert ("ConfigMap", "c") in kube.children


def test_a_forgotten_model_starts_without_write_history() -> None:
    kube, executor, _ = _setup()
    kube.refuse = _refuse("ConfigMap")
    decided = Plan(applies=[_child("ConfigMap", "c")])
    executor.execute(MODEL, _find(kube), decided, executor.backoff_for(NS, "m", 1))
    assert executor.backoff_for(NS, "m", 1).next_retry_in() == BASE_SECONDS
    executor.forget(NS, "m")
    assert executor.backoff_for(NS, "m", 1).next_retry_in() is None


def test_a_write_the_plan_no_longer_wants_is_forgotten() -> None:
    kube, executor, _ = _setup()
    kube.refuse = _refuse("ConfigMap")
    backoff = executor.backoff_for(NS, "m", 1)
    executor.execute(MODEL, _find(kube), Plan(applies=[_child("ConfigMap", "c")]), backoff)
    executor.execute(MODEL, _find(kube), Plan(), backoff)
    assert backoff.failure_of(("apply", "ConfigMap", "c")) is None

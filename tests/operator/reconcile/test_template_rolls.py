"""Template-only changes (an operator upgrade) roll a bounded number of models at once."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from kinfer_operator.naming import (
    TEMPLATE_HASH_ANNOTATION,
    TEMPLATE_MARK_ANNOTATION,
    TEMPLATE_ROLL_ANNOTATION,
)
from kinfer_operator.reconcile.run import Reconciler
from kinfer_operator.reconcile.template_rolls import (
    TEMPLATE_WAIT_SECONDS,
    TemplateRolls,
    decide_slot,
    is_rolling,
    template_changed,
)
from support.clock import Clock
from support.factories import model_body
from support.fake_kube import FakeKube
from support.passes import condition, one_pass

# -- the slot decision -----------------------------------------------------------------------


def test_a_free_slot_is_granted_and_counted() -> None:
    grant = decide_slot(("ml", "a"), rolling={("ml", "b")}, pending=set(), limit=2)
    assert (grant.granted, grant.in_use, grant.limit) == (True, 2, 2)


def test_no_slot_is_granted_when_rolls_and_pending_grants_fill_the_limit() -> None:
    grant = decide_slot(("ml", "c"), rolling={("ml", "a")}, pending={("ml", "b")}, limit=2)
    assert (grant.granted, grant.in_use) == (False, 2)


def test_a_deployment_already_rolling_keeps_its_slot_even_over_the_limit() -> None:
    rolling = {("ml", "a"), ("ml", "b"), ("ml", "c")}  # e.g. the limit was lowered meanwhile
    grant = decide_slot(("ml", "b"), rolling=rolling, pending=set(), limit=2)
    assert (grant.granted, grant.in_use) == (True, 3)


def _deployment(
    name: str,
    *,
    digest: str = "t2",
    mark: str | None = "t2",
    generation: int = 2,
    observed: int = 2,
    replicas: int = 2,
    updated: int = 2,
    total: int | None = None,
) -> dict[str, Any]:
    annotations = {TEMPLATE_HASH_ANNOTATION: digest}
    if mark is not None:
        annotations[TEMPLATE_ROLL_ANNOTATION] = mark
    return {
        "metadata": {
            "name": name,
            "namespace": "ml",
            "generation": generation,
            "annotations": annotations,
        },
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas if total is None else total,
            "updatedReplicas": updated,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        },
    }


@pytest.mark.parametrize(
    ("deployment", "rolling"),
    [
        (_deployment("a", observed=1), True),  # the controller has not seen the new template
        (_deployment("a", updated=1), True),  # not all replicas run it yet
        (_deployment("a", total=3), True),  # an old pod is still there (a new one unready)
        (_deployment("a"), False),  # settled
        (_deployment("a", observed=1, mark=None), False),  # a spec change's rollout
        (_deployment("a", observed=1, mark="t1"), False),  # the mark of an earlier upgrade
    ],
)
def test_a_deployment_holds_a_slot_only_while_it_rolls_a_marked_template(
    deployment: dict[str, Any], rolling: bool
) -> None:
    assert is_rolling(deployment) is rolling


def test_a_deployment_without_a_recorded_digest_counts_as_changed() -> None:
    desired = _deployment("a")
    older = _deployment("a")
    del older["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]
    assert template_changed(desired, older)
    assert not template_changed(desired, _deployment("a"))
    assert not template_changed(desired, None)


def test_a_slot_is_held_from_the_grant_until_a_later_read_of_the_cache() -> None:
    clock = Clock()
    rolls = TemplateRolls(1, list, monotonic=clock.monotonic, snapshot_seconds=1.0)
    assert rolls.acquire(("ml", "a")).granted
    assert not rolls.acquire(("ml", "b")).granted  # not in the cache yet, still taken
    clock.t += 0.5
    rolls.release(("ml", "a"))
    assert not rolls.acquire(("ml", "b")).granted  # the count read before the write is stale
    clock.t += 1.0
    assert rolls.acquire(("ml", "b")).granted  # read again: "a" is not rolling (or done)


def test_the_cache_is_read_at_most_once_per_snapshot_period() -> None:
    clock = Clock()
    reads: list[float] = []
    rolling = [_deployment("a", observed=1)]

    def deployments() -> list[dict[str, Any]]:
        reads.append(clock.t)
        return rolling

    rolls = TemplateRolls(1, deployments, monotonic=clock.monotonic, snapshot_seconds=1.0)
    for _ in range(5):
        assert not rolls.acquire(("ml", "b")).granted
    rolling.clear()  # "a" finished
    assert not rolls.acquire(("ml", "b")).granted  # seen only at the next read
    clock.t += 1.0
    assert rolls.acquire(("ml", "b")).granted
    assert reads == [0.0, 1.0]


def test_concurrent_workers_never_grant_more_slots_than_the_limit() -> None:
    rolls = TemplateRolls(3, list, snapshot_seconds=0.0)  # every request reads the cache
    granted: list[bool] = []
    start = threading.Barrier(16)

    def ask(i: int) -> None:
        start.wait()
        granted.append(rolls.acquire(("ml", f"m{i}")).granted)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert granted.count(True) == 3


def test_a_settled_roll_wakes_the_oldest_waiters_one_per_free_slot() -> None:
    clock = Clock()
    rolling = [_deployment("a", observed=1), _deployment("b", observed=1)]
    woken: list[tuple[str, str]] = []
    rolls = TemplateRolls(2, lambda: rolling, monotonic=clock.monotonic, wake=woken.append)
    for model in ("m1", "m2", "m3"):
        assert not rolls.acquire(("ml", f"{model}-dep"), ("ml", model)).granted
    assert not rolls.acquire(("ml", "m1-dep"), ("ml", "m1")).granted  # asking again: same place
    assert rolls.waiters() == [("ml", "m1"), ("ml", "m2"), ("ml", "m3")]

    rolling[0] = _deployment("a")  # "a" finished; its model's pass sees it
    clock.t += 0.1  # well within the snapshot period: the keeper reads the cache again
    assert rolls.settled(("ml", "a")) == [("ml", "m1")]
    assert woken == [("ml", "m1")]

    assert rolls.acquire(("ml", "m1-dep"), ("ml", "m1")).granted  # the woken model's pass,
    rolls.not_waiting(("ml", "m1"))  # which held nothing back
    assert rolls.waiters() == [("ml", "m2"), ("ml", "m3")]
    assert rolls.settled(("ml", "a")) == []  # later passes of a settled model wake no one
    assert woken == [("ml", "m1")]


def test_a_settled_roll_wakes_no_one_while_every_slot_is_still_taken() -> None:
    clock = Clock()
    rolling = [_deployment("a", observed=1), _deployment("b", observed=1)]
    woken: list[tuple[str, str]] = []
    rolls = TemplateRolls(1, lambda: rolling, monotonic=clock.monotonic, wake=woken.append)
    assert not rolls.acquire(("ml", "c"), ("ml", "mc")).granted  # the limit was lowered
    rolling[0] = _deployment("a")
    assert rolls.settled(("ml", "a")) == [] and woken == []  # "b" still fills the one slot
    rolling[1] = _deployment("b")
    assert rolls.settled(("ml", "b")) == [("ml", "mc")] and woken == [("ml", "mc")]


def test_a_model_that_no_longer_waits_leaves_the_line() -> None:
    rolls = TemplateRolls(1, lambda: [_deployment("a", observed=1)])
    assert not rolls.acquire(("ml", "b"), ("ml", "mb")).granted
    assert not rolls.acquire(("ml", "c"), ("ml", "mc")).granted
    rolls.not_waiting(("ml", "mb"))
    assert rolls.waiters() == [("ml", "mc")]


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        TemplateRolls(0, list)


# -- whole passes ----------------------------------------------------------------------------


class _Cluster:
    """The fake's Deployments plus other models' Deployments rolling elsewhere."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube
        self.elsewhere: list[dict[str, Any]] = []

    def deployments(self) -> Iterable[Mapping[str, Any]]:
        return [*self.kube.deployments(), *self.elsewhere]


def _settle(kube: FakeKube) -> None:
    """The Deployment controller finishes every rollout."""
    for dep in kube.deployments():
        want = int(dep["spec"].get("replicas", 1))
        dep["status"] = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": want,
            "updatedReplicas": want,
            "readyReplicas": want,
            "availableReplicas": want,
        }


def _serving(limit: int = 1) -> tuple[FakeKube, _Cluster, Reconciler]:
    """A model Ready on the old operator's template."""
    kube = FakeKube(model_body())
    cluster = _Cluster(kube)
    clock = Clock()
    reconciler = Reconciler(
        kube,
        clock=clock.now,
        monotonic=clock.monotonic,
        template_rolls=TemplateRolls(limit, cluster.deployments),
    )
    one_pass(reconciler)
    _settle(kube)
    one_pass(reconciler)
    assert condition(kube, "Ready")[:2] == ("True", "Serving")
    return kube, cluster, reconciler


def _the_deployment(kube: FakeKube) -> dict[str, Any]:
    (dep,) = kube.deployments()
    return dep


def _pod_annotations(kube: FakeKube) -> dict[str, str]:
    return dict(_the_deployment(kube)["spec"]["template"]["metadata"]["annotations"])


def test_a_steady_model_is_not_rewritten_with_the_gate_on() -> None:
    kube, _, reconciler = _serving()
    before = kube.thread_writes()
    outcome = one_pass(reconciler)
    assert outcome.writes == 0 and kube.thread_writes() == before
    assert outcome.requeue_after is None


def test_a_template_change_without_a_free_slot_keeps_the_old_template_and_says_so() -> None:
    kube, cluster, reconciler = _serving(limit=1)
    cluster.elsewhere.append(_deployment("other-abc", observed=1))  # another model rolls
    reconciler.template_mark = "upgrade-1"
    applied = kube.writes[("apply", "Deployment")]

    outcome = one_pass(reconciler)

    assert kube.writes[("apply", "Deployment")] == applied
    assert TEMPLATE_MARK_ANNOTATION not in _pod_annotations(kube)
    assert condition(kube, "Ready")[:2] == ("True", "Serving")
    assert condition(kube, "Progressing") == (
        "True",
        "OperatorUpgrade",
        "waiting to roll the operator's new pod template: 1 of 1 slots in use",
    )
    assert outcome.requeue_after is not None and outcome.requeue_after <= TEMPLATE_WAIT_SECONDS
    assert reconciler.template_rolls is not None
    assert reconciler.template_rolls.waiters() == [("ml", "resnet50")]  # in line for a slot


def test_a_template_change_with_a_free_slot_rolls_and_holds_the_slot_until_settled() -> None:
    kube, cluster, reconciler = _serving(limit=1)
    reconciler.template_mark = "upgrade-1"

    one_pass(reconciler)

    dep = _the_deployment(kube)
    assert _pod_annotations(kube)[TEMPLATE_MARK_ANNOTATION] == "upgrade-1"
    annotations = dep["metadata"]["annotations"]
    assert annotations[TEMPLATE_ROLL_ANNOTATION] == annotations[TEMPLATE_HASH_ANNOTATION]
    status, reason, message = condition(kube, "Progressing")
    assert (status, reason) == ("True", "OperatorUpgrade")
    assert "rolling the operator's new pod template" in message
    assert condition(kube, "Ready")[:2] == ("True", "Serving")  # maxUnavailable 0

    # A restarted operator (a new slot keeper) reads the roll from the cluster alone.
    restarted = TemplateRolls(1, cluster.deployments)
    assert restarted.rolling() == {("ml", dep["metadata"]["name"])}
    assert not restarted.acquire(("ml", "another-model-abc")).granted
    one_pass(reconciler)
    assert "replicas updated" in condition(kube, "Progressing")[2]

    _settle(kube)
    one_pass(reconciler)
    assert condition(kube, "Progressing")[:2] == ("False", "RolloutComplete")
    assert TemplateRolls(1, cluster.deployments).rolling() == set()
    before = kube.thread_writes()
    assert one_pass(reconciler).writes == 0 and kube.thread_writes() == before


def test_the_pass_that_sees_a_roll_settle_wakes_the_oldest_waiting_model() -> None:
    kube = FakeKube(model_body())
    cluster = _Cluster(kube)
    clock = Clock()
    woken: list[tuple[str, str]] = []
    rolls = TemplateRolls(1, cluster.deployments, monotonic=clock.monotonic, wake=woken.append)
    reconciler = Reconciler(kube, clock=clock.now, monotonic=clock.monotonic, template_rolls=rolls)
    one_pass(reconciler)
    _settle(kube)
    one_pass(reconciler)
    reconciler.template_mark = "upgrade-1"
    one_pass(reconciler)  # this model takes the one slot
    clock.t += 2.0
    assert not rolls.acquire(("ml", "other-abc"), ("ml", "other")).granted  # another waits
    one_pass(reconciler)  # still rolling: nobody is woken
    assert woken == []

    _settle(kube)  # the Deployment's status event brings this model's pass
    clock.t += 0.1
    one_pass(reconciler)

    assert woken == [("ml", "other")]
    assert rolls.acquire(("ml", "other-abc"), ("ml", "other")).granted
    one_pass(reconciler)
    assert woken == [("ml", "other")]  # once per freed slot


def test_a_spec_change_is_never_held_back_by_the_template_gate() -> None:
    kube, cluster, reconciler = _serving(limit=1)
    cluster.elsewhere.append(_deployment("other-abc", observed=1))  # no slot left
    reconciler.template_mark = "upgrade-1"  # and the template changed too
    old = _the_deployment(kube)["metadata"]["name"]
    kube.set_spec({**kube.model["spec"], "model": {**kube.model["spec"]["model"], "version": "2"}})

    one_pass(reconciler)

    names = {d["metadata"]["name"] for d in kube.deployments()}
    assert len(names) == 2 and old in names  # the new revision surges in next to the old
    (new,) = names - {old}
    created = kube.children[("Deployment", new)]
    assert created["spec"]["template"]["metadata"]["annotations"][TEMPLATE_MARK_ANNOTATION]
    assert TEMPLATE_ROLL_ANNOTATION not in created["metadata"]["annotations"]

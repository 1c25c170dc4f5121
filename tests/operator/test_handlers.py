"""handlers.Controller: what each trigger and each pass lead to, on the real work queue."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kinfer_operator.handlers import Controller
from kinfer_operator.reconcile import Outcome
from kinfer_operator.world import Store
from kinfer_operator.world.cost import CostLedger
from support.factories import model_body
from support.gpu_pods import T0, gpu_pod

KEY = ("ml", "resnet50")


class _Reconciler:
    """Records passes and collections; answers with a scripted outcome or error."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.outcome: Outcome | None = Outcome(writes=0, plan=None, status=None)
        self.error: Exception | None = None
        self.forgotten: list[tuple[str, str]] = []
        self.collected: list[tuple[str, str, str]] = []
        self.costs = CostLedger()

    def reconcile(self, namespace: str, name: str, trigger: str) -> Any:
        self.calls.append((namespace, name, trigger))
        if self.error is not None:
            raise self.error
        return self.outcome

    def forget(self, namespace: str, name: str) -> None:
        self.forgotten.append((namespace, name))

    seeded = 0

    def seed_routes(self) -> None:
        self.seeded += 1

    def collect(self, namespace: str, name: str, uid: str) -> int:
        self.collected.append((namespace, name, uid))
        return 0


@pytest.fixture
def reconciler() -> _Reconciler:
    return _Reconciler()


def _controller(reconciler: _Reconciler, **kw: Any) -> Controller:
    return Controller(reconciler, Store(), workers=0, resync_seconds=300, **kw)  # type: ignore[arg-type]


def _recording_relist(found: set[tuple[str, str]]) -> tuple[list[bool], Any]:
    """A relist that records each call and reports `found` as the models it changed."""
    calls: list[bool] = []

    def relist() -> set[tuple[str, str]]:
        calls.append(True)
        return found

    return calls, relist


def _run_ready(controller: Controller) -> None:
    while (key := controller.queue.get(timeout=0)) is not None:
        controller.process(key)
        controller.queue.done(key)


def test_standby_replica_reconciles_nothing_whatever_the_trigger(reconciler: _Reconciler) -> None:
    standby = True
    controller = _controller(reconciler, standby=lambda: standby)
    for trigger in ("model", "deployment", "pod"):
        controller.enqueue(KEY, trigger)
        _run_ready(controller)
    assert reconciler.calls == []
    assert controller.queue.due_in(KEY) == pytest.approx(300, abs=1)  # looks again later

    standby = False
    controller.enqueue(KEY, "model")
    _run_ready(controller)
    assert reconciler.calls == [("ml", "resnet50", "model")]
    controller.stop()


def test_a_standby_that_takes_over_runs_the_passes_it_put_off_at_once(
    reconciler: _Reconciler,
) -> None:
    standby = True
    controller = _controller(reconciler, standby=lambda: standby)
    controller.enqueue(KEY, "model")
    _run_ready(controller)
    assert controller.queue.due_in(KEY) == pytest.approx(300, abs=1)
    standby = False
    controller.took_over()
    _run_ready(controller)
    assert reconciler.calls == [("ml", "resnet50", "leader")]
    controller.took_over()  # nothing left over: a second takeover asks for nothing
    _run_ready(controller)
    assert len(reconciler.calls) == 1
    controller.stop()


def test_taking_over_from_standby_relists_and_requeues_what_changed(
    reconciler: _Reconciler,
) -> None:
    standby = True
    relisted, relist = _recording_relist({("ml", "other")})
    controller = _controller(reconciler, standby=lambda: standby, relist=relist)
    controller.enqueue(KEY, "model")
    _run_ready(controller)
    standby = False
    controller.enqueue(KEY, "model")
    _run_ready(controller)
    assert relisted == [True]
    assert ("ml", "other", "relist") in reconciler.calls
    controller.stop()


def test_the_cache_is_relisted_periodically_except_on_a_standby(
    reconciler: _Reconciler,
) -> None:
    standby = False
    relisted, relist = _recording_relist({("ml", "deleted-unseen")})
    controller = _controller(
        reconciler, standby=lambda: standby, relist=relist, relist_seconds=0.05
    )
    controller.relist_if_due()
    assert relisted == []  # not due yet: the watches' own listing is fresh
    time.sleep(0.06)
    controller.relist_if_due()
    controller.relist_if_due()
    assert relisted == [True]
    _run_ready(controller)
    assert reconciler.calls == [("ml", "deleted-unseen", "relist")]
    standby, relisted[:] = True, []
    time.sleep(0.06)
    controller.relist_if_due()
    assert relisted == []
    controller.stop()


def test_a_pass_schedules_the_next_at_the_rollouts_time_or_the_resync(
    reconciler: _Reconciler,
) -> None:
    controller = _controller(reconciler)
    reconciler.outcome = Outcome(writes=0, plan=None, status=None, requeue_after=12.0)
    controller.enqueue(KEY, "model")
    _run_ready(controller)
    assert controller.queue.due_in(KEY) == pytest.approx(12, abs=1)
    controller.stop()


def test_a_failing_pass_is_retried_with_backoff_until_it_succeeds(
    reconciler: _Reconciler,
) -> None:
    controller = _controller(reconciler)
    reconciler.error = RuntimeError("API server down")
    controller.process(KEY)
    assert controller.queue.due_in(KEY) == pytest.approx(1.0, abs=0.5)  # the base delay
    controller.process(KEY)  # failed again (as if the retry ran)
    assert controller.queue._failures[KEY] == 2  # the next delay doubles (test_queue.py)
    reconciler.error = None
    controller.process(KEY)
    assert KEY not in controller.queue._failures  # success resets the backoff
    controller.stop()


def test_only_changes_beyond_status_wake_a_model(reconciler: _Reconciler) -> None:
    controller = _controller(reconciler)
    body = model_body(resourceVersion="1")
    controller.model_seen(body)
    assert controller.take_change(body) == KEY  # new: worth a pass
    own_status_write = {**body, "status": {"phase": "Ready"}}
    own_status_write["metadata"] = {**body["metadata"], "resourceVersion": "2"}
    controller.model_seen(own_status_write)
    assert controller.take_change(own_status_write) is None
    edited = {**own_status_write, "metadata": {**body["metadata"], "generation": 2}}
    controller.model_seen(edited)
    assert controller.take_change(edited) == KEY
    annotated = {**edited, "metadata": {**edited["metadata"], "annotations": {"a": "b"}}}
    controller.model_seen(annotated)
    assert controller.take_change(annotated) == KEY
    controller.stop()


def test_a_deleted_model_is_forgotten(reconciler: _Reconciler) -> None:
    controller = _controller(reconciler)
    controller.queue.add_after(KEY, 300)
    controller.model_gone(KEY, "uid-1")
    assert controller.queue.due_in(KEY) is None  # no resync for it any more
    assert reconciler.forgotten == [KEY]
    controller.stop()


def test_workers_drain_the_queue(reconciler: _Reconciler) -> None:
    controller = Controller(reconciler, Store(), workers=2, resync_seconds=300)  # type: ignore[arg-type]
    controller.start()
    for i in range(20):
        controller.enqueue(("ml", f"m{i}"), "model")
    deadline = time.monotonic() + 5
    while len(reconciler.calls) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    controller.stop()
    assert sorted(c[1] for c in reconciler.calls) == sorted(f"m{i}" for i in range(20))


def test_an_idle_worker_releases_memory_once_after_models_went_away(
    reconciler: _Reconciler, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kinfer_operator.handlers as handlers

    released: list[bool] = []
    monkeypatch.setattr(handlers, "release_memory", lambda: released.append(True))
    controller = _controller(reconciler)
    controller._idle()
    assert released == []  # nothing was deleted
    controller.model_gone(KEY, "uid-1")
    controller._idle()
    controller._idle()
    assert released == [True]
    controller.stop()


def test_a_deleted_pod_leaves_the_cache_for_the_cost_ledger(reconciler: _Reconciler) -> None:
    store = Store()
    model = model_body()
    store.upsert("InferenceModel", model)
    pod = gpu_pod("abc", 2, started=0, deleting=10)
    pod["metadata"].update(
        namespace="ml",
        labels={"serving.kinfer.io/model": "resnet50", "serving.kinfer.io/revision": "abc"},
    )
    store.upsert("Pod", pod)
    controller = Controller(reconciler, store, workers=0)  # type: ignore[arg-type]
    assert controller.pod_deleted(pod) == KEY
    assert store.observe("ml", "resnet50", "uid-1").pods == ()
    assert reconciler.costs.retired(model) == {"abc": 20}
    controller.pod_deleted(pod)  # a replayed DELETED event
    assert reconciler.costs.retired(model) == {"abc": 20}


def test_a_pod_a_relist_found_gone_is_charged_until_now(reconciler: _Reconciler) -> None:
    store = Store()
    model = model_body()
    store.upsert("InferenceModel", model)
    pod = gpu_pod("abc", 1, started=int(time.time()) - T0 - 30)  # running, DELETED missed
    pod["metadata"].update(
        namespace="ml",
        labels={"serving.kinfer.io/model": "resnet50", "serving.kinfer.io/revision": "abc"},
    )
    controller = Controller(reconciler, store, workers=0)  # type: ignore[arg-type]
    controller.pod_vanished(pod)
    assert 29 <= reconciler.costs.retired(model)["abc"] <= 32
    controller.pod_vanished(pod)  # once per pod
    assert reconciler.costs.retired(model)["abc"] <= 32


def test_a_deleted_models_children_are_collected_by_a_worker(reconciler: _Reconciler) -> None:
    reconciler.outcome = None  # the model is gone
    controller = _controller(reconciler)
    controller.model_gone(KEY, "uid-1")
    _run_ready(controller)
    assert reconciler.collected == [("ml", "resnet50", "uid-1")]
    controller.enqueue(KEY, "pod")  # a late event of one of its pods
    _run_ready(controller)
    assert len(reconciler.collected) == 1  # once
    controller.stop()


def test_taking_over_reads_the_activator_and_seeds_the_routing_table_first(
    reconciler: _Reconciler,
) -> None:
    refreshed: list[bool] = []
    controller = _controller(reconciler, activator_refresh=lambda: refreshed.append(True) or True)
    controller.took_over()
    assert (refreshed, reconciler.seeded) == ([True], 1)


def test_a_change_of_the_ready_activator_pods_requeues_every_model(
    reconciler: _Reconciler,
) -> None:
    controller = _controller(reconciler, activator_refresh=lambda: False)
    for name in ("a", "b"):
        controller.store.upsert("InferenceModel", model_body(name=name))
    controller.activator_changed()
    assert controller.queue.depth() == 2

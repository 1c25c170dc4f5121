"""The GPU-seconds arithmetic: fixed times, so every figure below is worked out by hand."""

from __future__ import annotations

from kinfer_operator.api.status import RevisionCost
from kinfer_operator.naming import REVISION_LABEL
from kinfer_operator.world.cost import (
    MAX_REVISIONS,
    CostLedger,
    live_gpu_seconds,
    pod_usage,
    revision_costs,
)
from support.gpu_pods import GPU, T0, gpu_pod, model


def test_running_pod_costs_its_gpus_times_its_age() -> None:
    assert pod_usage(gpu_pod("a", 2, started=100), GPU).seconds(T0 + 400) == 600


def test_gpus_add_up_over_containers_and_only_count_the_models_resource() -> None:
    assert pod_usage(gpu_pod("a", [2, 3]), GPU).gpus == 5
    assert pod_usage(gpu_pod("a", 4, resource="amd.com/gpu"), GPU).gpus == 0
    assert pod_usage(gpu_pod("a", 4, resource="amd.com/gpu"), "amd.com/gpu").gpus == 4


def test_pod_that_never_started_costs_nothing() -> None:
    assert pod_usage(gpu_pod("a", 8, started=None), GPU).seconds(T0 + 10_000) == 0


def test_finished_pod_stops_at_its_last_container() -> None:
    pod = gpu_pod("a", [1, 1], started=10, finished=[70, 110], phase="Succeeded")
    assert pod_usage(pod, GPU).seconds(T0 + 5_000) == 2 * (
        110 - 10
    )  # the last container ends at 110


def test_a_lone_crashed_container_in_a_running_pod_keeps_the_gpus() -> None:
    pod = gpu_pod("a", 1, started=0, finished=50, phase="Running")
    assert pod_usage(pod, GPU).seconds(T0 + 300) == 300


def test_deleting_pod_stops_at_its_deletion_timestamp() -> None:
    pod = gpu_pod("a", 2, started=0, deleting=100)
    assert pod_usage(pod, GPU).seconds(T0 + 60) == 120
    assert pod_usage(pod, GPU).seconds(T0 + 900) == 200


def test_status_facts_split_by_revision_and_give_the_live_figure() -> None:
    pods = [
        gpu_pod("old", 1, started=0, uid="1"),
        gpu_pod("old", 1, started=20, uid="2"),
        gpu_pod("new", 2, started=100, uid="3"),
        gpu_pod("new", 2, started=None, uid="4"),
        gpu_pod("new", 2, started=0, finished=30, phase="Failed", uid="5"),
    ]
    costs = revision_costs(pods, GPU, {"old": 500}, stable="old", canary="new")
    assert costs is not None
    by = {c.revision: c for c in costs}
    assert [c.revision for c in costs] == ["old", "new"]
    assert by["old"] == RevisionCost(
        revision="old",
        track="stable",
        retired_gpu_seconds=500,
        running_gpus=2,
        running_gpu_start_sum=2 * T0 + 20,
    )
    assert by["new"].track == "canary"
    assert (by["new"].running_gpus, by["new"].finished_gpu_seconds) == (2, 60)
    now = T0 + 200
    assert live_gpu_seconds(by["old"], now) == 500 + 200 + 180
    assert live_gpu_seconds(by["new"], now) == 60 + 2 * 100
    # the status figure is the same as the per-pod one
    assert live_gpu_seconds(by["new"], now) == sum(pod_usage(p, GPU).seconds(now) for p in pods[2:])


def test_status_facts_do_not_move_with_the_clock() -> None:
    pods = [gpu_pod("a", 1, started=0)]
    assert revision_costs(pods, GPU, {}, "a", None) == revision_costs(pods, GPU, {}, "a", None)


def test_cpu_model_has_no_cost() -> None:
    assert revision_costs([gpu_pod("a", 0)], GPU, {}, "a", None) is None


def test_retired_revisions_newest_first_and_bounded() -> None:
    retired = {f"r{i}": 10 for i in range(20)}  # r19 retired most recently
    costs = revision_costs([gpu_pod("s", 1)], GPU, retired, "s", None)
    assert costs is not None
    assert len(costs) == MAX_REVISIONS
    assert [c.revision for c in costs[:3]] == ["s", "r19", "r18"]
    assert {c.track for c in costs[1:]} == {"retired"}


def test_deleted_pod_is_folded_once_even_when_its_event_replays() -> None:
    ledger = CostLedger()
    pod = gpu_pod("a", 2, started=0, deleting=50)
    assert ledger.retire(model(), pod, T0 + 80) == 100
    assert ledger.retire(model(), pod, T0 + 90) == 0
    assert ledger.retired(model()) == {"a": 100}


def test_deleted_pod_uses_the_event_time_when_no_end_is_known() -> None:
    ledger = CostLedger()
    assert ledger.retire(model(), gpu_pod("a", 3, started=0), T0 + 10.9) == 30


def test_restart_rebuilds_from_status_and_pods_without_double_counting() -> None:
    running = gpu_pod("a", 1, started=100, uid="live")
    before = CostLedger()
    before.retire(model(), gpu_pod("a", 2, started=0, deleting=40, uid="gone"), T0 + 60)
    costs = revision_costs([running], GPU, before.retired(model()), "a", None)
    assert costs is not None
    persisted = [c.model_dump(by_alias=True, exclude_none=True) for c in costs]
    after = CostLedger()  # a fresh operator: only status and the pods it lists
    body = model(persisted)
    assert after.retired(body) == {"a": 80}
    now = T0 + 300
    rebuilt = after.retired(body)["a"] + pod_usage(running, GPU).seconds(now)
    assert rebuilt == 80 + 200 == live_gpu_seconds(costs[0], now)
    # the seed happens once: later statuses (stale or not) never roll the ledger back
    after.retire(body, gpu_pod("a", 1, started=0, deleting=20, uid="g2"), T0 + 30)
    assert after.retired(model([])) == {"a": 100}


def test_retired_revisions_keep_their_order_across_a_restart() -> None:
    ledger = CostLedger()
    for i, rev in enumerate(["r1", "r2", "r3"]):
        ledger.retire(model(), gpu_pod(rev, 1, started=0, uid=rev), T0 + 10 * (i + 1))
    costs = revision_costs([], GPU, ledger.retired(model()), "r3", None)
    assert costs is not None
    persisted = [c.model_dump(by_alias=True, exclude_none=True) for c in costs]
    assert list(CostLedger().retired(model(persisted))) == ["r1", "r2", "r3"]


def test_forgotten_model_starts_from_its_status_again() -> None:
    ledger = CostLedger()
    ledger.retire(model(), gpu_pod("a", 1), T0 + 5)
    ledger.forget("ml", "m")
    assert ledger.retired(model()) == {}


def test_gpu_seconds_stay_flat_while_a_model_is_at_zero() -> None:
    # At zero the model has no pods; a pod still Pending for want of a GPU has no start.
    waiting = {"metadata": {"labels": {REVISION_LABEL: "abc"}}, "status": {"phase": "Pending"}}
    (cost,) = revision_costs([waiting], "nvidia.com/gpu", {"abc": 500}, "abc", None) or []
    assert cost.running_gpus == 0
    assert live_gpu_seconds(cost, 1_000.0) == live_gpu_seconds(cost, 1_000_000.0) == 500

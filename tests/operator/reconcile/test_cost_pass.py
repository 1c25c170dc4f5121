"""status.cost through whole passes: facts that move only with pod lifecycles."""

from __future__ import annotations

from typing import Any

from kinfer_operator.reconcile.run import Reconciler
from support.clock import Clock
from support.factories import model_body
from support.fake_kube import FakeKube
from support.gpu_pods import T0, gpu_pod


def _pod(revision: str, uid: str, **kw: Any) -> dict[str, Any]:
    pod = gpu_pod(revision, uid=uid, **kw)
    pod["metadata"]["labels"]["serving.kinfer.io/model"] = "resnet50"
    return pod


def _serving() -> tuple[FakeKube, Reconciler, str]:
    kube = FakeKube(model_body())
    clock = Clock()
    reconciler = Reconciler(kube, clock=clock.now, monotonic=clock.monotonic)
    reconciler.reconcile("ml", "resnet50")
    kube.settle()
    reconciler.reconcile("ml", "resnet50")
    return kube, reconciler, str(kube.model["status"]["stableRevision"])


def _writes(reconciler: Reconciler) -> int:
    outcome = reconciler.reconcile("ml", "resnet50")
    assert outcome is not None
    return outcome.writes


def test_running_pods_show_as_facts_and_a_steady_pass_writes_nothing() -> None:
    kube, reconciler, stable = _serving()
    kube.pods = [_pod(stable, "1", started=0), _pod(stable, "2", started=30)]
    assert _writes(reconciler) == 1
    assert kube.model["status"]["cost"] == [
        {
            "revision": stable,
            "track": "stable",
            "retiredGpuSeconds": 0,
            "finishedGpuSeconds": 0,
            "runningGpus": 2,
            "runningGpuStartSum": 2 * T0 + 30,
        }
    ]
    assert _writes(reconciler) == 0


def test_a_deleted_pod_is_folded_into_status_and_kept_after_a_restart() -> None:
    kube, reconciler, stable = _serving()
    gone = _pod(stable, "1", started=0, deleting=100)
    kube.pods = [gone, _pod(stable, "2", started=0)]
    reconciler.reconcile("ml", "resnet50")
    kube.pods = kube.pods[1:]  # the DELETED event: out of the cache, into the ledger
    assert reconciler.costs.retire(kube.model, gone, T0 + 120) == 100
    assert _writes(reconciler) == 1
    cost = kube.model["status"]["cost"][0]
    assert (cost["retiredGpuSeconds"], cost["runningGpus"]) == (100, 1)
    restarted = Reconciler(kube, clock=Clock().now)
    assert _writes(restarted) == 0  # rebuilt from status and pods: same facts
    assert restarted.costs.retired(kube.model) == {stable: 100}


def test_cpu_models_have_no_cost() -> None:
    kube = FakeKube(model_body({"runtime": {"gpu": {"count": 0}}}))
    Reconciler(kube, clock=Clock().now).reconcile("ml", "resnet50")
    assert "cost" not in kube.model["status"]

"""Whole passes of a scale-to-zero model against the in-memory API: idle -> zero -> woken."""

from __future__ import annotations

from typing import Any

from kinfer_operator.reconcile.run import Reconciler
from kinfer_operator.rollout.endpoints import Endpoint, PrometheusConfig
from support.clock import Clock
from support.factories import model_body, pod
from support.fake_kube import FakeKube
from support.passes import condition, one_pass

ZERO: dict[str, Any] = {
    "replicas": None,
    "autoscaling": {"minReplicas": 0, "maxReplicas": 4, "idleSeconds": 60},
}
CONFIG = PrometheusConfig.model_validate({"url": "http://prometheus.operator.invalid:9090"})
UNSCHEDULABLE = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


class _Requests:
    def __init__(self) -> None:
        self.value = 0.0
        self.asked = 0

    def __call__(self, endpoint: Endpoint, promql: str, timeout: float, name: str) -> float:
        self.asked += 1
        return self.value


def _setup(
    config: PrometheusConfig = CONFIG, activator: bool = True
) -> tuple[FakeKube, Reconciler, Clock, _Requests]:
    kube = FakeKube(model_body(ZERO))
    clock = Clock()
    requests = _Requests()
    reconciler = Reconciler(
        kube,
        clock=clock.now,
        monotonic=clock.monotonic,
        prometheus=config,
        query=requests,
        activator=activator,
    )
    return kube, reconciler, clock, requests


def _serving(kube: FakeKube, reconciler: Reconciler) -> str:
    """First passes: the model deploys one replica, which becomes Ready and Running."""
    one_pass(reconciler)
    kube.settle()
    (dep,) = kube.deployments()
    revision = dep["metadata"]["labels"]["serving.kinfer.io/revision"]
    kube.pods = [pod("resnet50", revision, phase="Running", startTime="2026-01-01T00:00:00Z")]
    one_pass(reconciler)
    assert kube.model["status"]["phase"] == "Ready"
    return str(dep["metadata"]["name"])


def test_an_idle_model_goes_to_zero_and_shows_idle() -> None:
    kube, reconciler, clock, _requests = _setup()
    name = _serving(kube, reconciler)
    clock.t = 61
    one_pass(reconciler)
    assert kube.children[("Deployment", name)]["spec"]["replicas"] == 0
    kube.settle()
    kube.pods = []
    one_pass(reconciler)
    assert kube.model["status"]["phase"] == "Idle"
    assert condition(kube, "Ready")[:2] == ("True", "Idle")
    assert condition(kube, "ScaleToZero")[:2] == ("True", "Idle")
    # The HPA keeps a floor of 1: it leaves a Deployment at 0 alone.
    assert kube.children[("HorizontalPodAutoscaler", "resnet50")]["spec"]["minReplicas"] == 1


def test_a_model_with_requests_stays_up() -> None:
    kube, reconciler, clock, requests = _setup()
    name = _serving(kube, reconciler)
    requests.value = 5
    clock.t = 61
    outcome = one_pass(reconciler)
    assert kube.children[("Deployment", name)]["spec"]["replicas"] == 1
    assert outcome.requeue_after is not None


def test_prometheus_is_not_asked_before_idle_seconds_pass() -> None:
    kube, reconciler, clock, requests = _setup()
    _serving(kube, reconciler)
    clock.t = 30
    one_pass(reconciler)
    assert requests.asked == 0


def test_a_woken_model_shows_waking_then_ready_and_is_kept_for_idle_seconds() -> None:
    kube, reconciler, clock, requests = _setup()
    name = _serving(kube, reconciler)
    clock.t = 61
    one_pass(reconciler)
    kube.settle()
    kube.pods = []
    one_pass(reconciler)
    # The activator patches the scale subresource.
    kube.scale("ml", name, 2)
    kube.settle(ready=False)
    one_pass(reconciler)
    assert kube.model["status"]["phase"] == "Waking"
    assert condition(kube, "Ready")[:2] == ("False", "Waking")
    assert kube.children[("Deployment", name)]["spec"]["replicas"] == 2
    revision = kube.deployments()[0]["metadata"]["labels"]["serving.kinfer.io/revision"]
    kube.settle()
    kube.pods = [pod("resnet50", revision, phase="Running", startTime="2026-01-01T00:01:30Z")]
    clock.t = 100  # 10s after the wake: far less than idleSeconds
    one_pass(reconciler)
    assert kube.model["status"]["phase"] == "Ready"
    assert kube.children[("Deployment", name)]["spec"]["replicas"] == 2
    assert requests.asked == 1  # only the pass that sent it to zero


def test_no_gpu_at_wake_up_shows_gpu_unschedulable_and_stays_waking() -> None:
    kube, reconciler, clock, _requests = _setup()
    name = _serving(kube, reconciler)
    clock.t = 61
    one_pass(reconciler)
    kube.settle()
    kube.pods = []
    one_pass(reconciler)
    kube.scale("ml", name, 1)
    kube.settle(ready=False)
    revision = kube.deployments()[0]["metadata"]["labels"]["serving.kinfer.io/revision"]
    kube.pods = [pod("resnet50", revision, scheduled_message=UNSCHEDULABLE, phase="Pending")]
    one_pass(reconciler)
    assert condition(kube, "Ready")[:2] == ("False", "GPUUnschedulable")
    # The phase is Pending now; the next pass must still know it is a wake.
    one_pass(reconciler)
    assert condition(kube, "Ready")[:2] == ("False", "GPUUnschedulable")
    assert condition(kube, "ScaleToZero")[:2] == ("False", "Waking")


def test_without_prometheus_scale_to_zero_is_unavailable_and_the_model_stays_up() -> None:
    kube, reconciler, clock, _requests = _setup(PrometheusConfig())
    name = _serving(kube, reconciler)
    clock.t = 61
    one_pass(reconciler)
    assert kube.children[("Deployment", name)]["spec"]["replicas"] == 1
    status, reason, _ = condition(kube, "ScaleToZero")
    assert (status, reason) == ("False", "PrometheusNotConfigured")
    assert kube.model["status"]["phase"] == "Ready"


def test_without_an_activator_no_model_goes_to_zero_and_status_says_why() -> None:
    kube, reconciler, clock, requests = _setup(activator=False)
    name = _serving(kube, reconciler)
    clock.t = 61
    one_pass(reconciler)
    assert kube.children[("Deployment", name)]["spec"]["replicas"] == 1
    assert condition(kube, "ScaleToZero")[:2] == ("False", "ActivatorNotInstalled")
    assert requests.asked == 0

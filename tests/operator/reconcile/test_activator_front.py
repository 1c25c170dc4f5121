"""Whole passes of models the activator fronts: at zero, woken, least-queue, and without a
Ready activator. The Service path and the routing table come from the one Front."""

from __future__ import annotations

import json
from typing import Any

from kinfer_operator.children.activator_routes import CONFIGMAP_NAME, ROUTES_KEY
from kinfer_operator.children.service import FRONTED_LABEL
from kinfer_operator.reconcile.routes_table import RoutesTable
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
OPERATOR_NS = "kinfer-system"
SLICE = ("EndpointSlice", "resnet50-kinfer")


def _no_requests(endpoint: Endpoint, promql: str, timeout: float, name: str) -> float:
    return 0.0


def _setup(spec: dict[str, Any]) -> tuple[FakeKube, Reconciler, Clock]:
    kube = FakeKube(model_body(spec))
    kube.activator = ["10.244.1.7", "10.244.0.5"]
    clock = Clock()
    routes = RoutesTable(OPERATOR_NS, monotonic=clock.monotonic, debounce_seconds=0)
    reconciler = Reconciler(
        kube,
        clock=clock.now,
        monotonic=clock.monotonic,
        prometheus=CONFIG,
        query=_no_requests,
        activator=True,
        routes=routes,
    )
    return kube, reconciler, clock


def _serving(kube: FakeKube, reconciler: Reconciler) -> str:
    one_pass(reconciler)
    kube.settle()
    (dep,) = kube.deployments()
    revision = dep["metadata"]["labels"]["serving.kinfer.io/revision"]
    kube.pods = [pod("resnet50", revision, phase="Running", startTime="2026-01-01T00:00:00Z")]
    one_pass(reconciler)
    return str(dep["metadata"]["name"])


def _to_idle(kube: FakeKube, reconciler: Reconciler, clock: Clock) -> str:
    name = _serving(kube, reconciler)
    clock.t = 61
    one_pass(reconciler)
    kube.settle()
    kube.pods = []
    one_pass(reconciler)
    return name


def _routes(kube: FakeKube, reconciler: Reconciler) -> dict[str, Any]:
    reconciler.flush_routes()
    table = kube.configmaps[(OPERATOR_NS, CONFIGMAP_NAME)]
    routes: dict[str, Any] = json.loads(table["data"][ROUTES_KEY])["routes"]
    return routes


def _service(kube: FakeKube) -> dict[str, Any]:
    return kube.children[("Service", "resnet50")]


def test_an_idle_model_is_fronted_by_the_activator() -> None:
    kube, reconciler, clock = _setup(ZERO)
    _to_idle(kube, reconciler, clock)
    assert kube.model["status"]["phase"] == "Idle"
    assert FRONTED_LABEL in _service(kube)["spec"]["selector"]
    endpoint_slice = kube.children[SLICE]
    addresses = [e["addresses"][0] for e in endpoint_slice["endpoints"]]
    assert addresses == ["10.244.0.5", "10.244.1.7"]
    assert endpoint_slice["metadata"]["labels"]["kubernetes.io/service-name"] == "resnet50"
    assert {p["port"] for p in endpoint_slice["ports"]} == {20000, 20001}
    assert ("Service", "resnet50-stable") in kube.children
    (row,) = _routes(kube, reconciler).values()
    assert row["atZero"] is True
    assert (row["namespace"], row["model"]) == ("ml", "resnet50")
    assert row["stable"]["deployment"] in {d["metadata"]["name"] for d in kube.deployments()}


def test_a_woken_ready_model_is_fronted_by_its_pods_again_and_keeps_its_pair() -> None:
    kube, reconciler, clock = _setup(ZERO)
    name = _to_idle(kube, reconciler, clock)
    port = next(iter(_routes(kube, reconciler)))
    kube.scale("ml", name, 2)  # the activator wakes it
    kube.settle(ready=False)
    one_pass(reconciler)
    assert kube.model["status"]["phase"] == "Waking"
    assert SLICE in kube.children  # still on the activator while nothing is Ready
    revision = kube.deployments()[0]["metadata"]["labels"]["serving.kinfer.io/revision"]
    kube.settle()
    kube.pods = [pod("resnet50", revision, phase="Running", startTime="2026-01-01T00:01:30Z")]
    clock.t = 100
    one_pass(reconciler)
    assert kube.model["status"]["phase"] == "Ready"
    assert _service(kube)["spec"]["selector"]["serving.kinfer.io/model"] == "resnet50"
    assert SLICE not in kube.children
    routes = _routes(kube, reconciler)
    assert list(routes) == [port]
    assert routes[port]["atZero"] is False
    assert kube.children[("Deployment", name)]["spec"]["replicas"] == 2


def test_least_queue_keeps_the_activator_in_front_while_warm() -> None:
    kube, reconciler, _clock = _setup({"routing": "leastQueue"})
    _serving(kube, reconciler)
    assert kube.model["status"]["phase"] == "Ready"
    assert FRONTED_LABEL in _service(kube)["spec"]["selector"]
    assert SLICE in kube.children
    (row,) = _routes(kube, reconciler).values()
    assert (row["atZero"], row["leastQueue"]) == (False, True)


def test_without_a_ready_activator_pods_front_and_the_model_stays_up() -> None:
    kube, reconciler, clock = _setup(ZERO)
    kube.activator = []
    name = _serving(kube, reconciler)
    clock.t = 61
    one_pass(reconciler)
    assert kube.children[("Deployment", name)]["spec"]["replicas"] == 1
    assert condition(kube, "ScaleToZero")[:2] == ("False", "ActivatorNotReady")
    assert FRONTED_LABEL not in _service(kube)["spec"]["selector"]
    assert SLICE not in kube.children


def test_an_idle_model_whose_activator_goes_away_is_woken_and_fronted_by_pods() -> None:
    kube, reconciler, clock = _setup(ZERO)
    name = _to_idle(kube, reconciler, clock)
    kube.activator = []
    one_pass(reconciler)
    assert kube.children[("Deployment", name)]["spec"]["replicas"] == 1
    assert FRONTED_LABEL not in _service(kube)["spec"]["selector"]
    assert SLICE not in kube.children


def test_a_model_that_never_goes_to_zero_has_no_row() -> None:
    kube, reconciler, _clock = _setup({})
    _serving(kube, reconciler)
    assert reconciler.flush_routes() is True  # the first write: an empty table
    assert _routes(kube, reconciler) == {}
    assert SLICE not in kube.children


def test_the_table_is_seeded_so_a_model_keeps_its_pair_across_restarts() -> None:
    kube, reconciler, clock = _setup(ZERO)
    _to_idle(kube, reconciler, clock)
    kube.configmaps[(OPERATOR_NS, CONFIGMAP_NAME)] = {
        "metadata": {"name": CONFIGMAP_NAME, "namespace": OPERATOR_NS},
        "data": {
            ROUTES_KEY: json.dumps(
                {"version": 1, "routes": {"20006": {"namespace": "ml", "model": "resnet50"}}}
            )
        },
    }
    restarted = Reconciler(
        kube,
        clock=clock.now,
        monotonic=clock.monotonic,
        prometheus=CONFIG,
        query=_no_requests,
        activator=True,
        routes=RoutesTable(OPERATOR_NS, monotonic=clock.monotonic, debounce_seconds=0),
    )
    restarted.seed_routes()
    one_pass(restarted)
    assert {p["port"] for p in kube.children[SLICE]["ports"]} == {20006, 20007}
    assert list(_routes(kube, restarted)) == ["20006"]

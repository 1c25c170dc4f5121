"""Scale to zero on the kwok GPU lane: idle -> zero -> woken the way the activator wakes.

kwok pods run no containers, so the request counter comes from the data-plane stand-in
(e2e/dataplane.py): it runs a real runtime process for each revision kwok reports Ready and
registers it with the lane's real Prometheus (endpoint "fake"), which the model names in
spec.autoscaling.prometheus. It sends no load here (rate 0): the model really is idle, and
the operator sees that from kinfer_requests_total. The wake-up is what the activator does: a
patch of the stable Deployment's scale subresource.

Exclusive (quiet_cluster): the GPU-starved wake-up needs the A100 node to itself.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import STAND_IN_ACTIVATOR_IP, LocalOperator
from dataplane import DataPlane, Prometheus
from harness import (
    condition,
    kubectl,
    kubectl_apply,
    kubectl_json,
    service_addresses,
    wait_until,
)

pytestmark = pytest.mark.host_services(
    "a Prometheus on this host and the kwok data-plane stand-in (e2e/dataplane.py)"
)

NAME = "sleepy"
IDLE_SECONDS = 30  # the API's least
GPUS = 8  # the whole A100 node: a second claim on it cannot be scheduled
METRIC = "kinfer_gpu_seconds_total"


def manifest(prometheus: Prometheus) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kinfer.io/v1alpha1",
        "kind": "InferenceModel",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"uri": "file:///models/demo/model.onnx", "version": "1"},
            "runtime": {
                "image": "kinfer/runtime:dev",
                "gpu": {"count": GPUS, "product": "NVIDIA-A100-SXM4-80GB"},
            },
            "autoscaling": {
                "minReplicas": 0,
                "maxReplicas": 2,
                "idleSeconds": IDLE_SECONDS,
                "prometheus": prometheus.endpoint,
            },
        },
    }


@pytest.fixture
def plane(
    quiet_cluster: str, prometheus: Prometheus, model_files: dict[str, Path], tmp_path: Path
) -> Iterator[DataPlane]:
    with DataPlane(
        quiet_cluster, NAME, {"1": model_files["normal"]}, prometheus, tmp_path, rate=0
    ) as dp:
        yield dp


def im(ns: str) -> dict[str, Any]:
    return dict(kubectl_json("get", "im", NAME, "-n", ns))


def deployment(ns: str) -> dict[str, Any]:
    (dep,) = kubectl_json("get", "deploy", "-n", ns, "-l", f"serving.kinfer.io/model={NAME}")[
        "items"
    ]
    return dict(dep)


def reason(ns: str, type_: str) -> str | None:
    found = condition(im(ns), type_)
    return found["reason"] if found else None


def wait_idle(ns: str, timeout: float) -> dict[str, Any]:
    return wait_until(
        lambda: (m := im(ns))["status"].get("phase") == "Idle" and m,
        timeout,
        "the model to go Idle at zero replicas",
        interval=1,
    )


def test_idle_model_goes_to_zero_holds_no_gpu_and_wakes_on_a_scale_patch(
    quiet_cluster: str,
    prometheus: Prometheus,
    plane: DataPlane,
    operator: LocalOperator | None,
) -> None:
    ns = quiet_cluster
    kubectl_apply(manifest(prometheus), ns)
    kubectl("wait", "-n", ns, f"im/{NAME}", "--for=condition=Ready", "--timeout=90s")
    assert reason(ns, "ScaleToZero") == "Awake"

    # Idle: no request for idleSeconds (counted from the oldest pod's start) -> zero.
    started = time.monotonic()
    idle = wait_idle(ns, IDLE_SECONDS + 60)
    print(f"\nwent to zero {time.monotonic() - started:.0f}s after Ready (idle {IDLE_SECONDS}s)")
    assert condition(idle, "Ready")["status"] == "True"  # type: ignore[index]
    assert reason(ns, "ScaleToZero") == "Idle"
    assert deployment(ns)["spec"]["replicas"] == 0
    hpa = kubectl_json("get", "hpa", NAME, "-n", ns)
    assert hpa["spec"]["minReplicas"] == 1  # the HPA leaves a Deployment at 0 alone

    # GPU-seconds flat while idle: status.cost holds no running GPU, and the counter stands.
    wait_until(
        lambda: (
            not kubectl_json("get", "pods", "-n", ns, "-l", f"serving.kinfer.io/model={NAME}")[
                "items"
            ]
        ),
        60,
        "the model's pods to be gone",
    )
    costs = im(ns)["status"].get("cost") or []
    assert costs and all(c.get("runningGpus", 0) == 0 for c in costs)
    if operator is not None:
        before = operator.metric(METRIC, namespace=ns)
        time.sleep(5)
        assert operator.metric(METRIC, namespace=ns) == before > 0
    assert im(ns)["status"]["phase"] == "Idle"  # and it stays at zero

    # No GPU left at wake-up: another model takes the whole A100 node first.
    hog = copy.deepcopy(manifest(prometheus))
    hog["metadata"]["name"] = "hog"
    del hog["spec"]["autoscaling"]
    hog["spec"]["replicas"] = 1
    kubectl_apply(hog, ns)
    kubectl("wait", "-n", ns, "im/hog", "--for=condition=Ready", "--timeout=90s")
    name = deployment(ns)["metadata"]["name"]
    # What the activator does on the first held request.
    kubectl("scale", "deploy", name, "-n", ns, "--replicas=1")
    wait_until(
        lambda: reason(ns, "Ready") == "GPUUnschedulable",
        60,
        "Ready=False, GPUUnschedulable at wake-up",
    )
    assert reason(ns, "ScaleToZero") == "Waking"
    assert deployment(ns)["spec"]["replicas"] == 1  # the operator keeps what was asked for

    # The GPUs come back: the woken replica serves, and the model is kept up.
    kubectl("delete", "im", "hog", "-n", ns, "--wait=true")
    kubectl("wait", "-n", ns, f"im/{NAME}", "--for=condition=Ready", "--timeout=90s")
    woke = time.monotonic()
    assert im(ns)["status"]["phase"] == "Ready"
    assert reason(ns, "ScaleToZero") == "Awake"

    # ...for idleSeconds from the wake, then back to zero.
    wait_idle(ns, IDLE_SECONDS + 60)
    assert time.monotonic() - woke >= IDLE_SECONDS - 2
    assert deployment(ns)["spec"]["replicas"] == 0


def test_routes_configmap_lists_the_idle_model(
    quiet_cluster: str, prometheus: Prometheus, plane: DataPlane
) -> None:
    ns = quiet_cluster
    kubectl_apply(manifest(prometheus), ns)
    kubectl("wait", "-n", ns, f"im/{NAME}", "--for=condition=Ready", "--timeout=90s")
    wait_idle(ns, IDLE_SECONDS + 60)

    def idle_row() -> dict[str, Any] | None:
        # The leader writes the table at most every second or so after a pass changes it.
        listed = kubectl(
            "get",
            "configmaps",
            "-A",
            "--field-selector",
            "metadata.name=kinfer-activator-routes",
            "-o",
            "json",
            check=False,
        )
        items = json.loads(listed.stdout or '{"items": []}')["items"]
        if not items:
            return None
        table = json.loads(items[0]["data"]["routes.json"])
        rows = [r for r in table["routes"].values() if (r["namespace"], r["model"]) == (ns, NAME)]
        return rows[0] if len(rows) == 1 and rows[0]["atZero"] is True else None

    row = wait_until(idle_row, 15, "the routes ConfigMap to list the model at zero")
    assert row["stable"]["deployment"] == deployment(ns)["metadata"]["name"]
    service = kubectl_json("get", "svc", NAME, "-n", ns)
    assert service["spec"]["selector"]["serving.kinfer.io/fronted-by-activator"] == "true"
    # The model's Service is the activator's: every slice kube-proxy reads for it (the
    # controller's own included) lists the (stand-in) activator pod and nothing else ...
    wait_until(
        lambda: service_addresses(ns, NAME) == {STAND_IN_ACTIVATOR_IP},
        30,
        "the Service's endpoints to be the activator's only",
    )
    # ... through our one slice, its ports the model's pair in the table.
    endpoint_slice = kubectl_json("get", "endpointslice", f"{NAME}-kinfer", "-n", ns)
    assert [e["addresses"] for e in endpoint_slice["endpoints"]] == [[STAND_IN_ACTIVATOR_IP]]
    assert {p["port"] for p in endpoint_slice["ports"]} == {row["httpPort"], row["grpcPort"]}

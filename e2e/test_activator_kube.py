"""The activator's two Kubernetes seams on a real API server (kwok lane; no real node needed):
the cluster-wide EndpointSlice watch it finds each revision's pods with, and the waker that
patches the scale subresource of the one Deployment the routing table names, only upward."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from harness import kubectl, kubectl_apply, kubectl_json, wait_until
from kinfer_activator.endpoints import KubeEndpointSlices, Pod
from kinfer_activator.waker import KubeWaker


def _endpoint_slice(name: str, service: str, ready: list[bool]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [
            {"name": "http", "port": 8080, "protocol": "TCP"},
            {"name": "classified", "port": 8090, "protocol": "TCP"},
        ],
        "endpoints": [
            {"addresses": [f"10.250.0.{i + 1}"], "conditions": {"ready": r}}
            for i, r in enumerate(ready)
        ],
    }


@pytest.fixture
def watched() -> Iterator[KubeEndpointSlices]:
    """The watch, started on an event loop of its own (it reports changes to that loop)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    source = KubeEndpointSlices()

    async def start() -> None:
        source.start()

    asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    yield source
    source.stop()
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_ready_endpoints_of_a_track_service_follow_its_endpointslices(
    namespace: str, watched: KubeEndpointSlices
) -> None:
    kubectl_apply(_endpoint_slice("demo-stable-1", "demo-stable", [True, False]), namespace)

    def ready() -> tuple[Pod, ...]:
        return tuple(watched.ready(namespace, "demo-stable"))

    first = wait_until(ready, 30, "the Ready endpoint")
    assert first == (Pod("10.250.0.1", 8080, 8090),)

    kubectl_apply(_endpoint_slice("demo-stable-1", "demo-stable", [True, True]), namespace)
    wait_until(lambda: len(ready()) == 2, 30, "both endpoints Ready")
    assert watched.ready(namespace, "demo-canary") == ()

    kubectl("delete", "endpointslice", "-n", namespace, "demo-stable-1")
    wait_until(lambda: ready() == (), 30, "the slice's endpoints gone")


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                # kwok's nodes never pull it; the name only has to be valid.
                "spec": {"containers": [{"name": "c", "image": "kinfer/runtime:dev"}]},
            },
        },
    }


def test_waker_raises_only_the_named_deployment_and_never_lowers_it(namespace: str) -> None:
    kubectl_apply(_deployment("demo-r1", 0), namespace)
    kubectl_apply(_deployment("other-r1", 0), namespace)
    waker = KubeWaker()

    def replicas(name: str) -> int:
        return int(kubectl_json("get", "deployment", name, "-n", namespace)["spec"]["replicas"])

    asyncio.run(waker.wake(namespace, "demo-r1", 3))
    assert replicas("demo-r1") == 3
    asyncio.run(waker.wake(namespace, "demo-r1", 2))  # the HPA's count stands
    assert replicas("demo-r1") == 3
    assert replicas("other-r1") == 0

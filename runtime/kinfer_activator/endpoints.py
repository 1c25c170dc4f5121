"""Where each revision's pods are: the Ready endpoints of its track Service's EndpointSlices.

`EndpointSource` is the seam: the activator reads `ready(namespace, service)` on every request
and is told through `subscribe` when anything changed; tests feed endpoints directly
(`StaticEndpoints`), the cluster feeds them through `KubeEndpointSlices`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "EndpointSource",
    "FileEndpoints",
    "KubeEndpointSlices",
    "Pod",
    "StaticEndpoints",
    "pods_of_slice",
]

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
HTTP_PORT_NAME = "http"
GRPC_PORT_NAME = "grpc"
CLASSIFIED_PORT_NAME = "classified"
"""The runtime's classified listener: where markers set by kinfer's own senders count."""


@dataclass(frozen=True, slots=True)
class Pod:
    """One Ready runtime endpoint."""

    address: str
    http_port: int
    classified_port: int | None = None
    grpc_port: int | None = None


class EndpointSource(Protocol):
    def ready(self, namespace: str, service: str) -> Sequence[Pod]:
        """The Ready pods behind `service` now (cheap: called per request)."""
        ...

    def subscribe(self, on_change: Callable[[], None]) -> None:
        """Call `on_change` on the event loop after any endpoint changed."""
        ...


class StaticEndpoints:
    """Endpoints set by hand: tests, and `--static-endpoints` runs without a cluster."""

    def __init__(self) -> None:
        self._pods: dict[tuple[str, str], tuple[Pod, ...]] = {}
        self._listeners: list[Callable[[], None]] = []

    def ready(self, namespace: str, service: str) -> Sequence[Pod]:
        return self._pods.get((namespace, service), ())

    def subscribe(self, on_change: Callable[[], None]) -> None:
        self._listeners.append(on_change)

    def set(self, namespace: str, service: str, pods: Sequence[Pod]) -> None:
        self._pods[(namespace, service)] = tuple(pods)
        for listener in self._listeners:
            listener()


class FileEndpoints(StaticEndpoints):
    """Endpoints from a JSON file, `{"<ns>/<service>": ["ip:http[:classified[:grpc]]"]}`,
    re-read by `poll`: runs without a cluster (the benchmark, drills on one machine)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path
        self._last: bytes | None = None

    def poll(self) -> None:
        try:
            raw = self._path.read_bytes()
        except OSError:
            return
        if raw == self._last:
            return
        self._last = raw
        try:
            data = json.loads(raw)
            parsed = {
                tuple(key.split("/", 1)): tuple(_parse_pod(text) for text in pods)
                for key, pods in data.items()
            }
        except (ValueError, AttributeError, TypeError) as exc:
            log.error("endpoints file %s invalid: %s", self._path, exc)
            return
        for (namespace, service), pods in parsed.items():
            self._pods[(namespace, service)] = pods
        for key in set(self._pods) - set(parsed):
            del self._pods[key]
        for listener in self._listeners:
            listener()


def _parse_pod(text: str) -> Pod:
    address, http_port, *more = text.split(":")
    ports = [int(p) if p else None for p in more] + [None, None]
    return Pod(address, int(http_port), ports[0], ports[1])


def pods_of_slice(endpoint_slice: dict[str, Any]) -> tuple[Pod, ...]:
    """The Ready endpoints of one EndpointSlice (a dict as the API returns it, camelCase)."""
    ports = {p.get("name"): p.get("port") for p in endpoint_slice.get("ports") or ()}
    http_port = ports.get(HTTP_PORT_NAME)
    if not isinstance(http_port, int):
        return ()
    classified = ports.get(CLASSIFIED_PORT_NAME)
    classified = classified if isinstance(classified, int) else None
    grpc_port = ports.get(GRPC_PORT_NAME)
    grpc_port = grpc_port if isinstance(grpc_port, int) else None
    pods = []
    for endpoint in endpoint_slice.get("endpoints") or ():
        conditions = endpoint.get("conditions") or {}
        # `ready` unset means ready (the API's own rule); terminating pods are never ready.
        if conditions.get("ready") is False or conditions.get("terminating") is True:
            continue
        for address in endpoint.get("addresses") or ():
            pods.append(Pod(address, http_port, classified, grpc_port))
    return tuple(pods)


class KubeEndpointSlices:
    """A read-only, cluster-wide watch of EndpointSlices in a thread (the `kubernetes` client is
    synchronous, and the repo has no async Kubernetes client), indexed by namespace and
    `kubernetes.io/service-name`. Re-lists after any watch error."""

    def __init__(self, api: Any = None) -> None:
        self._api = api
        self._slices: dict[tuple[str, str], dict[str, tuple[Pod, ...]]] = {}
        self._ready: dict[tuple[str, str], tuple[Pod, ...]] = {}
        self._listeners: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()

    def ready(self, namespace: str, service: str) -> Sequence[Pod]:
        return self._ready.get((namespace, service), ())

    def subscribe(self, on_change: Callable[[], None]) -> None:
        self._listeners.append(on_change)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._api is None:
            from kubernetes import client

            from kinfer_activator._kube import load_config

            load_config()
            self._api = client.DiscoveryV1Api()
        threading.Thread(target=self._run, name="endpointslices", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        from kinfer_activator._kube import list_then_watch

        list_then_watch(
            self._api,
            self._api.list_endpoint_slice_for_all_namespaces,
            self._replace_all,
            self._apply,
            self._stop,
        )

    def _replace_all(self, items: list[dict[str, Any]]) -> None:
        self._slices = {}
        for item in items:
            self._put(item)
        self._publish()

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        key = _service_key(obj)
        if key is None:
            return
        if kind == "DELETED":
            self._slices.get(key, {}).pop(obj["metadata"]["name"], None)
        else:
            self._put(obj)
        self._publish()

    def _put(self, obj: dict[str, Any]) -> None:
        key = _service_key(obj)
        if key is not None:
            self._slices.setdefault(key, {})[obj["metadata"]["name"]] = pods_of_slice(obj)

    def _publish(self) -> None:
        # A new dict swapped in whole: the event loop reads it without a lock.
        self._ready = {
            key: tuple(pod for pods in slices.values() for pod in pods)
            for key, slices in self._slices.items()
        }
        if self._loop is not None:
            for listener in self._listeners:
                self._loop.call_soon_threadsafe(listener)


def _service_key(obj: dict[str, Any]) -> tuple[str, str] | None:
    meta = obj.get("metadata") or {}
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not service or not meta.get("namespace"):
        return None
    return (meta["namespace"], service)

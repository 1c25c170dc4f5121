"""The routing table straight from the API: a watch on the one ConfigMap the operator writes.

A mounted ConfigMap is refreshed by the kubelet only every minute or so, and a model that just
went idle must find its port open at once; the watch hears the operator's write within a
round trip. The activator may read only this ConfigMap (its Role names it).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kinfer_activator.table import RoutesTable, TableReader

__all__ = ["RouteConfigMap"]

log = logging.getLogger(__name__)

ROUTES_KEY = "routes.json"


class RouteConfigMap:
    """Watches `namespace/name` in a thread; `poll()` returns each new valid table once. A
    deleted ConfigMap keeps the last table (the operator only ever rewrites it)."""

    def __init__(self, namespace: str, name: str, api: Any = None) -> None:
        self._namespace, self._name = namespace, name
        self._api = api
        self._reader = TableReader(f"configmap {namespace}/{name}")
        self._raw: bytes | None = None
        self._stop = threading.Event()

    def poll(self) -> RoutesTable | None:
        raw = self._raw
        return None if raw is None else self._reader.offer(raw)

    def start(self) -> None:
        if self._api is None:
            from kubernetes import client

            from kinfer_activator._kube import load_config

            load_config()
            self._api = client.CoreV1Api()
        threading.Thread(target=self._run, name="routes-configmap", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def observe(self, configmap: dict[str, Any]) -> None:
        """One observed version of the ConfigMap (listed or watched)."""
        data = configmap.get("data") or {}
        raw = data.get(ROUTES_KEY)
        if isinstance(raw, str):
            self._raw = raw.encode()

    def _run(self) -> None:
        from kinfer_activator._kube import list_then_watch

        list_then_watch(
            self._api,
            self._api.list_namespaced_config_map,
            self._observe_all,
            self._observe_event,
            self._stop,
            self._namespace,
            field_selector=f"metadata.name={self._name}",
        )

    def _observe_all(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            self.observe(item)

    def _observe_event(self, kind: str, obj: dict[str, Any]) -> None:
        if kind in ("ADDED", "MODIFIED"):
            self.observe(obj)

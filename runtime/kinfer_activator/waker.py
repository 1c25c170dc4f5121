"""Asking for replicas: patch the scale subresource of the stable Deployment the routing table
names (and no other object). `Waker` is the seam; tests record the asks."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

__all__ = ["KubeWaker", "Waker"]

log = logging.getLogger(__name__)


class Waker(Protocol):
    async def wake(self, namespace: str, deployment: str, replicas: int) -> None:
        """Make sure `deployment` asks for at least `replicas` pods (never fewer than now)."""
        ...


class KubeWaker:
    """Reads the scale subresource and raises `spec.replicas` when it is lower than asked: it
    only ever scales up, so it never fights the HPA, which takes over from 1..N."""

    def __init__(self, api: Any = None) -> None:
        self._api = api

    def _apps(self) -> Any:
        if self._api is None:
            from kubernetes import client

            from kinfer_activator._kube import load_config

            load_config()
            self._api = client.AppsV1Api()
        return self._api

    async def wake(self, namespace: str, deployment: str, replicas: int) -> None:
        await asyncio.to_thread(self._wake, namespace, deployment, replicas)

    def _wake(self, namespace: str, deployment: str, replicas: int) -> None:
        api = self._apps()
        scale = api.read_namespaced_deployment_scale(deployment, namespace)
        current = scale.spec.replicas or 0
        if current >= replicas:
            return
        # resourceVersion makes the write conditional: a concurrent change (the HPA, another
        # activator pod) fails it with 409 and the next ask reads again.
        body = {
            "metadata": {"resourceVersion": scale.metadata.resource_version},
            "spec": {"replicas": replicas},
        }
        api.patch_namespaced_deployment_scale(deployment, namespace, body)
        log.info("woke %s/%s: %d -> %d replicas", namespace, deployment, current, replicas)

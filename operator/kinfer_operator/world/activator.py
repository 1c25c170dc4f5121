"""The Ready activator pods, as the EndpointSlices of the activator's Service say.

The operator puts a model's traffic on the activator only while at least one activator pod
is Ready (rollout/front.py's `activator_ready`), and writes these addresses into the model's
`<name>-kinfer` EndpointSlice. Fed by a watch (handlers.py), read by passes; thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["ActivatorEndpoints", "ready_addresses"]


def ready_addresses(endpoint_slice: Mapping[str, Any]) -> frozenset[str]:
    """The addresses of the slice's Ready endpoints (ready unset means ready)."""
    out: set[str] = set()
    for endpoint in endpoint_slice.get("endpoints") or []:
        conditions = endpoint.get("conditions") or {}
        if conditions.get("ready") is False or conditions.get("terminating") is True:
            continue
        out.update(str(a) for a in endpoint.get("addresses") or [])
    return frozenset(out)


class ActivatorEndpoints:
    """The activator Service's Ready pod IPs, slice by slice."""

    def __init__(self, namespace: str, service: str) -> None:
        self.namespace, self.service = namespace, service
        self._lock = threading.Lock()
        self._slices: dict[str, frozenset[str]] = {}

    def is_ours(self, endpoint_slice: Mapping[str, Any]) -> bool:
        """Whether the slice belongs to the activator's Service."""
        meta = endpoint_slice.get("metadata") or {}
        labels = meta.get("labels") or {}
        return bool(
            meta.get("namespace") == self.namespace
            and labels.get("kubernetes.io/service-name") == self.service
        )

    def update(self, endpoint_slice: Mapping[str, Any]) -> bool:
        """Hold the slice's Ready addresses; True when the set of Ready IPs changed."""
        name = str((endpoint_slice.get("metadata") or {}).get("name", ""))
        with self._lock:
            before = self._ips_locked()
            self._slices[name] = ready_addresses(endpoint_slice)
            return self._ips_locked() != before

    def remove(self, endpoint_slice: Mapping[str, Any]) -> bool:
        """The slice is gone; True when the set of Ready IPs changed."""
        name = str((endpoint_slice.get("metadata") or {}).get("name", ""))
        with self._lock:
            before = self._ips_locked()
            self._slices.pop(name, None)
            return self._ips_locked() != before

    def replace(self, slices: list[Mapping[str, Any]]) -> bool:
        """A fresh listing of the Service's slices; True when the Ready IPs changed."""
        with self._lock:
            before = self._ips_locked()
            self._slices = {
                str((s.get("metadata") or {}).get("name", "")): ready_addresses(s) for s in slices
            }
            return self._ips_locked() != before

    def ips(self) -> tuple[str, ...]:
        """Every Ready activator address, sorted."""
        with self._lock:
            return tuple(sorted(self._ips_locked()))

    def _ips_locked(self) -> frozenset[str]:
        return frozenset().union(*self._slices.values()) if self._slices else frozenset()

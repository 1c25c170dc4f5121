"""The activator's routing table as the operator keeps it: one cluster-wide object, written
from one place.

Each model's pass says what its row is (`submit`: a `Route` while the activator fronts or may
front it, None otherwise) and gets its port pair back at once, so the same pass can build the
model's EndpointSlice. The ConfigMap itself is written by `flush`, which the controller calls
from its worker loop (the leader only, like the periodic relist), at most every
`DEBOUNCE_SECONDS` and only when the table differs from the one last written: a burst of
passes (an operator start, many models going idle together) is one write, and a steady state
writes nothing.

Level-based: the rows are what the latest pass of each model said, the pairs start from the
ConfigMap as observed (`seed`, at start and on taking over from a standby), and `flush`
writes the whole table, never a diff.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from kinfer_operator.children.activator_routes import (
    PortPair,
    Route,
    allocate_ports,
    build_routes_configmap,
    held_ports,
)

__all__ = ["DEBOUNCE_SECONDS", "RoutesTable"]

DEBOUNCE_SECONDS = 1.0
"""Least time between two writes of the table."""

ModelKey = tuple[str, str]


class RoutesTable:
    """Thread-safe: reconcile workers submit, one worker flushes."""

    def __init__(
        self,
        namespace: str,
        monotonic: Callable[[], float] = time.monotonic,
        debounce_seconds: float = DEBOUNCE_SECONDS,
    ) -> None:
        self.namespace = namespace
        self._monotonic = monotonic
        self._debounce = debounce_seconds
        self._lock = threading.Lock()
        self._rows: dict[ModelKey, Route] = {}
        self._ports: dict[ModelKey, PortPair] = {}
        self._written: Mapping[str, Any] | None = None
        self._last_write = float("-inf")

    def seed(self, configmap: Mapping[str, Any] | None) -> None:
        """Start from the table as observed: models keep the pairs it gives them."""
        with self._lock:
            self._ports = held_ports(configmap)
            self._written = dict(configmap) if configmap is not None else None

    def submit(self, key: ModelKey, route: Route | None) -> PortPair | None:
        """The model's row now (None: not in the table); returns its pair, None when it has
        none (not in the table, or the table is full)."""
        with self._lock:
            if route is None:
                self._rows.pop(key, None)
            else:
                self._rows[key] = route
            self._ports = allocate_ports(self._rows, self._ports)
            return self._ports.get(key) if route is not None else None

    def forget(self, key: ModelKey) -> None:
        """The model is deleted: its row goes, and its pair is free again."""
        self.submit(key, None)

    def desired(self) -> dict[str, Any]:
        """The ConfigMap the table should be now."""
        with self._lock:
            return build_routes_configmap(self.namespace, dict(self._rows), dict(self._ports))

    def flush(self, apply: Callable[[Mapping[str, Any]], Mapping[str, Any]]) -> bool:
        """Write the table if it changed and the debounce allows; True when it wrote."""
        desired = self.desired()
        with self._lock:
            written = (self._written or {}).get("data")
            if written == desired["data"]:
                return False
            if self._monotonic() - self._last_write < self._debounce:
                return False
            self._last_write = self._monotonic()
        applied = apply(desired)
        with self._lock:
            self._written = dict(applied)
        return True

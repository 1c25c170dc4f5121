"""A Lease store with the API server's compare-and-swap rules, for election tests."""

from __future__ import annotations

import dataclasses
import threading

from kinfer_operator.election import LeaseRecord


class Unreachable(Exception):
    """What a call raises while the fake API server is cut off."""


class FakeLeaseStore:
    """One Lease per (namespace, name); every write bumps its resourceVersion, and a replace
    at an older version is refused (None), as the API server answers 409 Conflict."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], LeaseRecord] = {}
        self.down = False
        self.lock = threading.Lock()  # one request at a time, as the API server orders them
        self.race: list[LeaseRecord] = []
        """Records another replica writes just before our next write lands (it read the
        same version we did, and its write came first)."""
        self.writes = 0
        self._version = 0

    def _bump(self, record: LeaseRecord) -> LeaseRecord:
        self._version += 1
        self.writes += 1
        return dataclasses.replace(record, version=str(self._version))

    def _reach(self) -> None:
        if self.down:
            raise Unreachable("connection refused")

    def _rival_first(self, namespace: str, name: str) -> None:
        if self.race:
            self.leases[(namespace, name)] = self._bump(self.race.pop(0))

    def read_lease(self, namespace: str, name: str, timeout: float) -> LeaseRecord | None:
        with self.lock:
            self._reach()
            return self.leases.get((namespace, name))

    def create_lease(
        self, namespace: str, name: str, record: LeaseRecord, timeout: float
    ) -> LeaseRecord | None:
        with self.lock:
            self._reach()
            self._rival_first(namespace, name)
            if (namespace, name) in self.leases:
                return None
            stored = self.leases[(namespace, name)] = self._bump(record)
            return stored

    def replace_lease(
        self, namespace: str, name: str, record: LeaseRecord, timeout: float
    ) -> LeaseRecord | None:
        with self.lock:
            self._reach()
            self._rival_first(namespace, name)
            held = self.leases.get((namespace, name))
            if held is None or held.version != record.version:
                return None
            stored = self.leases[(namespace, name)] = self._bump(record)
            return stored

    def holder(self, namespace: str = "ops", name: str = "kinfer") -> str:
        return self.leases[(namespace, name)].holder

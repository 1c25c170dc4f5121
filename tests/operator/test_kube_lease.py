"""The Lease calls of the API boundary: the API server's answers mapped for the election
(missing -> None, a lost race -> None, anything else raised), and the body sent on the wire."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from kinfer_operator._kube import Kube
from kinfer_operator.election import LeaseRecord
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import api_exception
from kubernetes.dynamic.resource import ResourceInstance

WHOLE_SECOND = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
RECORD = LeaseRecord("op-0_ab12", 15, WHOLE_SECOND, WHOLE_SECOND, 3, version="41")


class _Leases:
    """The dynamic client's Lease resource as far as Kube uses it: answers with `status`
    (raised as the dynamic client raises it) or stores the body sent at version 42."""

    STORED: ClassVar[dict[str, Any]] = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "kinfer", "resourceVersion": "42"},
        "spec": {
            "holderIdentity": "op-0_ab12",
            "leaseDurationSeconds": 15,
            "acquireTime": "2026-01-01T12:00:00.000000Z",
            "renewTime": "2026-01-01T12:00:00.000000Z",
            "leaseTransitions": 3,
        },
    }

    def __init__(self, status: int | None = None) -> None:
        self.status = status
        self.sent: list[dict[str, Any]] = []
        self.timeouts: list[float] = []

    def _answer(self, body: dict[str, Any] | None, timeout: float) -> ResourceInstance:
        self.timeouts.append(timeout)
        if body is not None:
            self.sent.append(json.loads(json.dumps(body)))
        if self.status is not None:
            raise api_exception(ApiException(status=self.status, reason="refused"))
        stored = dict(body or self.STORED)
        stored["metadata"] = {**stored["metadata"], "resourceVersion": "42"}
        return ResourceInstance(None, stored)

    def get(self, name: str, namespace: str, _request_timeout: float) -> ResourceInstance:
        return self._answer(None, _request_timeout)

    def create(
        self, body: dict[str, Any], namespace: str, _request_timeout: float
    ) -> ResourceInstance:
        return self._answer(body, _request_timeout)

    def replace(
        self, body: dict[str, Any], name: str, namespace: str, _request_timeout: float
    ) -> ResourceInstance:
        return self._answer(body, _request_timeout)


def _kube(api: _Leases, monkeypatch: pytest.MonkeyPatch) -> Kube:
    kube = Kube.__new__(Kube)  # no API server behind it: only the Lease calls are used
    monkeypatch.setattr(kube, "_leases", lambda: api)
    return kube


def test_reading_a_lease_gives_its_holder_times_and_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = _Leases()
    got = _kube(api, monkeypatch).read_lease("ops", "kinfer", timeout=2)
    assert got == LeaseRecord("op-0_ab12", 15, WHOLE_SECOND, WHOLE_SECOND, 3, version="42")
    assert api.timeouts == [2]


def test_a_missing_lease_reads_as_none(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _kube(_Leases(404), monkeypatch).read_lease("ops", "kinfer", 2) is None


def test_a_replace_sends_the_version_read_so_the_api_server_can_refuse_a_stale_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = _Leases()
    stored = _kube(api, monkeypatch).replace_lease("ops", "kinfer", RECORD, 2)
    assert stored is not None and stored.version == "42"
    (body,) = api.sent
    assert body["metadata"]["resourceVersion"] == "41"
    assert body["kind"] == "Lease"
    # MicroTime: six fraction digits even on a whole second, or the API server refuses it.
    assert body["spec"]["renewTime"] == "2026-01-01T12:00:00.000000Z"
    assert body["spec"]["holderIdentity"] == "op-0_ab12"
    assert body["spec"]["leaseTransitions"] == 3


def test_a_create_sends_no_version(monkeypatch: pytest.MonkeyPatch) -> None:
    api = _Leases()
    assert _kube(api, monkeypatch).create_lease("ops", "kinfer", RECORD, 2) is not None
    (body,) = api.sent
    assert "resourceVersion" not in body["metadata"]
    assert body["spec"]["acquireTime"] == "2026-01-01T12:00:00.000000Z"


@pytest.mark.parametrize("call", ["create_lease", "replace_lease"])
def test_a_write_that_lost_the_race_is_none(call: str, monkeypatch: pytest.MonkeyPatch) -> None:
    kube = _kube(_Leases(409), monkeypatch)
    assert getattr(kube, call)("ops", "kinfer", RECORD, 2) is None


@pytest.mark.parametrize("status", [403, 500])
def test_other_refusals_are_raised_for_the_election_to_log(
    status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube = _kube(_Leases(status), monkeypatch)
    with pytest.raises(ApiException):
        kube.replace_lease("ops", "kinfer", RECORD, 2)
    with pytest.raises(ApiException):
        kube.read_lease("ops", "kinfer", 2)

"""The routing table: bounded, validated, and the last good one kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kinfer_activator.table import RouteFile, parse_table
from pydantic import ValidationError


def _route(port: int = 20000, **fields: Any) -> dict[str, Any]:
    return {
        "namespace": "team-a",
        "model": "resnet",
        "httpPort": port,
        "grpcPort": port + 1,
        "stable": {"revision": "abc123", "service": "resnet-stable", "deployment": "resnet-abc123"},
        "canary": None,
        "canaryWeight": 10,
        "atZero": True,
        "leastQueue": False,
        "targetConcurrency": 8,
        "maxHeldRequests": 1000,
        "maxHoldSeconds": 600,
        "wakeReplicas": {"max": 10},
        **fields,
    }


def _raw(*routes: dict[str, Any]) -> bytes:
    return json.dumps({"version": 1, "routes": {str(r["httpPort"]): r for r in routes}}).encode()


def test_the_designs_example_parses() -> None:
    table = parse_table(_raw(_route()))
    route = table.by_port()[20000]
    assert (route.namespace, route.model, route.stable.deployment) == (
        "team-a",
        "resnet",
        "resnet-abc123",
    )
    assert route.at_zero and route.target_concurrency == 8 and route.wake_replicas.max == 10


def test_unknown_fields_are_ignored_for_a_newer_operator() -> None:
    assert parse_table(_raw(_route(someday="x"))).routes["20000"].model == "resnet"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("targetConcurrency", 0),
        ("maxHeldRequests", 10**9),
        ("maxHoldSeconds", 0),
        ("wakeReplicas", {"max": 100_000}),
        ("canaryWeight", 101),
        ("httpPort", 80),
        ("namespace", "Team_A"),
        ("model", "x" * 300),
    ],
)
def test_out_of_bounds_fields_are_refused(field: str, value: Any) -> None:
    route = _route(**{field: value})
    raw = json.dumps({"version": 1, "routes": {"20000": route}}).encode()
    with pytest.raises(ValidationError, match=field):
        parse_table(raw)


def test_a_key_must_be_its_routes_http_port() -> None:
    raw = json.dumps({"version": 1, "routes": {"20002": _route()}}).encode()
    with pytest.raises(ValidationError, match="httpPort 20000"):
        parse_table(raw)


def test_two_routes_may_not_share_a_port() -> None:
    with pytest.raises(ValidationError, match="reuses a port"):
        parse_table(_raw(_route(20000), _route(20001, grpcPort=20003)))


def test_route_file_reports_changes_and_keeps_the_last_good_table(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    routes = RouteFile(path)
    assert routes.poll() is None  # not mounted yet
    path.write_bytes(_raw(_route()))
    first = routes.poll()
    assert first is not None and "20000" in first.routes
    assert routes.poll() is None  # unchanged
    path.write_bytes(b"{not json")
    assert routes.poll() is None  # invalid: the activator keeps serving the last table
    path.write_bytes(_raw(_route(20002)))
    second = routes.poll()
    assert second is not None and list(second.routes) == ["20002"]

"""Ready pods from EndpointSlices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kinfer_activator.endpoints import FileEndpoints, KubeEndpointSlices, Pod, pods_of_slice


def _slice(name: str, service: str, endpoints: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "labels": {"kubernetes.io/service-name": service},
        },
        "ports": [{"name": "http", "port": 8080}, {"name": "classified", "port": 8090}],
        "endpoints": endpoints,
    }


def test_only_ready_endpoints_that_are_not_terminating_count() -> None:
    endpoints = [
        {"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
        {"addresses": ["10.0.0.2"], "conditions": {"ready": False}},
        {"addresses": ["10.0.0.3"], "conditions": {"ready": True, "terminating": True}},
        {"addresses": ["10.0.0.4"]},  # ready unset means ready
    ]
    assert pods_of_slice(_slice("s", "m-stable", endpoints)) == (
        Pod("10.0.0.1", 8080, 8090),
        Pod("10.0.0.4", 8080, 8090),
    )


def test_a_slice_without_an_http_port_gives_no_pods() -> None:
    bare = _slice("s", "m-stable", [{"addresses": ["10.0.0.1"]}]) | {"ports": [{"port": 1}]}
    assert pods_of_slice(bare) == ()


def test_slices_are_indexed_by_namespace_and_service_and_deletes_apply() -> None:
    source = KubeEndpointSlices(api=object())
    changes: list[None] = []
    source.subscribe(lambda: changes.append(None))
    source._replace_all(
        [
            _slice("a-1", "m-stable", [{"addresses": ["10.0.0.1"]}]),
            _slice("a-2", "m-stable", [{"addresses": ["10.0.0.2"]}]),
            _slice("b-1", "m-canary", [{"addresses": ["10.0.0.9"]}]),
        ]
    )
    assert {p.address for p in source.ready("team-a", "m-stable")} == {"10.0.0.1", "10.0.0.2"}
    assert source.ready("team-b", "m-stable") == ()
    source._apply("DELETED", _slice("a-1", "m-stable", []))
    assert [p.address for p in source.ready("team-a", "m-stable")] == ["10.0.0.2"]


def test_endpoints_file_is_reread(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps({"team-a/m-stable": ["127.0.0.1:8080:8090"]}))
    source = FileEndpoints(path)
    changes: list[None] = []
    source.subscribe(lambda: changes.append(None))
    source.poll()
    assert source.ready("team-a", "m-stable") == (Pod("127.0.0.1", 8080, 8090),)
    path.write_text(json.dumps({}))
    source.poll()
    assert source.ready("team-a", "m-stable") == ()
    assert len(changes) == 2

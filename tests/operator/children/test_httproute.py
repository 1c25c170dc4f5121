"""HTTPRoute and track Services for Gateway API traffic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kinfer_operator.children.httproute import build_httproute, build_track_service
from kinfer_operator.model import InferenceModel
from kinfer_operator.world import route_accepts

MakeModel = Callable[..., InferenceModel]
GATEWAY = {
    "canary": {"stepWeight": 10, "maxWeight": 30},
    "traffic": {
        "mode": "GatewayAPI",
        "gateway": {"parentRefs": [{"name": "inference-gw"}], "hostnames": ["resnet.example"]},
    },
}


def _route(make_model: MakeModel, weight: int) -> dict[str, Any]:
    return build_httproute(make_model({"rollout": GATEWAY}), weight)


def test_route_writes_both_weights_explicitly(make_model: MakeModel) -> None:
    backends = _route(make_model, 10)["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [
        ("resnet50-stable", 90),
        ("resnet50-canary", 10),
    ]


def test_route_attaches_to_parent_refs_and_hostnames(make_model: MakeModel) -> None:
    spec = _route(make_model, 0)["spec"]
    assert spec["parentRefs"] == [{"name": "inference-gw"}]
    assert spec["hostnames"] == ["resnet.example"]


def test_track_service_selects_one_revision(make_model: MakeModel) -> None:
    svc = build_track_service(make_model({"rollout": GATEWAY}), "canary", "abc")
    assert svc["spec"]["selector"]["serving.kinfer.io/revision"] == "abc"


def _with_status(route: dict[str, Any], **conditions: str) -> dict[str, Any]:
    route["metadata"]["generation"] = 2
    route["status"] = {
        "parents": [
            {
                "conditions": [
                    {"type": t, "status": s, "observedGeneration": 2} for t, s in conditions.items()
                ]
            }
        ]
    }
    return route


def test_route_counts_only_when_accepted_and_refs_resolved(make_model: MakeModel) -> None:
    assert not route_accepts(None, 10)
    assert not route_accepts(_route(make_model, 10), 10)  # no status yet
    ok = _with_status(_route(make_model, 10), Accepted="True", ResolvedRefs="True")
    assert route_accepts(ok, 10)
    assert not route_accepts(ok, 20)  # still carries the old weight
    refused = _with_status(_route(make_model, 10), Accepted="True", ResolvedRefs="False")
    assert not route_accepts(refused, 10)

"""HTTPRoute and track Services for Gateway API traffic."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from kinfer_operator.children.httproute import build_httproute, build_track_service
from kinfer_operator.model import InferenceModel
from kinfer_operator.world import route_accepts, route_problem

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


def test_track_service_exposes_the_public_grpc_and_classified_ports(make_model: MakeModel) -> None:
    svc = build_track_service(make_model({"rollout": GATEWAY}), "canary", "abc")
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert ports == {
        "http": (8080, "http"),
        "grpc": (8081, "grpc"),
        "classified": (8090, "classified"),
    }
    grpc = next(p for p in svc["spec"]["ports"] if p["name"] == "grpc")
    assert grpc["appProtocol"] == "kubernetes.io/h2c"  # how the gateway knows to speak h2c


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


def test_refused_route_quotes_the_gateways_reason_and_message(make_model: MakeModel) -> None:
    route = _with_status(_route(make_model, 10), Accepted="True", ResolvedRefs="False")
    condition = route["status"]["parents"][0]["conditions"][1]
    condition |= {"reason": "BackendNotFound", "message": "service resnet50-canary not found"}
    route["status"]["parents"][0]["parentRef"] = {"name": "inference-gw"}
    waiting = route_problem(route, 10)
    assert waiting is not None and waiting.refused
    assert waiting.message == (
        "gateway inference-gw: ResolvedRefs=False BackendNotFound: "
        "service resnet50-canary not found"
    )


def test_conditions_of_an_older_generation_are_not_a_refusal(make_model: MakeModel) -> None:
    route = _with_status(_route(make_model, 10), Accepted="True", ResolvedRefs="True")
    route["metadata"]["generation"] = 3  # the gateway has not seen the new weight yet
    waiting = route_problem(route, 10)
    assert waiting is not None and not waiting.refused and "generation 3" in waiting.message


PINNED = copy.deepcopy(GATEWAY)
PINNED["traffic"]["pin"] = {"header": "x-tester", "value": "next"}


@pytest.mark.parametrize("weight", [0, 10, 100])
def test_pinned_rule_sends_the_header_to_the_canary_at_any_weight(
    make_model: MakeModel, weight: int
) -> None:
    rules = build_httproute(make_model({"rollout": PINNED}), weight)["spec"]["rules"]
    assert [(b["name"], b["weight"]) for b in rules[0]["backendRefs"]] == [
        ("resnet50-stable", 100 - weight),
        ("resnet50-canary", weight),
    ]
    pinned = rules[1]
    assert pinned["matches"] == [
        {
            # REST only: a pinned gRPC call is the GRPCRoute's (children/grpcroute.py).
            "path": {"type": "PathPrefix", "value": "/v2"},
            "headers": [{"type": "Exact", "name": "x-tester", "value": "next"}],
        }
    ]
    assert [(b["name"], b["port"]) for b in pinned["backendRefs"]] == [("resnet50-canary", 8090)]
    # The weighted split goes to the public port, where a forged marker counts for nothing.
    assert {b["port"] for b in rules[0]["backendRefs"]} == {8080}


def test_only_pinned_requests_carry_the_marker_the_runtime_counts_apart(
    make_model: MakeModel,
) -> None:
    weighted, pinned = build_httproute(make_model({"rollout": PINNED}), 10)["spec"]["rules"]
    assert weighted["filters"] == [
        {"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": ["x-kinfer-pinned"]}}
    ]
    assert pinned["filters"] == [
        {
            "type": "RequestHeaderModifier",
            "requestHeaderModifier": {"set": [{"name": "x-kinfer-pinned", "value": "true"}]},
        }
    ]


def test_pin_defaults_to_x_kinfer_revision_canary(make_model: MakeModel) -> None:
    spec = copy.deepcopy(GATEWAY)
    spec["traffic"]["pin"] = {}
    rules = build_httproute(make_model({"rollout": spec}), 0)["spec"]["rules"]
    assert rules[1]["matches"][0]["headers"][0] | {} == {
        "type": "Exact",
        "name": "x-kinfer-revision",
        "value": "canary",
    }


def test_without_pin_the_route_has_one_rule_and_no_filters(make_model: MakeModel) -> None:
    rules = _route(make_model, 10)["spec"]["rules"]
    assert len(rules) == 1 and "filters" not in rules[0]

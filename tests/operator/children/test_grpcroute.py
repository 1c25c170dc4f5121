"""GRPCRoute: the HTTPRoute's parents, weights and pin, for gRPC clients of the gateway."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kinfer_operator import runtime_contract as rc
from kinfer_operator.children.grpcroute import build_grpcroute
from kinfer_operator.children.httproute import build_httproute
from kinfer_operator.model import InferenceModel
from kinfer_operator.world import route_problem, route_status_problem

MakeModel = Callable[..., InferenceModel]
GATEWAY: dict[str, Any] = {
    "canary": {"steps": [{"weight": 0}, {"weight": 10}]},
    "traffic": {
        "mode": "GatewayAPI",
        "gateway": {"parentRefs": [{"name": "inference-gw"}], "hostnames": ["resnet.example"]},
        "pin": {},
    },
}


@pytest.mark.parametrize("weight", [0, 10, 50, 100])
def test_grpc_route_has_the_http_routes_parents_and_weights(
    make_model: MakeModel, weight: int
) -> None:
    model = make_model({"rollout": GATEWAY})
    grpc, http = build_grpcroute(model, weight), build_httproute(model, weight)
    assert grpc["apiVersion"] == "gateway.networking.k8s.io/v1" and grpc["kind"] == "GRPCRoute"
    assert grpc["metadata"]["name"] == http["metadata"]["name"] == "resnet50"
    assert grpc["spec"]["parentRefs"] == http["spec"]["parentRefs"]
    assert grpc["spec"]["hostnames"] == http["spec"]["hostnames"]
    backends = grpc["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["port"], b["weight"]) for b in backends] == [
        ("resnet50-stable", rc.GRPC_PORT, 100 - weight),
        ("resnet50-canary", rc.GRPC_PORT, weight),
    ]
    # Only the inference service: a catch-all GRPCRoute would take the model's HTTP requests
    # on gateways that build one router per hostname (Traefik answered them 500).
    method = {"type": "Exact", "service": "inference.GRPCInferenceService"}
    assert grpc["spec"]["rules"][0]["matches"] == [{"method": method}]


def test_pinned_rule_matches_the_pin_header_and_goes_to_the_canary(make_model: MakeModel) -> None:
    rules = build_grpcroute(make_model({"rollout": GATEWAY}), 0)["spec"]["rules"]
    assert len(rules) == 2
    assert rules[1]["matches"] == [
        {
            "method": {"type": "Exact", "service": "inference.GRPCInferenceService"},
            "headers": [{"type": "Exact", "name": "x-kinfer-revision", "value": "canary"}],
        }
    ]
    assert rules[1]["backendRefs"] == [
        {"name": "resnet50-canary", "port": rc.GRPC_PORT, "weight": 1}
    ]


def test_no_pin_no_pinned_rule(make_model: MakeModel) -> None:
    rollout = {**GATEWAY, "canary": {"stepWeight": 10, "maxWeight": 30}}
    rollout["traffic"] = {k: v for k, v in GATEWAY["traffic"].items() if k != "pin"}
    assert len(build_grpcroute(make_model({"rollout": rollout}), 10)["spec"]["rules"]) == 1


def test_route_problem_names_the_grpc_route(make_model: MakeModel) -> None:
    route = build_grpcroute(make_model({"rollout": GATEWAY}), 10)
    route["metadata"]["generation"] = 2
    waiting = route_problem(route, 10, "GRPCRoute")
    assert waiting is not None and "GRPCRoute" in waiting.message and not waiting.refused
    route["status"] = {
        "parents": [
            {
                "parentRef": {"name": "inference-gw"},
                "conditions": [
                    {"type": "Accepted", "status": "True", "observedGeneration": 2},
                    {
                        "type": "ResolvedRefs",
                        "status": "False",
                        "reason": "BackendNotFound",
                        "message": "no resnet50-canary",
                        "observedGeneration": 2,
                    },
                ],
            }
        ]
    }
    refused = route_status_problem(route, "GRPCRoute")
    assert refused is not None and refused.refused
    assert "GRPCRoute ResolvedRefs=False BackendNotFound" in refused.message
    route["status"]["parents"][0]["conditions"][1]["status"] = "True"
    assert route_problem(route, 10, "GRPCRoute") is None
    assert route_problem(route, 50, "GRPCRoute") is not None  # not this weight yet

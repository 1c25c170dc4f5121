"""Tracing on the real lane: a runtime pod with spec.runtime.tracing exports by OTLP to Jaeger
(built by `make binaries` from the Go module proxy, run on the node's address), at the endpoint
the operator was configured with (KINFER_RUNTIME_OTLP_ENDPOINT; the model only turns tracing
on). One request is sent through the gateway (Traefik forwards `traceparent` as it forwards
every header) with a sampled W3C traceparent, and its trace is read back from Jaeger's query
API: the runtime's span tree sits under the client's span.
"""

from __future__ import annotations

import http.client
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import OPERATOR_MODE, TraceEndpoint
from dataplane import Prometheus
from gateway import Traefik
from harness import kubectl_apply
from jaeger import Jaeger, jaeger_binary, running_jaeger, span_tree
from realnode import canary_rollout, model_manifest
from test_real_gateway import _body, gateway_spec, traefik, wait_routed

__all__ = ["traefik"]  # the fixture, used here too

pytestmark = pytest.mark.real_node

SPANS = {"infer", "decode", "preprocess", "queue wait", "batch", "inference", "postprocess"}


@pytest.fixture
def jaeger(trace_endpoint: TraceEndpoint, tmp_path: Path) -> Iterator[Jaeger]:
    if OPERATOR_MODE == "incluster":
        pytest.skip("the in-cluster operator's OTLP endpoint is its chart value tracing.*")
    binary = jaeger_binary()
    if binary is None:
        message = "no jaeger binary: `make binaries` (build-binaries.sh jaeger) builds it"
        if os.environ.get("CI") or os.environ.get("KINFER_REAL_NODE") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with running_jaeger(binary, tmp_path, trace_endpoint.host, trace_endpoint.otlp_port) as j:
        yield j


def test_real_request_through_the_gateway_is_traced_into_jaeger(
    namespace: str, traefik: Traefik, real_prometheus: Prometheus, jaeger: Jaeger
) -> None:
    rollout = canary_rollout(real_prometheus.endpoint, [(50, 5)], intervalSeconds=5)
    rollout["traffic"] = gateway_spec(traefik, namespace)
    manifest = model_manifest(
        "demo",
        rollout=rollout,
        runtime={"tracing": {"samplingRatio": 0.0}},  # only what the caller sampled
    )
    kubectl_apply(manifest, namespace)
    wait_routed(namespace, traefik, "1")

    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    body, headers = _body()
    parts = urlsplit(traefik.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    conn.request(
        "POST",
        "/v2/models/demo/infer",
        body=body,
        headers={
            **headers,
            "Host": f"{namespace}.kinfer.test",
            "traceparent": f"00-{trace_id}-{caller}-01",
        },
    )
    response = conn.getresponse()
    assert response.status == 200, response.read()[:300]
    conn.close()

    trace = jaeger.wait_for_spans(trace_id, SPANS, timeout_s=90)
    tree = span_tree(trace)
    by_name = {span["operationName"]: sid for sid, span in tree["spans"].items()}
    infer = by_name["infer"]
    # Traefik adds no span of its own (no tracing configured): the runtime's `infer` is the
    # child of the caller's span, so the context crossed the gateway intact.
    assert tree["parent"][infer] == caller
    for child in ("decode", "preprocess", "queue wait", "batch", "postprocess"):
        assert tree["parent"][by_name[child]] == infer, child
    assert tree["parent"][by_name["inference"]] == by_name["batch"]
    assert infer in tree["links"][by_name["batch"]]
    process = trace["processes"][tree["spans"][infer]["processID"]]
    tags = {t["key"]: t["value"] for t in process.get("tags", [])}
    assert process["serviceName"] == "kinfer-runtime"
    assert tags.get("kinfer.model") == "demo"
    assert tags.get("k8s.namespace.name") == namespace

"""Tracing against a real backend: the runtime process exports by OTLP to Jaeger (built from
the Go module proxy by `make binaries`), and the span tree of one request is read back from
Jaeger's query API. Skips only where the binary is absent, unless KINFER_REQUIRE_JAEGER=1
(CI's unit-jaeger phase, once `make binaries` has run, sets it: there it must exist)."""

import os
import secrets

import grpc
import httpx
import numpy as np
import pytest
from jaeger import jaeger_binary, running_jaeger, span_tree
from kinfer_runtime.schemas.proto import grpc_service_pb2 as pb

BINARY = jaeger_binary()
pytestmark = pytest.mark.skipif(
    BINARY is None and os.environ.get("KINFER_REQUIRE_JAEGER") != "1",
    reason="no jaeger binary (`bash e2e/tools/build-binaries.sh jaeger` builds it)",
)

SPANS = {"infer", "decode", "preprocess", "queue wait", "batch", "inference", "postprocess"}


def _grpc_infer(target: str, x: np.ndarray, traceparent: str) -> None:
    request = pb.ModelInferRequest(model_name="demo")
    request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(np.ascontiguousarray(x).tobytes())
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        call(request, timeout=30, metadata=(("traceparent", traceparent),))


def test_one_request_gives_the_documented_span_tree_under_the_callers_span(
    demo_dir, server_process, unused_port, oip, tmp_path, images: np.ndarray
) -> None:
    assert BINARY is not None, "KINFER_REQUIRE_JAEGER=1: no jaeger binary (make binaries)"
    with running_jaeger(BINARY, tmp_path) as jaeger:
        server = server_process(
            {
                "KINFER_MODEL_URI": str(demo_dir / "model.onnx"),
                "KINFER_MODEL_NAME": "demo",
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint,
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "0",  # only what the caller sampled is traced
                "OTEL_BSP_SCHEDULE_DELAY": "100",
                "KINFER_GRPC_PORT": str(grpc_port := unused_port()),
            }
        )
        server.wait_ready()
        trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
        body, headers = oip.image_body(images[:2])
        url = f"{server.url}/v2/models/demo/infer"
        unsampled = httpx.post(
            url, content=body, headers={**headers, "traceparent": f"00-{'1' * 32}-{caller}-00"}
        )
        assert unsampled.status_code == 200
        response = httpx.post(
            url,
            content=body,
            headers={**headers, "traceparent": f"00-{trace_id}-{caller}-01"},
            timeout=30,
        )
        assert response.status_code == 200
        trace = jaeger.wait_for_spans(trace_id, SPANS)
        assert jaeger.trace("1" * 32) is None  # the unsampled caller's trace was not recorded
        grpc_trace_id = secrets.token_hex(16)
        _grpc_infer(f"127.0.0.1:{grpc_port}", images[:1], f"00-{grpc_trace_id}-{caller}-01")
        over_grpc = jaeger.wait_for_spans(grpc_trace_id, SPANS)

    tree = span_tree(trace)
    by_name = {span["operationName"]: sid for sid, span in tree["spans"].items()}
    assert sorted(s["operationName"] for s in trace["spans"]) == sorted(SPANS)  # each once
    infer = by_name["infer"]
    assert tree["parent"][infer] == caller  # under the caller's span from traceparent
    for child in ("decode", "preprocess", "queue wait", "batch", "postprocess"):
        assert tree["parent"][by_name[child]] == infer, child
    assert tree["parent"][by_name["inference"]] == by_name["batch"]
    assert tree["links"][by_name["batch"]] == [infer]  # the batch links its one request
    tags = {t["key"]: t["value"] for t in tree["spans"][by_name["batch"]]["tags"]}
    assert tags["kinfer.batch.size"] == 2 and tags["kinfer.batch.requests"] == 1
    grpc_tree = span_tree(over_grpc)
    grpc_infer = next(
        sid for sid, span in grpc_tree["spans"].items() if span["operationName"] == "infer"
    )
    assert grpc_tree["parent"][grpc_infer] == caller
    grpc_tags = {t["key"]: t["value"] for t in grpc_tree["spans"][grpc_infer]["tags"]}
    assert grpc_tags["rpc.system"] == "grpc"

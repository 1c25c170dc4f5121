"""The response cache in the real process: a repeated input is answered without the model
(header `x-kinfer-cache: hit`, no batch), over REST JSON, the binary extension and gRPC."""

import re

import grpc
import httpx
import numpy as np
from kinfer_runtime.schemas.proto import grpc_service_pb2 as pb


def _metric(page: str, name: str) -> float:
    match = re.search(rf"^{name}{{[^}}]*}} (\S+)$", page, re.MULTILINE)
    assert match is not None, name
    return float(match[1])


def _grpc_infer(target: str, x: np.ndarray) -> tuple[np.ndarray, dict[str, str]]:
    request = pb.ModelInferRequest(model_name="demo")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    del tensor
    request.raw_input_contents.append(np.ascontiguousarray(x).tobytes())
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        response, state = call.with_call(request, timeout=30)
    metadata = {m.key: m.value for m in state.initial_metadata()}
    logits = np.frombuffer(response.raw_output_contents[0], dtype=np.float32)
    return logits.reshape(list(response.outputs[0].shape)), metadata


def test_repeated_inputs_are_hits_that_skip_the_batcher_on_every_protocol(
    demo_dir, server_process, unused_port, oip, images: np.ndarray
) -> None:
    grpc_port = unused_port()
    server = server_process(
        {
            "KINFER_MODEL_URI": str(demo_dir / "model.onnx"),
            "KINFER_MODEL_NAME": "demo",
            "KINFER_RESPONSE_CACHE_BYTES": str(1 << 20),
            "KINFER_GRPC_PORT": str(grpc_port),
        },
        metrics=True,
    )
    server.wait_ready()
    url = f"{server.url}/v2/models/demo/infer"
    one, other = images[:1], images[1:2]
    with httpx.Client(timeout=30) as client:

        def page() -> str:
            return client.get(f"{server.metrics_url}/metrics").text

        batches_before = _metric(page(), "kinfer_batch_size_count")  # warm-up runs none here
        body, headers = oip.image_body(one)
        first = client.post(url, content=body, headers=headers)
        second = client.post(url, content=body, headers=headers)
        assert "x-kinfer-cache" not in first.headers
        assert second.headers["x-kinfer-cache"] == "hit"
        np.testing.assert_array_equal(oip.outputs(first)["logits"], oip.outputs(second)["logits"])

        # The same tensor as JSON, asking for JSON output and with a request id: same entry.
        as_json = client.post(url, json=oip.json_body(one, id="req-7"))
        assert as_json.headers["x-kinfer-cache"] == "hit"
        assert as_json.json()["id"] == "req-7"
        np.testing.assert_allclose(
            oip.outputs(as_json)["logits"], oip.outputs(first)["logits"], rtol=1e-6
        )

        # Another input misses (shape and datatype changes: tests/runtime/dataplane).
        assert "x-kinfer-cache" not in client.post(url, json=oip.json_body(other)).headers

        logits, metadata = _grpc_infer(f"127.0.0.1:{grpc_port}", one)
        assert metadata.get("x-kinfer-cache") == "hit"
        np.testing.assert_allclose(logits, oip.outputs(first)["logits"], rtol=1e-6)

        metrics = page()
        assert _metric(metrics, "kinfer_response_cache_hits_total") == 3
        assert _metric(metrics, "kinfer_response_cache_misses_total") == 2
        assert _metric(metrics, "kinfer_response_cache_evictions_total") == 0
        assert _metric(metrics, "kinfer_response_cache_bytes") > 0
        # Only the two misses ran the model.
        assert _metric(metrics, "kinfer_batch_size_count") - batches_before == 2


def test_without_the_setting_nothing_is_cached(
    demo_dir, server_process, oip, images: np.ndarray
) -> None:
    server = server_process(
        {"KINFER_MODEL_URI": str(demo_dir / "model.onnx"), "KINFER_MODEL_NAME": "demo"},
        metrics=True,
    )
    server.wait_ready()
    body, headers = oip.image_body(images[:1])
    with httpx.Client(timeout=30) as client:
        for _ in range(2):
            response = client.post(
                f"{server.url}/v2/models/demo/infer", content=body, headers=headers
            )
            assert response.status_code == 200
            assert "x-kinfer-cache" not in response.headers
        page = client.get(f"{server.metrics_url}/metrics").text
    assert _metric(page, "kinfer_response_cache_hits_total") == 0
    assert _metric(page, "kinfer_batch_size_count") >= 2

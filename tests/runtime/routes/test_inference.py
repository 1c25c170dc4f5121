"""POST /v2/models/{name}[/versions/{v}]/infer over a real socket: encodings and every error."""

import gzip
import json
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from kinfer_runtime.backends import BackendOptions
from kinfer_runtime.backends.onnx import OnnxBackend

INFER = "/v2/models/demo/infer"


@pytest.fixture(scope="module")
def reference(demo_dir: Path) -> Callable[[np.ndarray], np.ndarray]:
    backend = OnnxBackend(demo_dir / "model.onnx", BackendOptions(device="cpu"))
    backend.load()
    return lambda x: backend.infer({"input": x})["logits"]


# --- successful requests ---------------------------------------------------------------------


def test_json_request_returns_the_models_logits_bit_for_bit(
    client: httpx.Client, oip, images: np.ndarray, reference
) -> None:
    x = images[:2]
    response = client.post(INFER, json=oip.json_body(x))
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["model_name"] == "demo" and body["model_version"] == "1"
    assert body["outputs"][0]["datatype"] == "FP32"
    assert body["outputs"][0]["shape"] == [2, 10]
    np.testing.assert_array_equal(oip.outputs(response)["logits"], reference(x))


def test_nested_json_data_is_accepted(client: httpx.Client, images: np.ndarray, reference) -> None:
    x = images[:1]
    doc = {
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": [1, 3, 32, 32], "data": x.tolist()}
        ]
    }
    response = client.post(INFER, json=doc)
    assert response.status_code == 200
    np.testing.assert_array_equal(
        np.array(response.json()["outputs"][0]["data"], np.float32), reference(x).ravel()
    )


def test_request_id_and_parameters_are_accepted_and_id_echoed(
    client: httpx.Client, oip, images: np.ndarray
) -> None:
    doc = oip.json_body(images[:1], id="req-42", parameters={"priority": 1, "anything": "x"})
    response = client.post(INFER, json=doc)
    assert response.status_code == 200
    assert response.json()["id"] == "req-42"


def test_versioned_path_infers(client: httpx.Client, oip, images: np.ndarray) -> None:
    response = client.post("/v2/models/demo/versions/1/infer", json=oip.json_body(images[:1]))
    assert response.status_code == 200


def test_binary_input_and_binary_output(
    client: httpx.Client, oip, images: np.ndarray, reference
) -> None:
    x = images[:3]
    body, headers = oip.image_body(x, binary_output=True)
    response = client.post(INFER, content=body, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["Inference-Header-Content-Length"])
    header = json.loads(response.content[:length])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 3 * 10 * 4}
    assert "data" not in header["outputs"][0]
    assert len(response.content) == length + 120
    np.testing.assert_array_equal(oip.outputs(response)["logits"], reference(x))


def test_binary_input_with_json_output(client: httpx.Client, oip, images: np.ndarray) -> None:
    body, headers = oip.image_body(images[:1], binary_output=False)
    response = client.post(INFER, content=body, headers=headers)
    assert response.status_code == 200
    assert "Inference-Header-Content-Length" not in response.headers
    assert len(response.json()["outputs"][0]["data"]) == 10


def test_per_output_binary_data_parameter_selects_binary(
    client: httpx.Client, oip, images: np.ndarray
) -> None:
    doc = oip.json_body(
        images[:1], outputs=[{"name": "logits", "parameters": {"binary_data": True}}]
    )
    response = client.post(INFER, json=doc)
    assert response.status_code == 200
    assert "Inference-Header-Content-Length" in response.headers
    assert oip.outputs(response)["logits"].shape == (1, 10)


def test_every_datatype_the_model_uses_round_trips_as_json_and_binary(
    serve: Callable, make_settings: Callable, types_model: Path, oip
) -> None:
    tensors = {
        "text": (
            "BYTES",
            np.array([[b"hello", "h\u00e9llo".encode()], [b"", b"x y"]], dtype=object),
        ),
        "count": ("INT64", np.array([[1, -(2**40)], [3, 4]], dtype=np.int64)),
        "flag": ("BOOL", np.array([[True, False], [False, True]])),
        "half": ("FP16", np.array([[0.5, -1.25], [65504, 0]], dtype=np.float16)),
        "small": ("UINT8", np.array([[0, 255], [7, 8]], dtype=np.uint8)),
    }
    settings = make_settings(types_model, model_name="types")
    with serve(settings) as live, httpx.Client(base_url=live.url) as c:
        body, headers = oip.binary_body(tensors)
        binary = oip.outputs(c.post("/v2/models/types/infer", content=body, headers=headers))
        doc = {
            "inputs": [
                {
                    "name": n,
                    "datatype": d,
                    "shape": list(a.shape),
                    "data": [v.decode() for v in a.ravel()] if d == "BYTES" else a.ravel().tolist(),
                }
                for n, (d, a) in tensors.items()
            ]
        }
        as_json = oip.outputs(c.post("/v2/models/types/infer", json=doc))
    for name, (_, array) in tensors.items():
        assert binary[f"{name}_out"].tolist() == array.tolist()
        assert as_json[f"{name}_out"].tolist() == array.tolist()


# --- client errors: always 4xx with a reason, never a 500 ------------------------------------


def image_input(**overrides: Any) -> dict[str, Any]:
    tensor: dict[str, Any] = {
        "name": "input",
        "datatype": "FP32",
        "shape": [1, 3, 32, 32],
        "data": [0.0] * 3072,
    }
    tensor.update(overrides)
    return {"inputs": [tensor]}


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({}, "'inputs' must be a non-empty list"),
        ({"inputs": []}, "'inputs' must be a non-empty list"),
        ([1, 2], "must be a JSON object"),
        ({"inputs": [7]}, "must be an object"),
        ({"inputs": [{"datatype": "FP32"}]}, "an input has no 'name'"),
        (image_input(datatype=None), "missing 'datatype'"),
        (image_input(shape="1,3"), "shape must be a list of non-negative integers"),
        (image_input(shape=[1, -3, 32, 32]), "shape must be a list of non-negative integers"),
        ({"id": 5, **image_input()}, "'id' must be a string"),
        (
            {**image_input(), "outputs": [{"name": "logits", "parameters": {"classification": 3}}]},
            "classification extension is not supported",
        ),
    ],
)
def test_malformed_body_is_400_with_reason(client: httpx.Client, doc: Any, reason: str) -> None:
    response = client.post(INFER, json=doc)
    assert response.status_code == 400
    assert reason in response.json()["error"]


def test_body_that_is_not_json_is_400(client: httpx.Client) -> None:
    response = client.post(
        INFER, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def test_unknown_input_name_is_400_with_reason(client: httpx.Client) -> None:
    response = client.post(INFER, json=image_input(name="pixels"))
    assert response.status_code == 400
    assert response.json()["error"] == "unknown input 'pixels'; model inputs are ['input']"


def test_wrong_datatype_is_400_with_reason(client: httpx.Client) -> None:
    response = client.post(INFER, json=image_input(datatype="FP64"))
    assert response.status_code == 400
    assert response.json()["error"] == "input 'input' has datatype FP64, model expects FP32"


def test_unsupported_datatype_name_is_400(client: httpx.Client) -> None:
    response = client.post(INFER, json=image_input(datatype="FP128"))
    assert response.status_code == 400
    assert "unsupported datatype 'FP128'" in response.json()["error"]


def test_wrong_shape_is_400_with_reason(client: httpx.Client) -> None:
    response = client.post(INFER, json=image_input(shape=[1, 3, 16, 64]))
    assert response.status_code == 400
    assert "shape [1,3,16,64], model expects [-1,3,32,32]" in response.json()["error"]


def test_json_data_size_not_matching_shape_is_400(client: httpx.Client) -> None:
    response = client.post(INFER, json=image_input(data=[0.0] * 3071))
    assert response.status_code == 400
    assert "data has 3071 elements but shape [1, 3, 32, 32] needs 3072" in response.json()["error"]


def test_non_numeric_data_for_a_float_tensor_is_400(client: httpx.Client) -> None:
    response = client.post(INFER, json=image_input(data=["a"] * 3072))
    assert response.status_code == 400
    assert "not valid FP32" in response.json()["error"]


def test_ragged_nested_data_is_400(client: httpx.Client) -> None:
    response = client.post(INFER, json=image_input(data=[[0.0, 1.0], [2.0]]))
    assert response.status_code == 400
    assert "not a regular array" in response.json()["error"]


def test_binary_size_not_matching_shape_is_400(client: httpx.Client) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [1, 3, 32, 32],
                    "parameters": {"binary_data_size": 100},
                }
            ]
        }
    ).encode()
    response = client.post(
        INFER,
        content=header + bytes(100),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 400
    assert (
        "binary_data_size is 100 bytes but shape [1, 3, 32, 32] of FP32 needs 12288"
        in (response.json()["error"])
    )


def test_binary_bytes_left_over_are_400(client: httpx.Client, oip, images: np.ndarray) -> None:
    body, headers = oip.image_body(images[:1])
    response = client.post(INFER, content=body + b"extra", headers=headers)
    assert response.status_code == 400
    assert "5 bytes of binary data belong to no input" in response.json()["error"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [("99999", "exceeds the body"), ("abc", "not an integer"), ("-1", "negative")],
)
def test_bad_header_length_is_400(
    client: httpx.Client, oip, images, value: str, reason: str
) -> None:
    body, _ = oip.image_body(images[:1])
    response = client.post(INFER, content=body, headers={"Inference-Header-Content-Length": value})
    assert response.status_code == 400
    assert reason in response.json()["error"]


def test_unknown_requested_output_is_400(client: httpx.Client, oip, images) -> None:
    doc = oip.json_body(images[:1], outputs=[{"name": "probabilities"}])
    response = client.post(INFER, json=doc)
    assert response.status_code == 400
    assert "unknown output 'probabilities'" in response.json()["error"]


def test_int_out_of_range_is_400(
    serve: Callable, make_settings: Callable, types_model: Path
) -> None:
    doc = {"inputs": [{"name": "small", "datatype": "UINT8", "shape": [1, 2], "data": [1, 300]}]}
    with serve(make_settings(types_model, model_name="types")) as live:
        response = httpx.post(f"{live.url}/v2/models/types/infer", json=doc)
    assert response.status_code == 400
    assert "out of range for UINT8" in response.json()["error"]


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/v2/models/resnet/infer", "model 'resnet' is not served here"),
        ("/v2/models/demo/versions/7/infer", "model 'demo' has no version '7'"),
    ],
)
def test_unknown_model_or_version_is_404(client: httpx.Client, oip, images, path, reason) -> None:
    response = client.post(path, json=oip.json_body(images[:1]))
    assert response.status_code == 404
    assert response.json() == {"error": reason}


def test_garbage_never_causes_a_500(client: httpx.Client) -> None:
    bodies = [
        b"",
        b"null",
        b"[]",
        b"\xff\xfe",
        b'{"inputs": null}',
        b'{"inputs": [{"name": 1}]}',
        b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1e9, 1e9], "data": []}]}',
        b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 32, 32], '
        b'"data": [null]}]}',
    ]
    for body in bodies:
        response = client.post(INFER, content=body)
        assert 400 <= response.status_code < 500, (body, response.text)
        assert "error" in response.json()


# --- limits ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_limits(demo_dir: Path, variant_dir, make_settings, serve) -> Iterator[str]:
    settings = make_settings(
        variant_dir("slow") / "model.onnx",
        max_body_bytes=20_000,
        max_batch_size=1,
        max_queue_size=2,
    )
    with serve(settings) as live:
        yield live.url


def test_body_above_the_limit_is_413(small_limits: str, oip, images) -> None:
    body, headers = oip.image_body(images[:2])  # 24 KiB of pixels
    response = httpx.post(f"{small_limits}{INFER}", content=body, headers=headers)
    assert response.status_code == 413
    assert "exceeds the 20000 byte limit" in response.json()["error"]


def test_chunked_body_above_the_limit_is_413(small_limits: str, oip, images) -> None:
    body, headers = oip.image_body(images[:2])
    chunks = iter([body[:10_000], body[10_000:]])  # no Content-Length: chunked encoding
    response = httpx.post(f"{small_limits}{INFER}", content=chunks, headers=headers)
    assert response.status_code == 413


def test_full_queue_is_503_with_retry_after_and_others_succeed(small_limits: str, oip, images):
    body, headers = oip.image_body(images[:1])
    start = threading.Barrier(16)

    def post(_: int) -> httpx.Response:
        with httpx.Client(timeout=60) as c:
            c.get(f"{small_limits}/v2/health/live")  # connect first, then fire together
            start.wait()
            return c.post(f"{small_limits}{INFER}", content=body, headers=headers)

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(post, range(16)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}
    assert statuses.count(200) >= 2
    overloaded = [r for r in responses if r.status_code == 503]
    assert overloaded, "16 concurrent requests on a queue of 2 must shed load"
    assert all(r.headers["Retry-After"] == "1" for r in overloaded)
    assert all(
        "overloaded" in r.json()["error"] or "queue full" in r.json()["error"] for r in overloaded
    )


def test_request_past_its_deadline_is_503(variant_dir, make_settings, serve, oip, images) -> None:
    settings = make_settings(variant_dir("slow") / "model.onnx", request_timeout_s=0.001)
    with serve(settings) as live:
        body, headers = oip.image_body(images[:8])
        response = httpx.post(f"{live.url}{INFER}", content=body, headers=headers)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "did not complete within 0.001s" in response.json()["error"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_request_bodies_are_inflated(
    client: httpx.Client, oip, images, reference, encoding: str
) -> None:
    body, headers = oip.image_body(images[:2])
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    response = client.post(INFER, content=packed, headers={**headers, "Content-Encoding": encoding})
    np.testing.assert_array_equal(oip.outputs(response)["logits"], reference(images[:2]))


def test_compressed_body_inflating_past_the_limit_is_413(small_limits: str, oip, images) -> None:
    bomb = gzip.compress(bytes(10_000_000))  # ~10 KB on the wire, 10 MB inflated
    response = httpx.post(
        f"{small_limits}{INFER}", content=bomb, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 413
    assert "decompressed request body exceeds" in response.json()["error"]


@pytest.mark.parametrize(
    ("encoding", "reason"), [("br", "unsupported Content-Encoding"), ("gzip", "not valid gzip")]
)
def test_unsupported_or_corrupt_encoding_is_400(client: httpx.Client, encoding, reason) -> None:
    response = client.post(INFER, content=b"plain", headers={"Content-Encoding": encoding})
    assert response.status_code == 400
    assert reason in response.json()["error"]


def test_model_failing_at_run_time_is_500_and_the_server_keeps_serving(
    variant_dir, make_settings, serve, oip, images
) -> None:
    with serve(make_settings(variant_dir("faulty") / "model.onnx")) as live:
        url = f"{live.url}{INFER}"
        body, headers = oip.image_body(images[:1])
        failed = httpx.post(url, content=body, headers=headers)
        assert failed.status_code == 500
        reason = failed.json()["error"]
        assert reason.startswith("model execution failed: ") and "\n" not in reason
        zeros, headers = oip.image_body(np.zeros((1, 3, 32, 32), np.float32))
        assert httpx.post(url, content=zeros, headers=headers).status_code == 200
        assert live.metric("kinfer_requests_total", protocol="rest", source="live", code="500") == 1


# --- priorities and queue timeouts -----------------------------------------------------------


@pytest.fixture(scope="module")
def slow_two_levels(variant_dir, make_settings, serve) -> Iterator[Any]:
    settings = make_settings(
        variant_dir("slow") / "model.onnx", max_batch_size=16, priority_levels=2, default_priority=2
    )
    with serve(settings) as live:
        yield live


def wait_until_executing(live: Any) -> None:
    """Until the one request in flight has left the queue for the worker."""
    deadline = time.monotonic() + 30
    while not (
        live.metric("kinfer_inflight_requests") == 1 and live.metric("kinfer_queue_depth") == 0
    ):
        assert time.monotonic() < deadline, "the request never reached the worker"
        time.sleep(0.005)
    time.sleep(0.05)  # past decoding, into the model (microseconds of work)


def test_request_past_its_queue_timeout_is_503_at_once(slow_two_levels, oip, images) -> None:
    url = f"{slow_two_levels.url}{INFER}"
    rejected_before = slow_two_levels.metric(
        "kinfer_rejected_requests_total", reason="queue_timeout", priority="1"
    )
    body, headers = oip.image_body(images[:16])  # a full batch: ~1 s of the slow model
    holder = threading.Thread(
        target=httpx.post, args=(url,), kwargs={"content": body, "headers": headers, "timeout": 60}
    )
    holder.start()
    wait_until_executing(slow_two_levels)
    body, headers = oip.binary_body(
        {"input": ("FP32", images[:1])}, parameters={"priority": 1, "timeout": 20_000}
    )
    response = httpx.post(url, content=body, headers=headers, timeout=60)
    answered_while_busy = holder.is_alive()
    holder.join()
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert "queue timeout" in response.json()["error"]
    assert answered_while_busy  # at its timeout, not once the worker freed up
    rejected = slow_two_levels.metric(
        "kinfer_rejected_requests_total", reason="queue_timeout", priority="1"
    )
    assert rejected == (rejected_before or 0) + 1


def test_priority_and_timeout_are_accepted_when_there_is_time(slow_two_levels, oip, images) -> None:
    body, headers = oip.binary_body(
        {"input": ("FP32", images[:1])}, parameters={"priority": 1, "timeout": 30_000_000}
    )
    response = httpx.post(f"{slow_two_levels.url}{INFER}", content=body, headers=headers)
    assert response.status_code == 200
    assert slow_two_levels.metric("kinfer_queue_wait_seconds_count", priority="1")


@pytest.mark.parametrize("parameters", [{"priority": -1}, {"priority": "high"}, {"timeout": 1.5}])
def test_malformed_scheduling_parameters_are_400(
    client: httpx.Client, oip, images, parameters
) -> None:
    body, headers = oip.binary_body({"input": ("FP32", images[:1])}, parameters=parameters)
    response = client.post(INFER, content=body, headers=headers)
    assert response.status_code == 400
    assert "must be a non-negative integer" in response.json()["error"]


def test_other_methods_on_infer_are_405_and_other_paths_still_route(client: httpx.Client) -> None:
    response = client.get(INFER)
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    assert client.get("/v2/models/demo").status_code == 200
    assert client.post("/v2/models/demo/infer/extra", json={}).status_code == 404

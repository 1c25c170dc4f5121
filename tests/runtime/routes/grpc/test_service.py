"""inference.GRPCInferenceService over a real socket, driven by Triton's own gRPC client."""

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as tc
import tritonclient.grpc.aio as tc_aio
from tritonclient.grpc import service_pb2 as triton_pb
from tritonclient.utils import InferenceServerException


@pytest.fixture(scope="module")
def grpc_server(serve, make_settings, unused_port, demo_dir: Path) -> Iterator[Any]:
    settings = make_settings(demo_dir / "model.onnx", grpc_port=unused_port(), revision="r1")
    with serve(settings) as live:
        yield live


@pytest.fixture
def client(grpc_server) -> Iterator[tc.InferenceServerClient]:
    with tc.InferenceServerClient(grpc_server.grpc_target) as c:
        yield c


@pytest.fixture(scope="module")
def onnxruntime_logits(demo_dir: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The reference: ONNX Runtime itself, not the runtime's backend."""
    session = ort.InferenceSession(str(demo_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    return lambda x: session.run(["logits"], {"input": x})[0]


def image_input(x: np.ndarray) -> tc.InferInput:
    tensor = tc.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return tensor


def status_of(exc: InferenceServerException) -> str:
    return str(exc.status())


# --- health and metadata ---------------------------------------------------------------------


def test_server_is_live_and_ready(client: tc.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()


def test_model_ready_and_unknown_model_is_not_found(client: tc.InferenceServerClient) -> None:
    assert client.is_model_ready("demo")
    assert client.is_model_ready("demo", "1")
    with pytest.raises(InferenceServerException) as info:
        client.is_model_ready("nope")
    assert status_of(info.value) == "StatusCode.NOT_FOUND"


def test_server_metadata_names_kinfer_and_its_extensions(
    client: tc.InferenceServerClient,
) -> None:
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "kinfer"
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_has_the_signature(client: tc.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("demo", as_json=True)
    assert metadata["name"] == "demo" and metadata["versions"] == ["1"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [
        {"name": "input", "datatype": "FP32", "shape": ["-1", "3", "32", "32"]}
    ]
    assert metadata["outputs"][0]["name"] == "logits"
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata("demo", "7")
    assert status_of(info.value) == "StatusCode.NOT_FOUND"


# --- inference -------------------------------------------------------------------------------


def test_raw_tensors_give_onnxruntimes_logits(
    client: tc.InferenceServerClient, images: np.ndarray, onnxruntime_logits
) -> None:
    x = images[:4]
    result = client.infer("demo", [image_input(x)], request_id="r-7")
    assert result.get_response().id == "r-7"
    assert result.get_response().model_name == "demo"
    logits = result.as_numpy("logits")
    assert logits.shape == (4, 10) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, onnxruntime_logits(x), rtol=1e-5, atol=1e-5)


def test_typed_contents_are_accepted(
    client: tc.InferenceServerClient, images: np.ndarray, onnxruntime_logits
) -> None:
    """Triton's own message classes, with `contents` instead of raw bytes."""
    x = images[:2]
    request = triton_pb.ModelInferRequest(model_name="demo")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    response = client._client_stub.ModelInfer(request)
    logits = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(2, 10)
    np.testing.assert_allclose(logits, onnxruntime_logits(x), rtol=1e-5, atol=1e-5)


def test_version_and_requested_output_are_honoured(
    client: tc.InferenceServerClient, images: np.ndarray
) -> None:
    result = client.infer(
        "demo",
        [image_input(images[:1])],
        model_version="1",
        outputs=[tc.InferRequestedOutput("logits")],
    )
    assert [o.name for o in result.get_response().outputs] == ["logits"]


def test_every_datatype_round_trips(serve, make_settings, unused_port, types_model: Path) -> None:
    values = {
        "text": ("BYTES", np.array([[b"a", b""], [b"\xc3\xa9", b"long" * 50]], dtype=object)),
        "count": ("INT64", np.array([[1, -(2**40)], [3, 4]], dtype=np.int64)),
        "flag": ("BOOL", np.array([[True, False], [False, True]])),
        "half": ("FP16", np.array([[0.5, -1.25], [2.0, 65504]], dtype=np.float16)),
        "small": ("UINT8", np.array([[0, 255], [7, 8]], dtype=np.uint8)),
    }
    settings = make_settings(types_model, model_name="types", grpc_port=unused_port())
    with serve(settings) as live, tc.InferenceServerClient(live.grpc_target) as client:
        inputs = []
        for name, (datatype, array) in values.items():
            tensor = tc.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        result = client.infer("types", inputs)
        for name, (_, array) in values.items():
            np.testing.assert_array_equal(result.as_numpy(f"{name}_out"), array)


def test_64_concurrent_requests_each_get_their_own_rows(
    grpc_server, images: np.ndarray, onnxruntime_logits
) -> None:
    expected = onnxruntime_logits(images)
    batches_before = grpc_server.metric("kinfer_batch_size_count") or 0

    async def scenario() -> list[np.ndarray]:
        async with tc_aio.InferenceServerClient(grpc_server.grpc_target) as client:

            async def one(i: int) -> np.ndarray:
                result = await client.infer("demo", [image_input(images[i : i + 1])])
                return result.as_numpy("logits")

            return await asyncio.gather(*(one(i) for i in range(64)))

    results = asyncio.run(scenario())
    for i, logits in enumerate(results):
        np.testing.assert_allclose(logits[0], expected[i], rtol=1e-5, atol=1e-5)
    batches = (grpc_server.metric("kinfer_batch_size_count") or 0) - batches_before
    assert batches < 64  # the same batcher as REST coalesced concurrent gRPC requests


def test_stream_answers_each_request_in_order_and_survives_an_error(
    client: tc.InferenceServerClient, images: np.ndarray, onnxruntime_logits
) -> None:
    received: list[tuple[Any, Any]] = []
    client.start_stream(callback=lambda result, error: received.append((result, error)))
    try:
        client.async_stream_infer("demo", [image_input(images[:1])], request_id="a")
        bad = tc.InferInput("input", [1, 3], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3), np.float32))
        client.async_stream_infer("demo", [bad], request_id="b")
        client.async_stream_infer("demo", [image_input(images[1:2])], request_id="c")
    finally:
        client.stop_stream()  # waits for the responses
    assert len(received) == 3
    (first, e1), (_, e2), (third, e3) = received
    assert e1 is None and e3 is None and e2 is not None
    assert "shape" in str(e2)
    np.testing.assert_allclose(first.as_numpy("logits"), onnxruntime_logits(images[:1]), atol=1e-5)
    assert third.get_response().id == "c"


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tensor", "reason"),
    [
        (("input", [1, 3], "FP32", np.zeros((1, 3), np.float32)), "shape"),
        (("input", [1, 3, 32, 32], "FP64", np.zeros((1, 3, 32, 32))), "datatype FP64"),
        (("pixels", [1, 3, 32, 32], "FP32", np.zeros((1, 3, 32, 32), np.float32)), "unknown input"),
    ],
)
def test_invalid_input_is_invalid_argument(
    client: tc.InferenceServerClient, tensor: tuple[str, list[int], str, np.ndarray], reason: str
) -> None:
    name, shape, datatype, data = tensor
    wrong = tc.InferInput(name, shape, datatype)
    wrong.set_data_from_numpy(data)
    with pytest.raises(InferenceServerException) as info:
        client.infer("demo", [wrong])
    assert status_of(info.value) == "StatusCode.INVALID_ARGUMENT"
    assert reason in info.value.message()


def test_raw_contents_that_do_not_match_the_shape_are_invalid_argument(
    client: tc.InferenceServerClient,
) -> None:
    request = triton_pb.ModelInferRequest(model_name="demo")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 3, 32, 32])
    request.raw_input_contents.append(b"\0" * 12)
    with pytest.raises(grpc.RpcError) as info:
        client._client_stub.ModelInfer(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "binary_data_size is 12 bytes" in info.value.details()


def test_unknown_model_is_not_found(client: tc.InferenceServerClient, images: np.ndarray) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.infer("nope", [image_input(images[:1])])
    assert status_of(info.value) == "StatusCode.NOT_FOUND"


def test_requests_are_counted_with_protocol_grpc(
    grpc_server, client: tc.InferenceServerClient, images: np.ndarray
) -> None:
    def count(code: str) -> float:
        return (
            grpc_server.metric("kinfer_requests_total", protocol="grpc", source="live", code=code)
            or 0
        )

    ok, missing = count("200"), count("404")
    client.infer("demo", [image_input(images[:1])])
    with pytest.raises(InferenceServerException):
        client.infer("nope", [image_input(images[:1])])
    assert count("200") == ok + 1 and count("404") == missing + 1
    assert (
        grpc_server.metric("kinfer_requests_total", protocol="rest", source="live", code="200") or 0
    ) == 0
    assert grpc_server.metric(
        "kinfer_request_duration_seconds_count", protocol="grpc", source="live"
    )


def test_taken_grpc_port_fails_the_process_with_a_reason(server_process, demo_dir: Path) -> None:
    with grpc_blocker() as port:
        process = server_process(
            {
                "KINFER_MODEL_URI": str(demo_dir / "model.onnx"),
                "KINFER_MODEL_NAME": "demo",
                "KINFER_GRPC_PORT": str(port),
            }
        ).process
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert f"cannot listen on gRPC port {port}" in stderr


@contextlib.contextmanager
def grpc_blocker() -> Iterator[int]:
    """Holds a port with a listening socket, as another process would."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


# --- priorities and queue timeouts -----------------------------------------------------------


def test_request_past_its_queue_timeout_is_unavailable_at_once(
    serve, make_settings, unused_port, variant_dir, images: np.ndarray
) -> None:
    settings = make_settings(
        variant_dir("slow") / "model.onnx",
        max_batch_size=16,
        priority_levels=2,
        default_priority=2,
        grpc_port=unused_port(),
    )
    with serve(settings) as live, tc.InferenceServerClient(live.grpc_target) as client:
        # A full batch: ~1 s of the slow model.
        holder = threading.Thread(target=client.infer, args=("demo", [image_input(images[:16])]))
        holder.start()
        deadline = time.monotonic() + 30
        while not (
            live.metric("kinfer_inflight_requests") == 1 and live.metric("kinfer_queue_depth") == 0
        ):
            assert time.monotonic() < deadline, "the request never reached the worker"
            time.sleep(0.005)
        time.sleep(0.05)
        with pytest.raises(InferenceServerException) as info:
            client.infer("demo", [image_input(images[:1])], priority=1, timeout=20_000)
        answered_while_busy = holder.is_alive()
        holder.join()
        assert status_of(info.value) == "StatusCode.UNAVAILABLE"
        assert "queue timeout" in info.value.message()
        assert answered_while_busy  # at its timeout, not once the worker freed up
        assert live.metric("kinfer_requests_total", protocol="grpc", source="live", code="503") == 1
        assert live.metric("kinfer_rejected_requests_total", reason="queue_timeout", priority="1")
        # With time to spare, the same parameters are served.
        result = client.infer("demo", [image_input(images[:1])], priority=1, timeout=30_000_000)
        assert result.as_numpy("logits").shape == (1, 10)


def test_message_over_the_body_limit_is_resource_exhausted(
    serve, make_settings, unused_port, demo_dir: Path, images: np.ndarray
) -> None:
    settings = make_settings(
        demo_dir / "model.onnx", max_body_bytes=20_000, grpc_port=unused_port()
    )
    with serve(settings) as live, tc.InferenceServerClient(live.grpc_target) as client:
        assert client.infer("demo", [image_input(images[:1])]).as_numpy("logits").shape == (1, 10)
        with pytest.raises(InferenceServerException) as info:
            client.infer("demo", [image_input(images[:2])])  # 24 KiB of pixels
        assert status_of(info.value) == "StatusCode.RESOURCE_EXHAUSTED"


def test_call_cancelled_by_its_client_deadline_counts_as_499(
    serve, make_settings, unused_port, variant_dir, images: np.ndarray
) -> None:
    settings = make_settings(
        variant_dir("slow") / "model.onnx", max_batch_size=16, grpc_port=unused_port()
    )
    with serve(settings) as live, tc.InferenceServerClient(live.grpc_target) as client:
        with pytest.raises(InferenceServerException) as info:
            client.infer("demo", [image_input(images[:16])], client_timeout=0.05)
        assert status_of(info.value) == "StatusCode.DEADLINE_EXCEEDED"
        deadline = time.monotonic() + 30
        while live.metric("kinfer_requests_total", protocol="grpc", source="live", code="499") != 1:
            assert time.monotonic() < deadline, "the cancelled call was not counted as 499"
            time.sleep(0.01)
        assert not live.metric("kinfer_requests_total", protocol="grpc", source="live", code="500")

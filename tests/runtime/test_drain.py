"""The real process: keep-alive clients are told to reconnect while it drains, and long-lived
gRPC channels are rebalanced by a connection age, without a failed call."""

import http.client
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import grpc
import httpx
import numpy as np
import tritonclient.grpc as tc


def _ready_status(url: str) -> int:
    return httpx.get(f"{url}/v2/health/ready", timeout=5).status_code


def _wait_draining(url: str) -> None:
    deadline = time.monotonic() + 20
    while _ready_status(url) != 503:  # a fresh connection each time
        assert time.monotonic() < deadline, "SIGTERM never turned the server not-ready"
        time.sleep(0.02)


def test_after_sigterm_keep_alive_responses_say_connection_close_and_none_fails(
    demo_dir, server_process, oip, images: np.ndarray
) -> None:
    server = server_process(
        {
            "KINFER_MODEL_URI": str(demo_dir / "model.onnx"),
            "KINFER_MODEL_NAME": "demo",
            "KINFER_DRAIN_DELAY_S": "3.0",
        }
    )
    server.wait_ready()
    address = urlsplit(server.url)
    body, headers = oip.image_body(images[:1])
    busy = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    idle = socket.create_connection((address.hostname, address.port))  # opened, never used

    def post(connection: http.client.HTTPConnection) -> http.client.HTTPResponse:
        connection.request("POST", "/v2/models/demo/infer", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response

    before = post(busy)
    assert (before.status, before.getheader("connection")) == (200, None)  # keep-alive
    sock_before = busy.sock
    assert sock_before is not None

    server.terminate()
    _wait_draining(server.url)
    during = post(busy)  # the same connection, after SIGTERM
    assert (during.status, during.getheader("connection")) == (200, "close")
    assert busy.sock is None  # http.client honoured it: the next request reconnects
    again = post(busy)  # a new connection, still inside the drain window
    assert (again.status, again.getheader("connection")) == (200, "close")

    assert server.process.wait(timeout=30) == 0
    idle.settimeout(10)
    assert idle.recv(1) == b""  # the idle connection was closed at the end, not reset
    idle.close()
    busy.close()


def test_a_keep_alive_client_loses_no_request_across_sigterm(
    demo_dir, server_process, oip, images: np.ndarray
) -> None:
    server = server_process(
        {
            "KINFER_MODEL_URI": str(demo_dir / "model.onnx"),
            "KINFER_MODEL_NAME": "demo",
            "KINFER_DRAIN_DELAY_S": "2.0",
        }
    )
    server.wait_ready()
    body, headers = oip.image_body(images[:1])
    statuses: list[int] = []
    closes = 0
    stop = threading.Event()

    def loop() -> None:
        # One persistent connection, no retries: what a keep-alive client does.
        nonlocal closes
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                response = client.post("/v2/models/demo/infer", content=body, headers=headers)
                statuses.append(response.status_code)
                if response.headers.get("connection") == "close":
                    closes += 1
                    return  # as a client behind a Service would go to another pod now

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(loop)
        deadline = time.monotonic() + 20
        while len(statuses) < 20:
            assert time.monotonic() < deadline and not running.done()
            time.sleep(0.01)
        server.terminate()
        running.result(timeout=30)  # raises if a request failed
        stop.set()

    assert closes == 1
    assert set(statuses) == {200}
    assert server.process.wait(timeout=30) == 0


def _infer(client: tc.InferenceServerClient, images: np.ndarray) -> np.ndarray:
    tensor = tc.InferInput("input", [2, 3, 32, 32], "FP32")
    tensor.set_data_from_numpy(images[:2])
    result: np.ndarray = client.infer("demo", [tensor]).as_numpy("logits")
    return result


def test_a_long_lived_grpc_channel_finishes_its_call_in_flight_across_sigterm(
    variant_dir, server_process, unused_port, images: np.ndarray
) -> None:
    grpc_port = unused_port()
    server = server_process(
        {
            "KINFER_MODEL_URI": str(variant_dir("slow") / "model.onnx"),
            "KINFER_MODEL_NAME": "demo",
            "KINFER_MAX_BATCH_SIZE": "2",
            "KINFER_DRAIN_DELAY_S": "1.0",
            "KINFER_GRPC_PORT": str(grpc_port),
        }
    )
    server.wait_ready()
    target = f"127.0.0.1:{grpc_port}"
    with tc.InferenceServerClient(target) as client, ThreadPoolExecutor(4) as pool:
        assert _infer(client, images).shape == (2, 10)  # the channel is connected
        in_flight = [pool.submit(_infer, client, images) for _ in range(4)]  # one channel
        time.sleep(0.3)
        server.terminate()
        _wait_draining(server.url)
        during = _infer(client, images)  # the drain window: the same channel still serves
        results = [f.result(timeout=60) for f in in_flight]  # GOAWAY lets them finish

    assert during.shape == (2, 10)
    assert all(r.shape == (2, 10) for r in results)
    assert server.process.wait(timeout=30) == 0


def test_a_connection_age_makes_one_channel_reconnect_without_a_failed_call(
    demo_dir, server_process, unused_port, images: np.ndarray
) -> None:
    grpc_port = unused_port()
    server = server_process(
        {
            "KINFER_MODEL_URI": str(demo_dir / "model.onnx"),
            "KINFER_MODEL_NAME": "demo",
            "KINFER_GRPC_PORT": str(grpc_port),
            "KINFER_GRPC_MAX_CONNECTION_AGE_S": "0.5",
            "KINFER_GRPC_MAX_CONNECTION_AGE_GRACE_S": "5",
        }
    )
    server.wait_ready()
    states: list[grpc.ChannelConnectivity] = []
    with tc.InferenceServerClient(f"127.0.0.1:{grpc_port}") as client:
        # tritonclient does not expose its channel; watching it is how a test sees reconnects.
        channel: grpc.Channel = client._channel
        channel.subscribe(states.append)
        calls = failures = 0
        deadline = time.monotonic() + 30
        while states.count(grpc.ChannelConnectivity.READY) < 4:
            assert time.monotonic() < deadline, f"the channel never reconnected: {states}"
            try:
                _infer(client, images)
            except tc.InferenceServerException:
                failures += 1
            calls += 1
        channel.unsubscribe(states.append)

    assert calls > 4
    assert failures == 0
    server.terminate()
    assert server.process.wait(timeout=30) == 0


def test_without_a_connection_age_the_channel_keeps_its_connection(
    demo_dir, server_process, unused_port, images: np.ndarray
) -> None:
    grpc_port = unused_port()
    server = server_process(
        {
            "KINFER_MODEL_URI": str(demo_dir / "model.onnx"),
            "KINFER_MODEL_NAME": "demo",
            "KINFER_GRPC_PORT": str(grpc_port),
        }
    )
    server.wait_ready()
    states: list[grpc.ChannelConnectivity] = []
    with tc.InferenceServerClient(f"127.0.0.1:{grpc_port}") as client:
        channel: grpc.Channel = client._channel
        channel.subscribe(states.append)
        started = time.monotonic()
        while time.monotonic() - started < 2:  # four of the ages above
            _infer(client, images)
        channel.unsubscribe(states.append)

    assert states.count(grpc.ChannelConnectivity.READY) == 1
    server.terminate()
    assert server.process.wait(timeout=30) == 0

"""The real process: SIGTERM drains every queued and in-flight request, then exits 0."""

import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import tritonclient.grpc as tc


def test_sigterm_turns_unready_finishes_every_request_then_exits_0(
    variant_dir, server_process, oip, images: np.ndarray
) -> None:
    server = server_process(
        {
            "KINFER_MODEL_URI": str(variant_dir("slow") / "model.onnx"),
            "KINFER_MODEL_NAME": "demo",
            "KINFER_MAX_BATCH_SIZE": "2",
            "KINFER_DRAIN_DELAY_S": "3.0",  # room for the late request on a loaded machine
        },
        metrics=True,
    )
    server.wait_ready()
    assert server.metrics_url is not None
    assert "kinfer_requests_total" in httpx.get(f"{server.metrics_url}/metrics").text

    body, headers = oip.image_body(images[:2])
    url = f"{server.url}/v2/models/demo/infer"

    def post(_: int) -> httpx.Response:
        return httpx.post(url, content=body, headers=headers, timeout=60)

    def gauge(client: httpx.Client, name: str) -> float:
        page = client.get(f"{server.metrics_url}/metrics").text
        return float(re.search(rf"^{name}{{.*}} (\S+)$", page, re.MULTILINE)[1])  # type: ignore[index]

    with ThreadPoolExecutor(12) as pool, httpx.Client() as probe:
        in_flight = [pool.submit(post, i) for i in range(12)]
        # SIGTERM only once the server holds a backlog: several requests queued or executing.
        deadline = time.monotonic() + 20
        while gauge(probe, "kinfer_inflight_requests") < 6:
            assert time.monotonic() < deadline, "requests never piled up in the server"
        assert gauge(probe, "kinfer_queue_depth") >= 1

        server.terminate()
        time.sleep(0.2)
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 503  # at once
        late = post(99)  # during the drain delay, new requests are still served
        responses = [f.result() for f in in_flight] + [late]

    assert [r.status_code for r in responses] == [200] * 13
    assert all(oip.outputs(r)["logits"].shape == (2, 10) for r in responses)
    assert server.process.wait(timeout=30) == 0


def test_sigterm_lets_grpc_calls_in_flight_finish_then_exits_0(
    variant_dir, server_process, unused_port, images: np.ndarray
) -> None:
    grpc_port = unused_port()
    server = server_process(
        {
            "KINFER_MODEL_URI": str(variant_dir("slow") / "model.onnx"),
            "KINFER_MODEL_NAME": "demo",
            "KINFER_MAX_BATCH_SIZE": "2",
            "KINFER_DRAIN_DELAY_S": "0.5",
            "KINFER_GRPC_PORT": str(grpc_port),
        }
    )
    server.wait_ready()
    target = f"127.0.0.1:{grpc_port}"

    def infer(_: int) -> np.ndarray:
        with tc.InferenceServerClient(target) as client:
            tensor = tc.InferInput("input", [2, 3, 32, 32], "FP32")
            tensor.set_data_from_numpy(images[:2])
            return client.infer("demo", [tensor]).as_numpy("logits")

    with ThreadPoolExecutor(8) as pool, tc.InferenceServerClient(target) as probe:
        assert probe.is_server_ready()
        in_flight = [pool.submit(infer, i) for i in range(8)]
        time.sleep(0.5)  # queued and executing in the server (~4 batches of the slow model)
        server.terminate()
        time.sleep(0.2)
        assert not probe.is_server_ready()  # at once, and gRPC still answers
        results = [f.result(timeout=60) for f in in_flight]

    assert all(r.shape == (2, 10) for r in results)
    assert server.process.wait(timeout=30) == 0


def test_the_process_serves_the_classified_port_where_only_the_markers_count(
    demo_dir, server_process, oip, images: np.ndarray
) -> None:
    server = server_process(
        {"KINFER_MODEL_URI": str(demo_dir / "model.onnx"), "KINFER_MODEL_NAME": "demo"}
    )
    server.wait_ready()
    body, headers = oip.image_body(images[:1])
    marked = headers | {"x-kinfer-shadow": "stable"}
    for url in (server.url, server.classified_url, server.classified_url):
        response = httpx.post(f"{url}/v2/models/demo/infer", content=body, headers=marked)
        assert response.status_code == 200
    page = httpx.get(f"{server.url}/metrics").text

    def count(source: str) -> float:
        pattern = rf'^kinfer_requests_total{{[^}}]*source="{source}"[^}}]*}} (\S+)$'
        return sum(float(v) for v in re.findall(pattern, page, re.MULTILINE))

    assert (count("live"), count("shadow")) == (1, 2)
    server.terminate()
    assert server.process.wait(timeout=30) == 0

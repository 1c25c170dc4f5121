import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def test_server_metadata_advertises_binary_tensor_data(client: httpx.Client) -> None:
    response = client.get("/v2")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "kinfer"
    assert body["version"]
    assert "binary_tensor_data" in body["extensions"]


def test_live_and_ready_once_the_model_is_loaded(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True}


def test_server_is_live_but_not_ready_while_the_model_loads(
    serve: Callable, make_settings: Callable, model_http, demo_dir: Path, oip, images
) -> None:
    model_http.files["/m/model.onnx"] = (demo_dir / "model.onnx").read_bytes()
    model_http.hold = threading.Event()  # the download stalls half-way
    settings = make_settings(model_http.url("/m/model.onnx"), model_cache_dir=demo_dir / "c1")
    with serve(settings, wait_ready=False) as live, httpx.Client(base_url=live.url) as c:
        assert model_http.half_sent.wait(10)
        assert c.get("/v2/health/live").status_code == 200
        not_ready = c.get("/v2/health/ready")
        assert not_ready.status_code == 503
        assert "loading" in not_ready.json()["error"]
        body, headers = oip.image_body(images[:1])
        refused = c.post("/v2/models/demo/infer", content=body, headers=headers)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert c.get("/v2/models/demo/ready").status_code == 503
        assert c.get("/v2/models/demo").status_code == 503

        model_http.hold.set()
        deadline = time.monotonic() + 30
        while c.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "never became ready after the download finished"
            time.sleep(0.02)
        assert c.post("/v2/models/demo/infer", content=body, headers=headers).status_code == 200


def test_metrics_are_served_on_the_main_port(client: httpx.Client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "kinfer_requests_total" in response.text

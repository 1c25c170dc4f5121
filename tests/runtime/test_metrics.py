"""Metric names and labels are public API: canary analysis and the HPA query them by name."""

import httpx
from kinfer_runtime import metrics
from prometheus_client.parser import text_string_to_metric_families

EXPECTED = {
    "kinfer_requests_total": "counter",
    "kinfer_request_duration_seconds": "histogram",
    "kinfer_queue_wait_seconds": "histogram",
    "kinfer_batch_size": "histogram",
    "kinfer_inflight_requests": "gauge",
    "kinfer_queue_depth": "gauge",
    "kinfer_model_load_seconds": "gauge",
    "kinfer_shadow_queue_depth": "gauge",
    "kinfer_model_download_seconds": "gauge",
    "kinfer_model_download_bytes": "gauge",
}


def test_names_are_exactly_the_published_ones() -> None:
    published = {getattr(metrics, n) for n in metrics.__all__ if n.isupper() and n != "LABELS"}
    assert published == {
        *EXPECTED,
        "kinfer_rejected_requests_total",  # no series until a request is turned away
        "kinfer_gpu_memory_used_bytes",
        "kinfer_gpu_utilization_ratio",
        "kinfer_shadow_requests_total",  # no series until a request is mirrored
        "kinfer_pinned_requests_total",  # only requests a gateway pinned by header
        "kinfer_pinned_request_duration_seconds",
        "kinfer_warmup_request_duration_seconds",  # only with a warm-up window
    }
    assert metrics.LABELS == ("model", "version", "revision")


def test_scrape_has_every_series_with_model_version_revision_labels(
    client: httpx.Client, oip, images
) -> None:
    body, headers = oip.image_body(images[:2])
    assert client.post("/v2/models/demo/infer", content=body, headers=headers).status_code == 200
    assert client.post("/v2/models/demo/infer", json={}).status_code == 400
    assert client.post("/v2/models/nope/infer", json={}).status_code == 404
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    for name, kind in EXPECTED.items():
        family = families[name.removesuffix("_total")]
        assert family.type == kind, name
        for sample in family.samples:
            assert sample.labels["model"] == "demo"
            assert sample.labels["version"] == "1"
            assert sample.labels["revision"] == "r1"
    codes = {
        s.labels["code"]: s.value
        for s in families["kinfer_requests"].samples
        if s.name == "kinfer_requests_total"
    }
    assert codes["200"] >= 1 and codes["400"] >= 1 and codes["404"] >= 1
    assert families["kinfer_model_load_seconds"].samples[0].value > 0
    # Served from a path: nothing was downloaded.
    assert families["kinfer_model_download_bytes"].samples[0].value == 0
    batch_bounds = [
        s.labels["le"] for s in families["kinfer_batch_size"].samples if s.name.endswith("_bucket")
    ]
    assert batch_bounds[:8] == ["1.0", "2.0", "4.0", "8.0", "16.0", "32.0", "64.0", "128.0"]
    duration_bounds = [
        float(s.labels["le"])
        for s in families["kinfer_request_duration_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"
    ]
    assert duration_bounds[0] == 0.001 and duration_bounds[-1] == 30.0


def test_gpu_gauges_are_absent_on_cpu(client: httpx.Client) -> None:
    assert "kinfer_gpu_" not in client.get("/metrics").text


def test_inflight_and_queue_depth_return_to_zero_when_idle(onnx_server) -> None:
    assert onnx_server.metric("kinfer_inflight_requests") == 0
    assert onnx_server.metric("kinfer_queue_depth") == 0


def test_requests_carry_protocol_and_queue_waits_priority(
    client: httpx.Client, oip, images
) -> None:
    body, headers = oip.image_body(images[:1])
    assert client.post("/v2/models/demo/infer", content=body, headers=headers).status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    requests = [s for s in families["kinfer_requests"].samples if s.name == "kinfer_requests_total"]
    assert {s.labels["protocol"] for s in requests} == {"rest"}
    assert {s.labels["source"] for s in requests} == {"live"}
    durations = families["kinfer_request_duration_seconds"].samples
    assert {s.labels["protocol"] for s in durations} == {"rest"}
    assert {s.labels["source"] for s in durations} == {"live"}
    waits = families["kinfer_queue_wait_seconds"].samples
    assert {s.labels["priority"] for s in waits} == {"1"}


def test_download_bytes_and_seconds_are_exported(
    model_http, demo_dir, make_settings, serve, tmp_path
) -> None:
    payload = (demo_dir / "model.onnx").read_bytes()
    model_http.files["/models/model.onnx"] = payload
    settings = make_settings(model_http.url("/models/model.onnx"), model_cache_dir=tmp_path)
    with serve(settings) as live:
        assert live.metric("kinfer_model_download_bytes") == len(payload)
        assert live.metric("kinfer_model_download_seconds") > 0


def test_pinned_requests_are_counted_apart_from_the_analysed_ones(
    client: httpx.Client, onnx_server, oip, images
) -> None:
    body, headers = oip.image_body(images[:1])

    def counts() -> tuple[float, float]:
        text = client.get("/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(text)}

        def total(family: str) -> float:
            samples = families[family].samples if family in families else []
            return sum(s.value for s in samples if s.name == f"{family}_total")

        return total("kinfer_requests"), total("kinfer_pinned_requests")

    before = counts()
    pinned = {**headers, "x-kinfer-pinned": "true"}
    # The pinned route rule sends to the classified port, the only one where the marker counts.
    infer = f"{onnx_server.classified_url}/v2/models/demo/infer"
    for _ in range(3):
        assert httpx.post(infer, content=body, headers=pinned).status_code == 200
    assert client.post("/v2/models/demo/infer", content=body, headers=headers).status_code == 200
    after = counts()
    assert (after[0] - before[0], after[1] - before[1]) == (1, 3)


def _count(registry: object, name: str) -> float:
    labels = {"model": "m", "version": "1", "revision": "r", "protocol": "rest", "source": "live"}
    return registry.get_sample_value(f"{name}_count", labels) or 0.0  # type: ignore[attr-defined]


def test_latencies_of_the_warmup_window_go_to_their_own_histogram_then_back() -> None:
    recorded = metrics.RuntimeMetrics("m", "1", "r")
    recorded.start_warmup_window(3600)
    assert recorded.warming_up
    recorded.request_done(200, 2.0)
    recorded.request_done(500, 2.0)
    registry = recorded.registry
    assert _count(registry, metrics.WARMUP_REQUEST_DURATION_SECONDS) == 2
    assert _count(registry, metrics.REQUEST_DURATION_SECONDS) == 0  # what analysis reads
    labels = {"model": "m", "version": "1", "revision": "r", "protocol": "rest", "source": "live"}
    # Errors still count for the error-rate check.
    assert registry.get_sample_value("kinfer_requests_total", labels | {"code": "500"}) == 1

    recorded.start_warmup_window(0)  # the window is over (or there was none)
    assert not recorded.warming_up
    recorded.request_done(200, 0.01)
    assert _count(registry, metrics.REQUEST_DURATION_SECONDS) == 1
    assert _count(registry, metrics.WARMUP_REQUEST_DURATION_SECONDS) == 2


def test_a_served_model_starts_its_warmup_window_at_ready(
    serve, make_settings, demo_dir, oip, images
) -> None:
    settings = make_settings(demo_dir / "model.onnx", warmup_window_s=3600)
    with serve(settings) as server:
        body, headers = oip.image_body(images[:1])
        response = httpx.post(f"{server.url}/v2/models/demo/infer", content=body, headers=headers)
        assert response.status_code == 200
        base = {"model": "demo", "version": "1", "revision": "", "protocol": "rest"}
        registry = server.service.metrics.registry
        warm = registry.get_sample_value(
            "kinfer_warmup_request_duration_seconds_count", base | {"source": "live"}
        )
        analysed = registry.get_sample_value(
            "kinfer_request_duration_seconds_count", base | {"source": "live"}
        )
    assert (warm, analysed) == (1, None)

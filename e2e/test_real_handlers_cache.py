"""The shipped detection handler and the response cache, each in a real runtime pod.

- Detection: a tiny ONNX model built here (no download) answers a constant raw detection
  tensor [boxes, 4 + classes] for any image, two of its boxes overlapping. Bundled with a
  `kinfer.yaml` that names `kinfer_runtime.handlers.detection:Detector` by dotted path and a
  labels file, served from a PersistentVolume on the node; a PNG POSTed to
  /v2/models/<name>/predict must give the JSON the same handler gives in process (NMS
  removed the overlapping box, boxes scaled to the PNG's pixels).
- Response cache: the demo model with `spec.model.deterministic: true` and
  `spec.runtime.responseCache`. The same binary request twice through the model's Service:
  the second answer says `x-kinfer-cache: hit`, its outputs are byte for byte the first's,
  and the pod's batch count (its metrics port, read by pod IP) did not grow; a different
  input misses and runs one batch.
"""

from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path
from typing import Any, Final

import httpx
import numpy as np
import pytest
from harness import kubectl, kubectl_apply
from realnode import (
    HEADER_LENGTH,
    _binary_request,
    bind_node_volume,
    model_manifest,
    reference_logits,
    serving_url,
)
from test_core import pods_of, wait_ready
from test_real_bundles import _readable
from test_real_sources import node_volume

__all__ = ["node_volume"]  # the fixture, used here too

pytestmark = pytest.mark.real_node

# --- detection -----------------------------------------------------------------------------

SIZE: Final = 64  # the model's input: [batch, 3, 64, 64]
LABELS: Final = ("cat", "dog")
# One raw row per box, in the model input's pixels: cx, cy, w, h, then a score per class.
RAW: Final = np.array(
    [
        [32, 32, 20, 20, 0.9, 0.1],  # a cat
        [33, 32, 20, 20, 0.8, 0.1],  # the same cat (IoU 0.9): NMS removes it
        [20, 44, 12, 12, 0.1, 0.7],  # a dog
        [50, 10, 8, 8, 0.2, 0.1],  # below the score threshold
    ],
    dtype=np.float32,
)
PNG_SIZE: Final = (128, 96)  # width, height: boxes scale by 2 and 1.5
MANIFEST: Final = """\
model: model.onnx
format: onnx
labels: labels.txt
handler: kinfer_runtime.handlers.detection:Detector
handlerOptions:
  size: [64, 64]
  boxFormat: cxcywh
  scoreThreshold: 0.3
  iouThreshold: 0.5
"""


def _detector_model(path: Path) -> None:
    """An ONNX model whose output is RAW for every image of the batch: images -> Flatten ->
    ReduceSum -> Reshape [N, 1, 1] -> times 0 -> plus RAW, so the batch dimension follows the
    input's and dynamic batching works."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
        numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(RAW[None], "boxes"),
    ]
    nodes = [
        helper.make_node("Flatten", ["images"], ["flat"], axis=1),
        helper.make_node("ReduceSum", ["flat", "axes"], ["total"], keepdims=1),
        helper.make_node("Reshape", ["total", "shape"], ["total3"]),
        helper.make_node("Mul", ["total3", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "boxes"], ["raw"]),
    ]
    graph = helper.make_graph(
        nodes,
        "constant-detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("raw", TensorProto.FLOAT, ["batch", len(RAW), 6])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", PNG_SIZE, (40, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def _in_process(bundle: Path, png: bytes, scratch: Path) -> dict[str, Any]:
    """What the bundle's handler and ONNX Runtime answer for `png` here, as JSON would carry
    it: what serving must reproduce."""
    from kinfer_runtime.backends import BackendOptions, open_backend
    from kinfer_runtime.bundle import open_bundle
    from kinfer_runtime.handlers import HandlerContext, HandlerRequest
    from kinfer_runtime.handlers._loader import load_handler

    opened = open_bundle(bundle, scratch)
    backend = open_backend(opened.model_path, opened.format, BackendOptions(device="cpu"))
    backend.load()
    assert opened.manifest is not None and opened.manifest.handler is not None
    context = HandlerContext(
        opened.root, backend.signature, opened.labels, opened.manifest.handler_options
    )
    handler = load_handler(opened.manifest.handler, context)
    request = HandlerRequest({}, body=png, content_type="image/png")
    result = handler.postprocess(backend.infer(handler.preprocess(request)), request)
    return dict(json.loads(json.dumps(result)))


@pytest.fixture(scope="module")
def detector_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = tmp_path_factory.mktemp("detector") / "detector"
    bundle.mkdir()
    _detector_model(bundle / "model.onnx")
    (bundle / "kinfer.yaml").write_text(MANIFEST)
    (bundle / "labels.txt").write_text("".join(f"{label}\n" for label in LABELS))
    return bundle


def test_detection_handler_in_a_real_pod_matches_in_process(
    namespace: str, node_volume: Path, detector_bundle: Path, tmp_path: Path
) -> None:
    png = _png()
    expected = _in_process(detector_bundle, png, tmp_path)
    # The expectation itself: NMS kept one cat of two, the dog stayed, scaled to the PNG.
    assert [(d["label"], d["class"]) for d in expected["detections"]] == [("cat", 0), ("dog", 1)]
    assert expected["detections"][0]["box"] == [44.0, 33.0, 84.0, 63.0]
    assert expected["detections"][1]["box"] == [28.0, 57.0, 52.0, 75.0]

    (node_volume / "detector").mkdir()
    for path in detector_bundle.iterdir():
        (node_volume / "detector" / path.name).write_bytes(path.read_bytes())
    _readable(node_volume)
    volume = bind_node_volume(namespace, node_volume, "models", "ReadOnlyMany")
    try:
        kubectl_apply(model_manifest("detector", uri="pvc://models/detector"), namespace)
        wait_ready(namespace, "detector", timeout=180)
        url = f"{serving_url(namespace, 'detector')}/v2/models/detector/predict"
        with httpx.Client(timeout=30) as client:
            response = client.post(url, content=png, headers={"Content-Type": "image/png"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() == expected
    finally:
        kubectl("delete", "pv", volume, "--wait=false", check=False)


# --- response cache ------------------------------------------------------------------------

CACHE_HEADER: Final = "x-kinfer-cache"
METRICS_PORT: Final = 9090  # runtime_contract.METRICS_PORT


def _infer_binary(base_url: str, batch: np.ndarray) -> tuple[str | None, bytes, np.ndarray]:
    """One binary-extension request: (x-kinfer-cache header, raw output bytes, logits)."""
    body, headers = _binary_request(batch)
    request = urllib.request.Request(
        f"{base_url}/v2/models/demo/infer", data=body, headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        payload = response.read()
        length = int(response.headers[HEADER_LENGTH])
        cache = response.headers.get(CACHE_HEADER)
    out = json.loads(payload[:length])["outputs"][0]
    raw = payload[length:]
    return cache, raw, np.frombuffer(raw, dtype=np.float32).reshape(out["shape"])


def _metric(ip: str, name: str) -> float:
    """A series' value on one runtime pod's metrics port (summed over its label sets); fails
    when the pod does not expose it, so a failed scrape never passes for 'no change'."""
    with urllib.request.urlopen(f"http://{ip}:{METRICS_PORT}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((f"{name}{{", f"{name} "))
    ]
    assert values, f"{name} not exposed by the pod at {ip}"
    return sum(values)


def test_response_cache_answers_a_repeat_without_a_batch(namespace: str) -> None:
    manifest = model_manifest("demo", runtime={"responseCache": {"maxBytes": 4 << 20}})
    manifest["spec"]["model"]["deterministic"] = True
    kubectl_apply(manifest, namespace)
    wait_ready(namespace, "demo", timeout=180)
    (pod,) = [p for p in pods_of(namespace, "demo") if p["status"].get("phase") == "Running"]
    ip = pod["status"]["podIP"]
    url = serving_url(namespace, "demo")

    rng = np.random.default_rng(25)
    batch = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    cache, first_raw, first = _infer_binary(url, batch)
    assert cache != "hit"
    np.testing.assert_allclose(first, reference_logits(batch), atol=1e-3)
    batches = _metric(ip, "kinfer_batch_size_count")
    hits = _metric(ip, "kinfer_response_cache_hits_total")
    misses = _metric(ip, "kinfer_response_cache_misses_total")
    assert batches >= 1 and misses >= 1

    cache, second_raw, _ = _infer_binary(url, batch)
    assert cache == "hit"
    assert second_raw == first_raw
    assert _metric(ip, "kinfer_response_cache_hits_total") == hits + 1
    assert _metric(ip, "kinfer_batch_size_count") == batches  # the hit never ran the model

    other = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    cache, _, third = _infer_binary(url, other)
    assert cache != "hit"
    np.testing.assert_allclose(third, reference_logits(other), atol=1e-3)
    assert _metric(ip, "kinfer_response_cache_misses_total") == misses + 1
    assert _metric(ip, "kinfer_batch_size_count") == batches + 1
    assert _metric(ip, "kinfer_response_cache_bytes") > 0

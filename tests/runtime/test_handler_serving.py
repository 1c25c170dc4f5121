"""A bundle with a handler, served by the real app: images in as OIP BYTES (REST JSON, binary
extension, gRPC) or a plain POST to .../predict; labels out; handler errors mapped to 400/500;
the model call still batched; a handler that fails to import fails the load naming its line."""

import io
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tc
from PIL import Image
from tritonclient.utils import InferenceServerException

HANDLER = """\
from kinfer_runtime.handlers.image_classification import ImageClassifier


class Classifier(ImageClassifier):
    def preprocess(self, request):
        if request.body == b"boom":
            raise RuntimeError("a secret detail")
        return super().preprocess(request)
"""

LABELS = [f"class-{i}" for i in range(10)]


def _bundle(root: Path, demo_dir: Path, handler: str = HANDLER, spec: str = "") -> Path:
    root.mkdir()
    shutil.copy(demo_dir / "model.onnx", root / "model.onnx")
    (root / "labels.txt").write_text("\n".join(LABELS))
    (root / "handler.py").write_text(handler)
    (root / "kinfer.yaml").write_text(
        "model: model.onnx\nlabels: labels.txt\n"
        f"handler: {spec or 'handler.py:Classifier'}\n"
        "handlerOptions: {topK: 3, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}\n"
    )
    return root


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Path:
    return _bundle(tmp_path_factory.mktemp("b") / "bundle", demo_dir)


@pytest.fixture(scope="module")
def live(serve, make_settings, unused_port, bundle: Path) -> Iterator[Any]:
    settings = make_settings(
        bundle, grpc_port=unused_port(), max_queue_delay_us=50_000, handler_threads=4
    )
    with serve(settings) as server:
        yield server


@pytest.fixture(scope="module")
def expected(live) -> dict[int, list[str]]:
    """Top-3 labels of a few images, by the handler and backend in process."""
    from kinfer_runtime.handlers import HandlerRequest

    handler = live.service.model.handler.handler
    backend = live.service.model.backend
    result = {}
    for seed in range(4):
        request = HandlerRequest({}, body=png(seed))
        out = handler.postprocess(backend.infer(handler.preprocess(request)), request)
        result[seed] = list(out["label"][0])
    return result


def test_predict_takes_a_png_and_answers_labels_as_an_oip_response(live, oip, expected) -> None:
    for seed in range(4):
        response = httpx.post(
            f"{live.url}/v2/models/demo/predict",
            content=png(seed),
            headers={"Content-Type": "image/png"},
        )
        outputs = oip.outputs(response)
        assert [v.decode() for v in outputs["label"][0]] == expected[seed]
        assert outputs["score"].shape == (1, 3) and outputs["index"].dtype == np.int64
        assert np.all(np.diff(outputs["score"][0]) <= 0)  # best first


def test_bytes_inputs_over_rest_json_and_binary(live, oip, expected) -> None:
    blobs = [png(0), png(1)]
    # JSON has no bytes: BYTES elements are strings, so only text survives JSON; images go
    # binary. A JSON request still reaches the handler (here: undecodable -> 400).
    doc = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["nope"]}]}
    response = httpx.post(f"{live.url}/v2/models/demo/infer", json=doc)
    assert response.status_code == 400 and "cannot decode the image" in response.json()["error"]
    body, headers = oip.binary_body({"image": ("BYTES", np.array(blobs, dtype=object))})
    outputs = oip.outputs(
        httpx.post(f"{live.url}/v2/models/demo/infer", content=body, headers=headers)
    )
    assert outputs["label"].shape == (2, 3)
    assert [v.decode() for v in outputs["label"][1]] == expected[1]
    body, headers = oip.binary_body(
        {"image": ("BYTES", np.array(blobs, dtype=object))},
        binary_output=False,
        outputs=[{"name": "label"}],
    )
    response = httpx.post(f"{live.url}/v2/models/demo/infer", content=body, headers=headers)
    assert [o["name"] for o in response.json()["outputs"]] == ["label"]
    assert response.json()["outputs"][0]["data"][:3] == expected[0]


def test_bytes_inputs_over_grpc(live, expected) -> None:
    with tc.InferenceServerClient(live.grpc_target) as client:
        tensor = tc.InferInput("image", [2], "BYTES")
        tensor.set_data_from_numpy(np.array([png(2), png(3)], dtype=object))
        result = client.infer("demo", [tensor])
        labels = result.as_numpy("label")
        assert [v.decode() for v in labels[1]] == expected[3]
        with pytest.raises(InferenceServerException) as caught:
            bad = tc.InferInput("image", [1], "BYTES")
            bad.set_data_from_numpy(np.array([b"not an image"], dtype=object))
            client.infer("demo", [bad])
        assert "INVALID_ARGUMENT" in str(caught.value.status())
        assert "cannot decode the image" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"\x89PNG broken", "image/png", 400, "cannot decode the image"),
        (b"boom", "image/png", 500, "handler preprocess raised RuntimeError"),
        (b"{}", "application/json", 400, "takes an image (Content-Type image/*)"),
    ],
)
def test_handler_errors_map_to_400_and_500(
    live, body: bytes, content_type: str, status: int, message: str
) -> None:
    response = httpx.post(
        f"{live.url}/v2/models/demo/predict", content=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == status
    assert message in response.json()["error"]
    assert "secret" not in response.text  # the message of an unexpected error stays in the log


def test_the_model_call_is_still_batched_behind_the_handler(live) -> None:
    before_count = live.metric("kinfer_batch_size_count") or 0
    before_rows = live.metric("kinfer_batch_size_sum") or 0
    images = [png(i) for i in range(16)]

    def post(i: int) -> int:
        url = f"{live.url}/v2/models/demo/predict"
        return httpx.post(url, content=images[i], headers={"Content-Type": "image/png"}).status_code

    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(post, range(16))) == [200] * 16
    batches = live.metric("kinfer_batch_size_count") - before_count
    rows = live.metric("kinfer_batch_size_sum") - before_rows
    assert rows == 16
    assert batches < 16  # some model calls ran several requests' rows together
    # The histogram's buckets show the batches of more than one row.
    assert (live.metric("kinfer_batch_size_bucket", le="1.0") or 0) < batches + before_count


def test_predict_on_a_model_without_handler_is_a_400(onnx_server) -> None:
    response = httpx.post(
        f"{onnx_server.url}/v2/models/demo/predict",
        content=png(0),
        headers={"Content-Type": "image/png"},
    )
    assert response.status_code == 400 and "has no handler" in response.json()["error"]


@pytest.mark.parametrize(
    ("handler", "spec", "where"),
    [
        ("import os\n\nx = = 1\n", "", "handler.py:3: SyntaxError"),
        ("import os\n\n\nraise ImportError('no torchvision')\n", "", "handler.py:4: ImportError"),
        ("class Other:\n    pass\n", "", "handler.py has no Classifier"),
        ("", "no_such_package.mod:Classifier", "ModuleNotFoundError"),
    ],
)
def test_a_handler_that_fails_to_load_fails_the_model_naming_file_and_line(
    serve, make_settings, demo_dir: Path, tmp_path: Path, handler: str, spec: str, where: str
) -> None:
    root = _bundle(tmp_path / "bad", demo_dir, handler, spec)
    with serve(make_settings(root), wait_ready=False) as server:
        service = server.service
        deadline = time.monotonic() + 60
        while service.failure is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert where in service.failure
    assert not service.readiness.ready

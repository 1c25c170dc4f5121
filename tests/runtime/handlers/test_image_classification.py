"""The shipped image classification handler: decode, resize, normalise, softmax, top-k, labels."""

import io

import numpy as np
import pytest
from kinfer_runtime.backends import ModelSignature, TensorSpec
from kinfer_runtime.handlers import HandlerContext, HandlerInputError, HandlerRequest
from kinfer_runtime.handlers.image_classification import ImageClassifier, softmax, top_k
from PIL import Image

SIGNATURE = ModelSignature(
    (TensorSpec("pixels", "FP32", (-1, 3, 4, 6)),), (TensorSpec("logits", "FP32", (-1, 5)),)
)


def _png(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


def _classifier(**options: object) -> ImageClassifier:
    labels = ("a", "b", "c")  # fewer labels than classes: the rest are named by index
    return ImageClassifier(HandlerContext(None, SIGNATURE, labels, options))


def test_preprocess_resizes_scales_normalises_to_nchw() -> None:
    pixels = np.zeros((8, 12, 3), dtype=np.uint8)
    pixels[..., 0] = 255
    handler = _classifier(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5], resample="nearest")
    tensors = handler.preprocess(HandlerRequest({}, body=_png(pixels)))
    x = tensors["pixels"]
    assert x.shape == (1, 3, 4, 6) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], 1.0)  # (1 - 0.5) / 0.5
    np.testing.assert_allclose(x[0, 1:], -1.0)


def test_nhwc_grayscale_and_several_images_from_a_bytes_tensor() -> None:
    signature = ModelSignature(
        (TensorSpec("x", "FP32", (-1, 4, 4, 1)),), (TensorSpec("y", "FP32", (-1, 2)),)
    )
    handler = ImageClassifier(HandlerContext(None, signature, (), {"layout": "NHWC"}))
    assert handler.image.mode == "L"
    blobs = np.array([_png(np.full((4, 4, 3), 51, np.uint8), "JPEG")] * 3, dtype=object)
    x = handler.preprocess(HandlerRequest({"image": blobs}))["x"]
    assert x.shape == (3, 4, 4, 1)
    np.testing.assert_allclose(x, 0.2, atol=0.02)


def test_postprocess_softmax_top_k_and_labels() -> None:
    handler = _classifier(topK=3)
    logits = np.array([[0.0, 3.0, 1.0, 5.0, -1.0], [9.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
    out = handler.postprocess({"logits": logits}, HandlerRequest({}))
    assert out["label"].tolist() == [["3", "b", "c"], ["a", "b", "c"]]
    assert out["index"].tolist() == [[3, 1, 2], [0, 1, 2]]
    np.testing.assert_allclose(out["score"][0], softmax(logits)[0][[3, 1, 2]], rtol=1e-6)
    assert out["score"].dtype == np.float32


def test_softmax_is_stable_and_top_k_breaks_ties_by_index() -> None:
    probs = softmax(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(probs, [[0.5, 0.5, 0.0]])
    index, scores = top_k(np.array([[0.2, 0.4, 0.4, 0.0]]), 2)
    assert index.tolist() == [[1, 2]] and scores.tolist() == [[0.4, 0.4]]


def test_without_softmax_scores_pass_through() -> None:
    out = _classifier(softmax=False, topK=1).postprocess(
        {"logits": np.array([[0.1, 0.7, 0.2, 0.0, 0.0]], np.float32)}, HandlerRequest({})
    )
    assert out["label"].tolist() == [["b"]] and out["score"].tolist() == [[pytest.approx(0.7)]]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (HandlerRequest({}, body=b"not an image"), "cannot decode the image"),
        (HandlerRequest({}), "input 'image' is required"),
        (HandlerRequest({"image": np.zeros(2, np.float32)}), "non-empty BYTES tensor"),
    ],
)
def test_bad_requests_are_handler_input_errors(request_: HandlerRequest, message: str) -> None:
    with pytest.raises(HandlerInputError, match=message):
        _classifier().preprocess(request_)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mean": [0.5]}, "mean and std need 3 values"),
        ({"layout": "CHW"}, "NCHW or NHWC"),
        ({"resample": "lanczos9"}, "resample"),
        ({"output": "nope"}, "no output 'nope'"),
        ({"input": "nope"}, "no input 'nope'"),
    ],
)
def test_invalid_options_fail_at_load(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _classifier(**options)

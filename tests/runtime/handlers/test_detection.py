"""The shipped detection handler: raw boxes to detections with per-class NMS."""

import io

import numpy as np
import pytest
from kinfer_runtime.backends import ModelSignature, TensorSpec
from kinfer_runtime.handlers import HandlerContext, HandlerInputError, HandlerRequest
from kinfer_runtime.handlers.detection import Detector, iou, nms
from PIL import Image

SIGNATURE = ModelSignature(
    (TensorSpec("images", "FP32", (-1, 3, 100, 100)),), (TensorSpec("raw", "FP32", (-1, -1, 6)),)
)


def _detector(**options: object) -> Detector:
    return Detector(HandlerContext(None, SIGNATURE, ("cat", "dog"), options))


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height)).save(out, format="PNG")
    return out.getvalue()


def test_iou_and_greedy_nms() -> None:
    box = np.array([0, 0, 10, 10], np.float32)
    others = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(iou(box, others), [1.0, 50 / 150, 0.0])
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 9]], np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.6], np.float32)
    assert nms(boxes, scores, 0.5) == [1, 2]
    assert nms(boxes, scores, 0.95) == [1, 0, 2, 3]


def test_raw_output_to_detections_scaled_to_the_original_image() -> None:
    raw = np.array(
        [
            [50, 50, 20, 20, 0.9, 0.1],  # cat
            [51, 50, 20, 20, 0.8, 0.1],  # the same cat, suppressed
            [51, 50, 20, 20, 0.1, 0.7],  # a dog in the same place: another class, kept
            [10, 10, 4, 4, 0.2, 0.1],  # below the score threshold
            [95, 95, 20, 20, 0.6, 0.0],  # overflows the image: clipped
        ],
        np.float32,
    )
    detections = _detector().detect(raw, width=200, height=100)
    assert [d["label"] for d in detections] == ["cat", "dog", "cat"]
    assert [d["class"] for d in detections] == [0, 1, 0]
    assert detections[0]["score"] == pytest.approx(0.9)
    assert detections[0]["box"] == [80.0, 40.0, 120.0, 60.0]  # x scaled by 2
    assert detections[2]["box"] == [170.0, 85.0, 200.0, 100.0]


def test_xyxy_boxes_max_detections_and_thresholds() -> None:
    raw = np.array([[0, 0, 10, 10, 0.5, 0.0], [50, 50, 60, 60, 0.4, 0.0]], np.float32)
    detector = _detector(boxFormat="xyxy", maxDetections=1, scoreThreshold=0.3)
    (only,) = detector.detect(raw, 100, 100)
    assert only["box"] == [0.0, 0.0, 10.0, 10.0]
    assert _detector(scoreThreshold=0.6).detect(raw, 100, 100) == []


def test_pre_and_postprocess_carry_the_image_size_per_request() -> None:
    detector = _detector()
    request = HandlerRequest({}, body=_png(300, 150))
    x = detector.preprocess(request)["images"]
    assert x.shape == (1, 3, 100, 100)
    raw = np.array([[[50, 50, 10, 10, 0.0, 0.9]]], np.float32)
    result = detector.postprocess({"raw": raw}, request)
    assert result == {
        "detections": [
            {"label": "dog", "class": 1, "score": 0.9, "box": [135.0, 67.5, 165.0, 82.5]}
        ]
    }


def test_one_image_per_request() -> None:
    blobs = np.array([_png(10, 10), _png(10, 10)], dtype=object)
    with pytest.raises(HandlerInputError, match="one image per request"):
        _detector().preprocess(HandlerRequest({"image": blobs}))

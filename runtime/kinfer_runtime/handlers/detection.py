"""A ready handler for object detectors: decode and resize the image, then turn the model's raw
output into boxes with per-class non-maximum suppression, in the original image's pixels.

Manifest: `handler: kinfer_runtime.handlers.detection:Detector`, with `handlerOptions`: the
image options of `image_classification` (`input`, `size`, `mode`, `layout`, `scale`, `mean`,
`std`, `resample`, `imageInput`), plus `output` (model output, default the first), `boxFormat`
cxcywh or xyxy (cxcywh), `scoreThreshold` (0.25), `iouThreshold` (0.45), `maxDetections`
(100).

The raw output is one row per image of shape [boxes, 4 + classes]: a box in the model input's
pixels, then one score per class (already sigmoid or softmax; YOLOv5/v8-style heads
transposed to boxes-first). One image per request (the BYTES input `image`, or the body of
`POST .../predict`). Returns JSON: `{"detections": [{"label", "class", "score", "box":
[x1, y1, x2, y2]}]}`, best first; over `.../infer` it is the BYTES output `json`.
"""

from typing import Any, ClassVar

import numpy as np

from kinfer_runtime.handlers import HandlerContext, HandlerInputError, HandlerRequest, Tensors
from kinfer_runtime.handlers._image import ImageSpec, decode

__all__ = ["Detector", "iou", "nms"]


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of one xyxy box with each of `others`."""
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)  # type: ignore[no-any-return]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy NMS: indices kept, best first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[iou(boxes[best], boxes[rest]) <= iou_threshold]
    return keep


class Detector:
    outputs: ClassVar[tuple[str, ...]] = ()  # JSON

    def __init__(self, context: HandlerContext) -> None:
        options = context.options
        self.image = ImageSpec.from_options(options, context.signature)
        self.output = str(options.get("output", context.signature.outputs[0].name))
        self.box_format = str(options.get("boxFormat", "cxcywh"))
        if self.box_format not in ("cxcywh", "xyxy"):
            raise ValueError("boxFormat: cxcywh or xyxy")
        self.score_threshold = float(options.get("scoreThreshold", 0.25))
        self.iou_threshold = float(options.get("iouThreshold", 0.45))
        self.max_detections = int(options.get("maxDetections", 100))
        self.image_input = str(options.get("imageInput", "image"))
        self.labels = context.labels

    def preprocess(self, request: HandlerRequest) -> Tensors:
        blobs = request.blobs(self.image_input)
        if len(blobs) != 1:
            raise HandlerInputError(f"one image per request, not {len(blobs)}")
        image = decode(blobs[0])
        request.state["size"] = image.size  # (width, height), to scale the boxes back
        return {self.image.input: self.image.tensor([image])}

    def detect(self, raw: np.ndarray, width: int, height: int) -> list[dict[str, Any]]:
        """Boxes from one image's raw output [boxes, 4 + classes]."""
        boxes, scores = raw[:, :4].astype(np.float32), raw[:, 4:].astype(np.float32)
        if self.box_format == "cxcywh":
            cx, cy, w, h = boxes.T
            boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        classes = scores.argmax(axis=1)
        best = scores[np.arange(len(scores)), classes]
        mask = best >= self.score_threshold
        boxes, best, classes = boxes[mask], best[mask], classes[mask]
        scale = np.array(
            [width / self.image.width, height / self.image.height] * 2, dtype=np.float32
        )
        found: list[tuple[float, int, np.ndarray]] = []
        for cls in np.unique(classes):
            idx = np.flatnonzero(classes == cls)
            for i in nms(boxes[idx], best[idx], self.iou_threshold):
                found.append((float(best[idx[i]]), int(cls), boxes[idx[i]] * scale))
        found.sort(key=lambda d: -d[0])
        clip = np.array([width, height, width, height], dtype=np.float32)
        return [
            {
                "label": self.labels[cls] if cls < len(self.labels) else str(cls),
                "class": cls,
                "score": round(score, 6),
                "box": [round(float(v), 2) for v in np.clip(box, 0, clip)],
            }
            for score, cls, box in found[: self.max_detections]
        ]

    def postprocess(self, outputs: Tensors, request: HandlerRequest) -> dict[str, Any]:
        width, height = request.state["size"]
        raw = outputs[self.output]
        return {"detections": self.detect(raw[0], width, height)}

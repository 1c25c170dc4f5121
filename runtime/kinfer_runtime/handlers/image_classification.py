"""A ready handler for image classifiers: decode (Pillow), resize, normalise, run, softmax,
top-k with labels.

Manifest: `handler: kinfer_runtime.handlers.image_classification:ImageClassifier`, with
`handlerOptions` (all optional): `input` (model input, default the first), `output` (model
output, default the first), `size` [height, width] (default the input's fixed shape), `mode`
RGB or L (default from the channel dimension), `layout` NCHW or NHWC (NCHW), `scale`
(1/255), `mean` and `std` per channel (0 and 1), `resample` nearest|box|bilinear|bicubic
(bilinear), `topK` (5), `softmax` (true; false when the model already outputs
probabilities), `imageInput` (the BYTES input a client sends, `image`).

Input: the images as a BYTES tensor `image` (one or more, shape [n]), or one image as the
body of `POST .../predict`. Output tensors, one row per image, best first: `label` (BYTES,
[n, k]; the class index as text without a labels file), `score` (FP32, [n, k]) and `index`
(INT64, [n, k]).
"""

from typing import ClassVar

import numpy as np

from kinfer_runtime.handlers import HandlerContext, HandlerRequest, Tensors
from kinfer_runtime.handlers._image import ImageSpec, decode

__all__ = ["ImageClassifier", "softmax", "top_k"]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)  # type: ignore[no-any-return]


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, scores) of the k best per row, best first; ties keep the lower index."""
    order = np.argsort(-scores, axis=-1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=-1)


class ImageClassifier:
    outputs: ClassVar[tuple[str, ...]] = ("label", "score", "index")

    def __init__(self, context: HandlerContext) -> None:
        options = context.options
        self.image = ImageSpec.from_options(options, context.signature)
        self.output = str(options.get("output", context.signature.outputs[0].name))
        if context.signature.output(self.output) is None:
            raise ValueError(f"the model has no output {self.output!r}")
        self.k = int(options.get("topK", 5))
        self.softmax = bool(options.get("softmax", True))
        self.image_input = str(options.get("imageInput", "image"))
        self.labels = context.labels

    def preprocess(self, request: HandlerRequest) -> Tensors:
        images = [decode(blob) for blob in request.blobs(self.image_input)]
        return {self.image.input: self.image.tensor(images)}

    def postprocess(self, outputs: Tensors, request: HandlerRequest) -> Tensors:
        raw = outputs[self.output].reshape(len(outputs[self.output]), -1).astype(np.float32)
        scores = softmax(raw) if self.softmax else raw
        index, best = top_k(scores, min(self.k, scores.shape[1]))
        names = self.labels
        label = np.array(
            [[names[i] if i < len(names) else str(i) for i in row] for row in index.tolist()],
            dtype=object,
        )
        return {"label": label, "score": best.astype(np.float32), "index": index.astype(np.int64)}

"""Image decoding and normalisation shared by the shipped handlers (Pillow and numpy)."""

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from PIL import Image, UnidentifiedImageError

from kinfer_runtime.backends.base import ModelSignature
from kinfer_runtime.errors import HandlerInputError

__all__ = ["ImageSpec", "decode"]

_RESAMPLE: Final = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
# Decompression bombs: an image is refused above this many pixels before it is decoded.
MAX_PIXELS: Final = 64 * 1024 * 1024


@dataclass(frozen=True)
class ImageSpec:
    """How images become the model's input tensor (from `handlerOptions`, with defaults
    from the model's signature)."""

    input: str
    """The model input fed with the images."""
    height: int
    width: int
    mode: str  # "RGB" or "L"
    layout: str  # "NCHW" or "NHWC"
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resample: Image.Resampling

    @classmethod
    def from_options(cls, options: Mapping[str, Any], signature: ModelSignature) -> "ImageSpec":
        if not signature.inputs:
            raise ValueError("the model has no inputs")
        spec = signature.input(str(options.get("input", signature.inputs[0].name)))
        if spec is None:
            raise ValueError(f"the model has no input {options.get('input')!r}")
        layout = str(options.get("layout", "NCHW"))
        if layout not in ("NCHW", "NHWC") or len(spec.shape) != 4:
            raise ValueError(f"input {spec.name!r} must be 4-d, NCHW or NHWC")
        c, h, w = spec.shape[1:] if layout == "NCHW" else (spec.shape[3], *spec.shape[1:3])
        size = options.get("size", [h, w])
        channels = {"RGB": 3, "L": 1}
        mode = str(options.get("mode", "L" if c == 1 else "RGB"))
        if mode not in channels:
            raise ValueError(f"mode {mode!r}: RGB or L")
        n = channels[mode]
        mean = tuple(float(v) for v in options.get("mean", [0.0] * n))
        std = tuple(float(v) for v in options.get("std", [1.0] * n))
        if len(mean) != n or len(std) != n or min(std) <= 0:
            raise ValueError(f"mean and std need {n} values (std > 0)")
        resample = _RESAMPLE.get(str(options.get("resample", "bilinear")))
        if resample is None:
            raise ValueError(f"resample: one of {sorted(_RESAMPLE)}")
        height, width = int(size[0]), int(size[1])
        if not (0 < height <= 8192 and 0 < width <= 8192):
            raise ValueError("size must be known: set handlerOptions.size [height, width]")
        return cls(
            spec.name,
            height,
            width,
            mode,
            layout,
            float(options.get("scale", 1 / 255)),
            mean,
            std,
            resample,
        )

    def tensor(self, images: Sequence[Image.Image]) -> np.ndarray:
        """A float32 batch, one row per image: resized, scaled, normalised, laid out."""
        rows = []
        for image in images:
            resized = image.convert(self.mode).resize((self.width, self.height), self.resample)
            array = np.asarray(resized, dtype=np.float32).reshape(self.height, self.width, -1)
            rows.append((array * self.scale - self.mean) / self.std)
        batch = np.stack(rows).astype(np.float32)
        return batch.transpose(0, 3, 1, 2).copy() if self.layout == "NCHW" else batch


def decode(blob: bytes) -> Image.Image:
    """An image from encoded bytes; HandlerInputError for anything Pillow cannot read."""
    try:
        image = Image.open(io.BytesIO(blob))
        if image.width * image.height > MAX_PIXELS:
            raise HandlerInputError(f"image of {image.width}x{image.height} pixels is too large")
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise HandlerInputError(f"cannot decode the image: {exc}") from None
    return image

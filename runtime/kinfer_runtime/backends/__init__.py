"""Model backends: ONNX Runtime and PyTorch behind one small protocol (see `base`)."""

from pathlib import Path
from typing import Final, Literal, get_args

from kinfer_runtime.backends.base import (
    Backend,
    BackendOptions,
    Device,
    ModelSignature,
    TensorSpec,
    TorchDtype,
)
from kinfer_runtime.errors import ModelLoadError

__all__ = [
    "FORMATS",
    "Backend",
    "BackendOptions",
    "Device",
    "ModelFormat",
    "ModelSignature",
    "TensorSpec",
    "TorchDtype",
    "detect_format",
    "open_backend",
]

ModelFormat = Literal["onnx", "torchscript", "torch-export"]
FORMATS: Final[tuple[str, ...]] = get_args(ModelFormat)

_FORMAT_BY_SUFFIX: Final[dict[str, ModelFormat]] = {
    ".onnx": "onnx",
    ".pt": "torchscript",
    ".pth": "torchscript",
    ".torchscript": "torchscript",
    ".pt2": "torch-export",
}


def detect_format(name: str) -> ModelFormat:
    """The format implied by a file name's extension."""
    suffix = Path(name).suffix.lower()
    fmt = _FORMAT_BY_SUFFIX.get(suffix)
    if fmt is None:
        raise ModelLoadError(
            f"cannot tell the model format of {Path(name).name!r}; pass --format "
            f"({', '.join(FORMATS)})"
        )
    return fmt


def open_backend(path: Path, fmt: ModelFormat, options: BackendOptions) -> Backend:
    """An unloaded backend for the file. Only the chosen framework gets imported."""
    if fmt == "onnx":
        from kinfer_runtime.backends.onnx import OnnxBackend

        return OnnxBackend(path, options)
    from kinfer_runtime.backends.torch import TorchBackend

    return TorchBackend(path, options, exported=fmt == "torch-export")

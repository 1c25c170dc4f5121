"""`kinfer-runtime demo-model`: a small, deterministic image classifier in three formats.

Variants exist for canary tests and behave badly for real, inside the model:
- `slow`: twenty extra residual blocks (nearly silent, so nearly the same answers): ~8x slower.
- `broken`: files that fail to load (an ONNX graph reading an undefined tensor, truncated
  TorchScript and torch.export archives).
- `faulty`: loads and warms up (warm-up feeds zeros), then fails on any non-zero input.
"""

from pathlib import Path
from typing import Final, get_args

from kinfer_runtime.demo._weights import (
    CLASSES,
    IMAGE_SHAPE,
    INPUT_NAME,
    OUTPUT_NAME,
    Variant,
    make_weights,
)

__all__ = [
    "CLASSES",
    "IMAGE_SHAPE",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "VARIANTS",
    "Variant",
    "build_demo_model",
]

VARIANTS: Final[tuple[str, ...]] = get_args(Variant)
ONNX_FILE: Final = "model.onnx"
TORCHSCRIPT_FILE: Final = "model.pt"
EXPORT_FILE: Final = "model.pt2"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def build_demo_model(
    out: Path, variant: Variant = "normal", *, with_torch: bool = True
) -> list[Path]:
    """Writes model.onnx (and model.pt, model.pt2 when torch is wanted) into `out`."""
    # Imported here so that reading VARIANTS (the CLI does) does not import onnx or torch.
    from kinfer_runtime.demo._onnx_graph import build_onnx, write_broken_onnx

    out.mkdir(parents=True, exist_ok=True)
    weights = make_weights(variant)
    onnx_path = out / ONNX_FILE
    if variant == "broken":
        write_broken_onnx(weights, onnx_path)
    else:
        build_onnx(weights, onnx_path)
    written = [onnx_path]
    if with_torch:
        from kinfer_runtime.demo._torch_module import build_torch_files

        torchscript, exported = out / TORCHSCRIPT_FILE, out / EXPORT_FILE
        build_torch_files(weights, torchscript, exported)
        if variant == "broken":
            _truncate(torchscript)
            _truncate(exported)
        written += [torchscript, exported]
    return written

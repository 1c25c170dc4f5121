"""What every backend offers the data plane: load, a signature read from the model, and infer."""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

__all__ = [
    "Backend",
    "BackendOptions",
    "Device",
    "ModelSignature",
    "TensorSpec",
    "TorchDtype",
]

Device = Literal["auto", "cuda", "cpu"]
TorchDtype = Literal["fp32", "fp16", "bf16"]


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output. `shape` uses -1 for dimensions the model leaves dynamic."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelSignature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def batchable(self) -> bool:
        """True when every tensor's first dimension is dynamic: requests can be stacked on it."""
        tensors = self.inputs + self.outputs
        return bool(tensors) and all(t.shape and t.shape[0] == -1 for t in tensors)

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((t for t in self.outputs if t.name == name), None)


@dataclass(frozen=True)
class BackendOptions:
    device: Device = "auto"
    torch_dtype: TorchDtype = "fp32"
    # None: as many threads as the container may use (see backends._cpu).
    threads: int | None = None
    cache_dir: Path | None = None
    # A signature declared outside the model file (a bundle manifest's, for TorchScript).
    signature: "ModelSignature | None" = None


class Backend(Protocol):
    """A loaded model. `infer` is called from one worker thread at a time, never concurrently."""

    @property
    def platform(self) -> str:
        """The platform string reported in model metadata, e.g. onnxruntime_onnx."""
        ...

    @property
    def device(self) -> str:
        """Where the model runs, e.g. cpu or cuda:0."""
        ...

    @property
    def signature(self) -> ModelSignature: ...

    @property
    def batch_invariant(self) -> bool:
        """Whether a row's result is bit-identical whatever the batch size around it.

        When False, the batcher pads every batch to one fixed size so results stay exact.
        """
        ...

    def load(self) -> None:
        """Reads the model; raises ModelLoadError with a one-line reason on failure."""
        ...

    def prepare(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Converts one request's inputs to what `infer` takes; raises InvalidInput.

        Runs per request before batching, so one bad request cannot fail a whole batch.
        """
        ...

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs one batch. Returns every output, keyed by name, as numpy arrays on the host."""
        ...

    def close(self) -> None: ...

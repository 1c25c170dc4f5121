"""PyTorch backend for TorchScript (.pt) and torch.export (.pt2) files.

torch is imported inside `load()` only: importing it costs seconds, which the ONNX path, the
default, should not pay. Models run under `torch.inference_mode`, on CUDA when available.
"""

import json
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from kinfer_runtime.backends._cpu import available_cpus
from kinfer_runtime.backends.base import BackendOptions, ModelSignature, TensorSpec
from kinfer_runtime.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

__all__ = ["SIGNATURE_FILE", "TorchBackend"]

log = logging.getLogger(__name__)

# An extra file inside the model archive that holds the tensor signature: TorchScript records
# no shapes or dtypes, and neither format records output names. `demo-model` writes it; for
# .pt2 files without it the signature is read from the exported graph instead.
SIGNATURE_FILE: Final = "kinfer_signature.json"

_DATATYPE_BY_TORCH_NAME: Final = {
    "torch.bool": "BOOL",
    "torch.uint8": "UINT8",
    "torch.int8": "INT8",
    "torch.int16": "INT16",
    "torch.int32": "INT32",
    "torch.int64": "INT64",
    "torch.float16": "FP16",
    "torch.bfloat16": "BF16",
    "torch.float32": "FP32",
    "torch.float64": "FP64",
}


def _parse_signature(text: str, source: str) -> ModelSignature:
    try:
        doc = json.loads(text)
        return ModelSignature(
            inputs=tuple(
                TensorSpec(t["name"], t["datatype"], tuple(t["shape"])) for t in doc["inputs"]
            ),
            outputs=tuple(
                TensorSpec(t["name"], t["datatype"], tuple(t["shape"])) for t in doc["outputs"]
            ),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{source}: invalid {SIGNATURE_FILE}: {exc}") from exc


def _spec_from_fake(name: str, value: Any) -> TensorSpec:
    import torch

    if not isinstance(value, torch.Tensor):
        raise ModelLoadError(f"exported program tensor {name!r} is not a tensor ({value!r})")
    datatype = _DATATYPE_BY_TORCH_NAME.get(str(value.dtype))
    if datatype is None:
        raise ModelLoadError(f"tensor {name!r} has unsupported dtype {value.dtype}")
    # Symbolic sizes (torch.export's dynamic dimensions) are not plain ints.
    shape = tuple(dim if isinstance(dim, int) else -1 for dim in value.shape)
    return TensorSpec(name, datatype, shape)


def _signature_from_program(program: Any) -> ModelSignature:
    """Reads names, dtypes and (symbolic) shapes from an ExportedProgram's graph."""
    nodes = {node.name: node for node in program.graph.nodes}
    inputs = tuple(
        _spec_from_fake(name, nodes[name].meta.get("val"))
        for name in program.graph_signature.user_inputs
    )
    outputs = tuple(
        _spec_from_fake(f"output__{i}", nodes[name].meta.get("val"))
        for i, name in enumerate(program.graph_signature.user_outputs)
    )
    return ModelSignature(inputs, outputs)


class TorchBackend:
    def __init__(self, path: Path, options: BackendOptions, *, exported: bool) -> None:
        self._path = path
        self._options = options
        self._exported = exported
        self._module: Any = None
        self._signature = ModelSignature((), ())
        self._device = "cpu"
        self._compute_dtype: torch.dtype | None = None

    @property
    def platform(self) -> str:
        return "pytorch_torch_export" if self._exported else "pytorch_torchscript"

    @property
    def device(self) -> str:
        return self._device

    @property
    def signature(self) -> ModelSignature:
        return self._signature

    @property
    def batch_invariant(self) -> bool:
        # oneDNN/MKL (CPU) and cuDNN/cuBLAS (GPU) switch kernels with the batch size, so a row's
        # bits depend on its batch; the tests show fixed-size batches are exact.
        return False

    def load(self) -> None:
        try:
            import torch
        except ImportError as exc:
            raise ModelLoadError("PyTorch models need torch: pip install 'kinfer[torch]'") from exc
        threads = self._options.threads or available_cpus()
        torch.set_num_threads(threads)
        self._device = self._pick_device(torch)
        extra = {SIGNATURE_FILE: ""}
        try:
            if self._exported:
                program = torch.export.load(str(self._path), extra_files=extra)
                module = program.module().to(self._device)
            else:
                with warnings.catch_warnings():
                    # torch deprecates TorchScript, but it is a format we serve on purpose.
                    warnings.simplefilter("ignore", FutureWarning)
                    module = torch.jit.load(  # type: ignore[no-untyped-call]
                        str(self._path), map_location=self._device, _extra_files=extra
                    )
                module.eval()
        except Exception as exc:  # torch raises RuntimeError, ValueError, zip errors, ...
            raise ModelLoadError(f"torch cannot load {self._path.name}: {exc}") from exc
        if self._options.signature is not None:
            self._signature = self._options.signature
        elif extra[SIGNATURE_FILE]:
            self._signature = _parse_signature(extra[SIGNATURE_FILE], self._path.name)
        elif self._exported:
            self._signature = _signature_from_program(program)
        else:
            raise ModelLoadError(
                f"{self._path.name} has no {SIGNATURE_FILE}: save TorchScript with "
                f"torch.jit.save(m, f, _extra_files={{'{SIGNATURE_FILE}': signature_json}}), "
                "or declare the signature in a bundle's kinfer.yaml"
            )
        if "BYTES" in {t.datatype for t in self._signature.inputs + self._signature.outputs}:
            raise ModelLoadError("PyTorch models cannot take or return BYTES tensors")
        if self._options.torch_dtype != "fp32":
            self._compute_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[
                self._options.torch_dtype
            ]
            module = module.to(self._compute_dtype)
        self._module = module
        log.info("%s on %s (%s)", self.platform, self._device, self._options.torch_dtype)

    def _pick_device(self, torch: Any) -> str:
        if self._options.device == "cpu":
            return "cpu"
        if torch.cuda.is_available():
            # GPU only (not exercised by the CPU test suite).
            return "cuda:0"
        if self._options.device == "cuda":
            raise ModelLoadError("device cuda requested but torch sees no CUDA device")
        return "cpu"

    def prepare(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return inputs

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        assert self._module is not None, "infer() before load()"
        with torch.inference_mode():
            args = [self._to_tensor(torch, inputs[spec.name]) for spec in self._signature.inputs]
            result = self._module(*args)
            tensors = _flatten_outputs(result)
            if len(tensors) != len(self._signature.outputs):
                raise RuntimeError(
                    f"model returned {len(tensors)} outputs, signature declares "
                    f"{len(self._signature.outputs)}"
                )
            return {
                spec.name: self._to_numpy(tensor)
                for spec, tensor in zip(self._signature.outputs, tensors, strict=True)
            }

    def _to_tensor(self, torch: Any, array: np.ndarray) -> Any:
        # from_numpy shares memory but needs a writable array; inputs parsed from a request
        # body are read-only views, so those are copied once here.
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
        if self._compute_dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(self._compute_dtype)
        return tensor.to(self._device, non_blocking=True)

    def _to_numpy(self, tensor: Any) -> np.ndarray:
        if self._compute_dtype is not None and tensor.dtype == self._compute_dtype:
            # Reduced precision is an internal choice; clients keep the model's FP32 contract.
            tensor = tensor.float()
        array: np.ndarray = tensor.detach().cpu().numpy()
        return array

    def close(self) -> None:
        self._module = None


def _flatten_outputs(result: Any) -> list[Any]:
    if isinstance(result, dict):
        return list(result.values())
    if isinstance(result, list | tuple):
        return list(result)
    return [result]

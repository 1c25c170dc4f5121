"""ONNX Runtime backend: TensorRT or CUDA when available, CPU otherwise."""

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]

from kinfer_runtime.backends._cpu import available_cpus
from kinfer_runtime.backends.base import BackendOptions, ModelSignature, TensorSpec
from kinfer_runtime.errors import InvalidInput, ModelLoadError

__all__ = ["OnnxBackend"]

log = logging.getLogger(__name__)

_CPU: Final = "CPUExecutionProvider"
_CUDA: Final = "CUDAExecutionProvider"
_TENSORRT: Final = "TensorrtExecutionProvider"
_GPU_PROVIDERS: Final = (_TENSORRT, _CUDA)

_DATATYPE_BY_ORT_TYPE: Final = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(bfloat16)": "BF16",
    "tensor(string)": "BYTES",
}


def _spec(arg: Any) -> TensorSpec:
    datatype = _DATATYPE_BY_ORT_TYPE.get(arg.type)
    if datatype is None:
        raise ModelLoadError(f"tensor {arg.name!r} has unsupported type {arg.type}")
    # Symbolic ("batch") and unknown (None) dimensions are both dynamic.
    shape = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in arg.shape)
    return TensorSpec(arg.name, datatype, shape)


def _session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    # Constant folding, Conv+BN+ReLU fusion and the CPU's blocked (NCHWc) layouts. The test
    # suite checks that these keep each row's result independent of the batch size on CPU.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Parallelism inside each operator, sized to the container's CPU limit rather than the
    # node's core count (ONNX Runtime's default), which would oversubscribe a limited pod.
    options.intra_op_num_threads = threads
    # Served graphs are mostly chains and batching already gives each operator enough work:
    # running independent nodes in parallel would only add scheduling overhead.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    # Idle operator threads would otherwise spin for a while after each run, burning the CPU
    # that the HTTP event loop needs to decode the next requests.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _gpu_providers(options: BackendOptions) -> list[str | tuple[str, dict[str, Any]]]:
    # GPU only (not exercised by the CPU test suite).
    available = ort.get_available_providers()
    providers: list[str | tuple[str, dict[str, Any]]] = []
    if _TENSORRT in available:
        trt_options: dict[str, Any] = {"device_id": 0}
        if options.cache_dir is not None:
            # Building TensorRT engines takes minutes; cache them next to the model.
            trt_options |= {
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(options.cache_dir / "tensorrt"),
            }
        providers.append((_TENSORRT, trt_options))
    if _CUDA in available:
        providers.append((_CUDA, {"device_id": 0}))
    return providers


class OnnxBackend:
    platform: Final = "onnxruntime_onnx"

    def __init__(self, path: Path, options: BackendOptions) -> None:
        self._path = path
        self._options = options
        self._session: ort.InferenceSession | None = None
        self._signature = ModelSignature((), ())
        self._output_names: list[str] = []
        self._string_inputs: frozenset[str] = frozenset()
        self._on_gpu = False

    @property
    def device(self) -> str:
        return "cuda:0" if self._on_gpu else "cpu"

    @property
    def signature(self) -> ModelSignature:
        return self._signature

    @property
    def batch_invariant(self) -> bool:
        # CPU kernels compute each row on its own (checked bit for bit by the tests); cuDNN and
        # TensorRT pick different algorithms for different batch sizes.
        return not self._on_gpu

    def load(self) -> None:
        threads = self._options.threads or available_cpus()
        gpu = _gpu_providers(self._options) if self._options.device != "cpu" else []
        if self._options.device == "cuda" and not gpu:
            raise ModelLoadError(
                "device cuda requested but onnxruntime has no CUDA provider "
                "(install onnxruntime-gpu)"
            )
        session = None
        if gpu:
            session = self._open([*gpu, _CPU], threads, fallback_ok=self._options.device == "auto")
        if session is None:
            session = self._open([_CPU], threads, fallback_ok=False)
        assert session is not None
        self._session = session
        self._on_gpu = session.get_providers()[0] in _GPU_PROVIDERS
        if self._options.device == "cuda" and not self._on_gpu:
            raise ModelLoadError("device cuda requested but no GPU execution provider started")
        self._signature = ModelSignature(
            inputs=tuple(_spec(arg) for arg in session.get_inputs()),
            outputs=tuple(_spec(arg) for arg in session.get_outputs()),
        )
        self._output_names = [spec.name for spec in self._signature.outputs]
        self._string_inputs = frozenset(
            spec.name for spec in self._signature.inputs if spec.datatype == "BYTES"
        )
        log.info("onnxruntime session on %s (providers %s)", self.device, session.get_providers())

    def _open(
        self,
        providers: Sequence[str | tuple[str, dict[str, Any]]],
        threads: int,
        *,
        fallback_ok: bool,
    ) -> ort.InferenceSession | None:
        try:
            return ort.InferenceSession(
                str(self._path), _session_options(threads), providers=list(providers)
            )
        except Exception as exc:  # onnxruntime raises its own unrelated exception types
            if fallback_ok:
                log.warning("GPU session failed (%s); falling back to CPU", exc)
                return None
            raise ModelLoadError(f"onnxruntime cannot load {self._path.name}: {exc}") from exc

    def prepare(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name in self._string_inputs & inputs.keys():
            inputs[name] = _as_strings(name, inputs[name])
        return inputs

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self._session is not None, "infer() before load()"
        if self._on_gpu:
            return self._infer_bound(inputs)
        outputs = self._session.run(self._output_names, dict(inputs))
        return dict(zip(self._output_names, outputs, strict=True))

    def _infer_bound(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # GPU only (not exercised by the CPU test suite). IOBinding lets ONNX Runtime copy
        # inputs to the device once and leave outputs there until a single copy back, instead
        # of allocating and synchronising per output inside run().
        assert self._session is not None
        binding = self._session.io_binding()
        for name, array in feed.items():
            binding.bind_cpu_input(name, array)
        for name in self._output_names:
            binding.bind_output(name, "cuda", 0)
        self._session.run_with_iobinding(binding)
        outputs = binding.copy_outputs_to_cpu()
        return dict(zip(self._output_names, outputs, strict=True))

    def close(self) -> None:
        self._session = None


def _as_strings(name: str, array: np.ndarray) -> np.ndarray:
    # onnxruntime takes string tensors as Python str; the protocol carries raw bytes.
    try:
        decoded = [v.decode("utf-8") if isinstance(v, bytes) else v for v in array.reshape(-1)]
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"input {name!r}: this model's strings must be UTF-8 ({exc})") from exc
    return np.array(decoded, dtype=object).reshape(array.shape)

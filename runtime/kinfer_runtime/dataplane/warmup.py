"""Warm-up: runs the model at the batch sizes it will see before reporting ready."""

import logging

import numpy as np

from kinfer_runtime.backends.base import Backend, TensorSpec
from kinfer_runtime.datatypes import numpy_dtype
from kinfer_runtime.errors import ModelLoadError

__all__ = ["warm_up", "warmup_batch_sizes"]

log = logging.getLogger(__name__)


def warmup_batch_sizes(max_batch_size: int, *, padded: bool, on_gpu: bool) -> list[int]:
    """Batch sizes to run once each.

    Padded batches have a single size. On a GPU every size gets a run, because cuDNN and
    TensorRT tune per input shape and the first call at a new size is slow. CPU kernels tune
    nothing per shape, so powers of two (and the maximum) suffice to grow the memory arenas.
    """
    if padded:
        return [max_batch_size]
    if on_gpu:
        return list(range(1, max_batch_size + 1))
    sizes = {1 << i for i in range(max_batch_size.bit_length()) if 1 << i <= max_batch_size}
    return sorted(sizes | {max_batch_size})


def _zeros(spec: TensorSpec, rows: int | None) -> np.ndarray:
    dtype = numpy_dtype(spec.datatype)
    if dtype is None:
        raise ModelLoadError(f"input {spec.name!r} has unsupported datatype {spec.datatype}")
    # Other dynamic dimensions (sequence lengths, image sizes) get the smallest size, 1.
    shape = [max(d, 1) for d in spec.shape]
    if rows is not None:
        shape[0] = rows
    array = np.zeros(shape, dtype=dtype)
    if dtype.kind == "O":
        array.fill(b"")
    return array


def warm_up(backend: Backend, sizes: list[int], *, batchable: bool) -> bool:
    """Runs zero inputs through the model; returns whether every output follows the batch.

    Zeros on purpose: a warm-up must not depend on data a model may not accept.
    """
    follows_batch = True
    for rows in sizes if batchable else [1]:
        inputs = {
            spec.name: _zeros(spec, rows if batchable else None)
            for spec in backend.signature.inputs
        }
        try:
            outputs = backend.infer(backend.prepare(inputs))
        except Exception as exc:
            raise ModelLoadError(f"warm-up at batch size {rows} failed: {exc}") from exc
        if batchable and any(a.ndim == 0 or a.shape[0] != rows for a in outputs.values()):
            follows_batch = False
    if batchable and not follows_batch:
        log.warning("outputs do not follow the input batch dimension: batching disabled")
    return follows_batch

"""Checks one request's tensors against the model signature before they may join a batch."""

from collections.abc import Mapping

import numpy as np

from kinfer_runtime.backends.base import ModelSignature, TensorSpec
from kinfer_runtime.datatypes import datatype_of
from kinfer_runtime.errors import InvalidInput

__all__ = ["check_inputs", "format_shape"]


def format_shape(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _check_one(spec: TensorSpec, array: np.ndarray) -> None:
    datatype = datatype_of(array.dtype)
    if datatype != spec.datatype:
        raise InvalidInput(
            f"input {spec.name!r} has datatype {datatype}, model expects {spec.datatype}"
        )
    if len(array.shape) != len(spec.shape) or any(
        want not in (-1, got) for want, got in zip(spec.shape, array.shape, strict=True)
    ):
        raise InvalidInput(
            f"input {spec.name!r} has shape {format_shape(array.shape)}, model expects "
            f"{format_shape(spec.shape)} (-1: any size)"
        )


def check_inputs(signature: ModelSignature, inputs: Mapping[str, np.ndarray]) -> int:
    """Validates names, datatypes and shapes; returns the request's rows (1 if not batchable)."""
    expected = [spec.name for spec in signature.inputs]
    for name in inputs:
        if signature.input(name) is None:
            raise InvalidInput(f"unknown input {name!r}; model inputs are {expected}")
    missing = [name for name in expected if name not in inputs]
    if missing:
        raise InvalidInput(f"missing input(s) {missing}")
    for spec in signature.inputs:
        _check_one(spec, inputs[spec.name])
    if not signature.batchable:
        return 1
    rows = {array.shape[0] for array in inputs.values()}
    if len(rows) != 1:
        raise InvalidInput(f"inputs disagree on the batch dimension: {sorted(rows)}")
    count = int(rows.pop())
    if count == 0:
        raise InvalidInput("batch dimension is 0: nothing to infer")
    return count

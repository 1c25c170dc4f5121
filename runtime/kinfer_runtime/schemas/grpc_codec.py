"""The inference request/response codec for gRPC: protobuf messages to numpy and back.

The same request model as the REST codec (`schemas.inference.InferenceRequest`) comes out, so
the data plane cannot tell the protocols apart. Raw contents become numpy views of the bytes
protobuf hands us, without a further copy; typed contents (`InferTensorContents`) are accepted
too. Responses always carry `raw_output_contents`, as Triton's do: its client reads either.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from kinfer_runtime.datatypes import BYTES, datatype_of, numpy_dtype
from kinfer_runtime.errors import InvalidInput
from kinfer_runtime.schemas.inference import (
    InferenceRequest,
    OutputRequest,
    RequestedOutput,
    array_from_raw,
    object_array,
    raw_bytes,
    scheduling_parameters,
)
from kinfer_runtime.schemas.proto import grpc_service_pb2 as pb

__all__ = ["decode_infer_request", "encode_infer_response", "parameter_values"]

# Which InferTensorContents field carries each datatype, and the numpy type it parses as
# before the range check and the cast to the tensor's own dtype.
_CONTENTS: Final[dict[str, tuple[str, str]]] = {
    "BOOL": ("bool_contents", "?"),
    "INT8": ("int_contents", "<i4"),
    "INT16": ("int_contents", "<i4"),
    "INT32": ("int_contents", "<i4"),
    "INT64": ("int64_contents", "<i8"),
    "UINT8": ("uint_contents", "<u4"),
    "UINT16": ("uint_contents", "<u4"),
    "UINT32": ("uint_contents", "<u4"),
    "UINT64": ("uint64_contents", "<u8"),
    "FP32": ("fp32_contents", "<f4"),
    "FP64": ("fp64_contents", "<f8"),
    BYTES: ("bytes_contents", "O"),
}


def parameter_values(parameters: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """Protobuf parameters as plain Python values (the oneof member that is set)."""
    values: dict[str, Any] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is not None:
            values[key] = getattr(parameter, choice)
    return values


def _shape(name: str, dims: Sequence[int]) -> tuple[int, ...]:
    if any(d < 0 for d in dims):
        raise InvalidInput(f"input {name!r}: shape must be non-negative integers")
    return tuple(dims)


def _from_contents(
    name: str, datatype: str, dtype: np.dtype[Any], shape: tuple[int, ...], contents: Any
) -> np.ndarray:
    field = _CONTENTS.get(datatype)
    if field is None:
        raise InvalidInput(f"input {name!r}: {datatype} data must be sent as raw_input_contents")
    values = getattr(contents, field[0])
    count = math.prod(shape)
    if datatype == BYTES:
        return object_array(name, list(values), shape, count)
    if len(values) != count:
        raise InvalidInput(
            f"input {name!r}: {len(values)} elements but shape {list(shape)} needs {count}"
        )
    parsed = np.array(values, dtype=field[1])
    if parsed.size and dtype.kind in "iu" and dtype.itemsize < parsed.dtype.itemsize:
        info = np.iinfo(dtype)
        if parsed.min() < info.min or parsed.max() > info.max:
            raise InvalidInput(f"input {name!r}: data out of range for {datatype}")
    return parsed.astype(dtype, copy=False).reshape(shape)


def decode_infer_request(message: pb.ModelInferRequest) -> InferenceRequest:
    """The tensors and options of one ModelInferRequest; raises InvalidInput."""
    if not message.inputs:
        raise InvalidInput("'inputs' must be a non-empty list")
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise InvalidInput(
            f"{len(raw)} raw_input_contents for {len(message.inputs)} inputs: "
            "give every input raw, or none"
        )
    inputs: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(message.inputs):
        name = tensor.name
        if name in inputs:
            raise InvalidInput(f"input {name!r} given twice")
        dtype = numpy_dtype(tensor.datatype)
        if dtype is None:
            raise InvalidInput(f"input {name!r}: unsupported datatype {tensor.datatype!r}")
        shape = _shape(name, tensor.shape)
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInput(f"input {name!r}: both contents and raw_input_contents given")
            chunk = memoryview(raw[index])
            inputs[name] = array_from_raw(name, tensor.datatype, dtype, shape, chunk)
        else:
            inputs[name] = _from_contents(name, tensor.datatype, dtype, shape, tensor.contents)
    outputs = []
    for wanted in message.outputs:
        if "classification" in wanted.parameters:
            raise InvalidInput("the classification extension is not supported")
        outputs.append(RequestedOutput(wanted.name, True))
    priority, timeout_us = scheduling_parameters(parameter_values(message.parameters))
    return InferenceRequest(
        message.id or None,
        inputs,
        outputs or None,
        True,
        priority,
        timeout_us,
    )


def encode_infer_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: Mapping[str, np.ndarray],
    selected: Sequence[OutputRequest],
) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(
        model_name=model_name, model_version=model_version, id=request_id or ""
    )
    for wanted in selected:
        array = outputs[wanted.name]
        datatype = datatype_of(array.dtype)
        response.outputs.add(name=wanted.name, datatype=datatype, shape=array.shape)
        response.raw_output_contents.append(bytes(raw_bytes(array, datatype)))
    return response

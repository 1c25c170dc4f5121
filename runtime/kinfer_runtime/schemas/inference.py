"""The inference request/response codec: JSON tensors and the binary tensor data extension.

Hand-written over orjson and numpy because this is the hot path: binary tensors become numpy
views of the request body without a copy, and responses are serialised straight from numpy.
Validating tensor data with pydantic would cost more than running the model.
"""

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import orjson

from kinfer_runtime.datatypes import BYTES, datatype_of, numpy_dtype
from kinfer_runtime.errors import InvalidInput

__all__ = [
    "HEADER_LENGTH",
    "InferenceRequest",
    "OutputRequest",
    "RequestedOutput",
    "array_from_raw",
    "decode_request",
    "encode_response",
    "object_array",
    "parse_header_length",
    "raw_bytes",
    "scheduling_parameters",
    "select_outputs",
]

# The binary extension's header: the length of the JSON part that precedes the raw tensors.
HEADER_LENGTH: Final = "inference-header-content-length"
_LENGTH_PREFIX: Final = struct.Struct("<I")  # BYTES elements: little-endian uint32 length
# Which JSON scalars numpy must have parsed for each kind of datatype (b: bool, i/u: int,
# f: float). Integers are accepted for floating-point tensors: JSON writes 1.0 as 1.
_JSON_KINDS: Final = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}


@dataclass(slots=True)
class RequestedOutput:
    name: str
    binary: bool | None  # None: the request-wide default


@dataclass(slots=True)
class OutputRequest:
    """An output to return, its encoding resolved."""

    name: str
    binary: bool


@dataclass(slots=True)
class InferenceRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[RequestedOutput] | None  # None: every output
    binary_outputs: bool  # the request-wide default, `parameters.binary_data_output`
    # Triton's scheduling parameters: `priority` (1 is the highest level; 0: the model's
    # default) and `timeout`, the longest the request may wait in the queue in microseconds
    # (0: no limit).
    priority: int = 0
    timeout_us: int = 0


def scheduling_parameters(parameters: Mapping[str, Any]) -> tuple[int, int]:
    """(priority, timeout in µs) from request-wide parameters, whichever protocol carried them."""
    values = []
    for key in ("priority", "timeout"):
        value = parameters.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidInput(f"parameter {key!r} must be a non-negative integer")
        values.append(value)
    return values[0], values[1]


def parse_header_length(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise InvalidInput(f"{HEADER_LENGTH} is not an integer: {value!r}") from None
    if length < 0:
        raise InvalidInput(f"{HEADER_LENGTH} is negative: {length}")
    return length


def _shape(name: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        raise InvalidInput(f"input {name!r}: shape must be a list of non-negative integers")
    return tuple(value)


def array_from_raw(
    name: str, datatype: str, dtype: np.dtype[Any], shape: tuple[int, ...], chunk: memoryview
) -> np.ndarray:
    """A tensor from its raw little-endian bytes: a view of `chunk`, not a copy (BYTES aside)."""
    count = math.prod(shape)
    if datatype == BYTES:
        return _bytes_from_binary(name, shape, count, chunk)
    expected = count * dtype.itemsize
    if len(chunk) != expected:
        raise InvalidInput(
            f"input {name!r}: binary_data_size is {len(chunk)} bytes but shape {list(shape)} "
            f"of {datatype} needs {expected}"
        )
    return np.frombuffer(chunk, dtype=dtype).reshape(shape)


def _bytes_from_binary(
    name: str, shape: tuple[int, ...], count: int, chunk: memoryview
) -> np.ndarray:
    items: list[bytes] = []
    offset = 0
    while offset < len(chunk):
        if offset + 4 > len(chunk):
            raise InvalidInput(f"input {name!r}: truncated BYTES element length")
        (length,) = _LENGTH_PREFIX.unpack_from(chunk, offset)
        offset += 4
        if offset + length > len(chunk):
            raise InvalidInput(f"input {name!r}: BYTES element overruns binary_data_size")
        items.append(bytes(chunk[offset : offset + length]))
        offset += length
    return object_array(name, items, shape, count)


def object_array(name: str, items: list[bytes], shape: tuple[int, ...], count: int) -> np.ndarray:
    if len(items) != count:
        raise InvalidInput(
            f"input {name!r}: {len(items)} elements but shape {list(shape)} needs {count}"
        )
    array = np.empty(count, dtype=object)
    array[:] = items
    return array.reshape(shape)


def _flatten_strings(name: str, data: Any, out: list[bytes]) -> None:
    for item in data:
        if isinstance(item, str):
            out.append(item.encode())
        elif isinstance(item, list):
            _flatten_strings(name, item, out)
        else:
            raise InvalidInput(f"input {name!r}: BYTES data must be strings")


def _from_json(
    name: str, datatype: str, dtype: np.dtype[Any], shape: tuple[int, ...], data: Any
) -> np.ndarray:
    count = math.prod(shape)
    if not isinstance(data, list):
        raise InvalidInput(f"input {name!r}: data must be a list")
    if datatype == BYTES:
        items: list[bytes] = []
        _flatten_strings(name, data, items)
        return object_array(name, items, shape, count)
    try:
        parsed = np.asarray(data)
    except (ValueError, TypeError):
        raise InvalidInput(f"input {name!r}: data is not a regular array of numbers") from None
    if parsed.size != count:
        raise InvalidInput(
            f"input {name!r}: data has {parsed.size} elements but shape {list(shape)} needs {count}"
        )
    if parsed.size and parsed.dtype.kind not in _JSON_KINDS[dtype.kind]:
        raise InvalidInput(f"input {name!r}: data is not valid {datatype} (got {parsed.dtype})")
    if parsed.size and dtype.kind in "iu":
        info = np.iinfo(dtype)
        if parsed.min() < info.min or parsed.max() > info.max:
            raise InvalidInput(f"input {name!r}: data out of range for {datatype}")
    return parsed.astype(dtype, copy=False).reshape(shape)


def _decode_input(item: Any, binary: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    if not isinstance(item, dict):
        raise InvalidInput("each entry of 'inputs' must be an object")
    name = item.get("name")
    if not isinstance(name, str):
        raise InvalidInput("an input has no 'name'")
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidInput(f"input {name!r}: missing 'datatype'")
    dtype = numpy_dtype(datatype)
    if dtype is None:
        raise InvalidInput(f"input {name!r}: unsupported datatype {datatype!r}")
    shape = _shape(name, item.get("shape"))
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput(f"input {name!r}: 'parameters' must be an object")
    size = parameters.get("binary_data_size")
    if size is None:
        if "data" not in item:
            raise InvalidInput(f"input {name!r}: no 'data' and no binary_data_size")
        return name, _from_json(name, datatype, dtype, shape, item["data"]), offset
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInput(f"input {name!r}: binary_data_size must be a non-negative integer")
    if "data" in item:
        raise InvalidInput(f"input {name!r}: both 'data' and binary_data_size given")
    if offset + size > len(binary):
        raise InvalidInput(f"input {name!r}: binary_data_size runs past the end of the body")
    chunk = binary[offset : offset + size]
    return name, array_from_raw(name, datatype, dtype, shape, chunk), offset + size


def _decode_outputs(value: Any) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidInput("'outputs' must be a list")
    requested = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput("each entry of 'outputs' must be an object with a 'name'")
        parameters = item.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidInput(f"output {item['name']!r}: 'parameters' must be an object")
        if "classification" in parameters:
            raise InvalidInput("the classification extension is not supported")
        binary = parameters.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise InvalidInput(f"output {item['name']!r}: binary_data must be true or false")
        requested.append(RequestedOutput(item["name"], binary))
    return requested


def decode_request(body: bytes, header_length: int | None) -> InferenceRequest:
    """Parses a request body (JSON, or JSON followed by binary tensors) into numpy arrays."""
    view = memoryview(body)
    if header_length is None:
        header, binary = view, view[len(view) :]
    elif header_length > len(view):
        raise InvalidInput(f"{HEADER_LENGTH} ({header_length}) exceeds the body ({len(view)})")
    else:
        header, binary = view[:header_length], view[header_length:]
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInput("request body must be a JSON object")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string")
    items = doc.get("inputs")
    if not isinstance(items, list) or not items:
        raise InvalidInput("'inputs' must be a non-empty list")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for item in items:
        name, array, offset = _decode_input(item, binary, offset)
        if name in inputs:
            raise InvalidInput(f"input {name!r} given twice")
        inputs[name] = array
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data belong to no input")
    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput("'parameters' must be an object")
    binary_outputs = parameters.get("binary_data_output", False)
    if not isinstance(binary_outputs, bool):
        raise InvalidInput("binary_data_output must be true or false")
    priority, timeout_us = scheduling_parameters(parameters)
    return InferenceRequest(
        request_id,
        inputs,
        _decode_outputs(doc.get("outputs")),
        binary_outputs,
        priority,
        timeout_us,
    )


def select_outputs(request: InferenceRequest, available: Sequence[str]) -> list[OutputRequest]:
    """The outputs to return, in order, each with its encoding; unknown names are a 400."""
    if request.outputs is None:
        return [OutputRequest(name, request.binary_outputs) for name in available]
    selected = []
    for wanted in request.outputs:
        if wanted.name not in available:
            raise InvalidInput(
                f"unknown output {wanted.name!r}; model outputs are {list(available)}"
            )
        binary = request.binary_outputs if wanted.binary is None else wanted.binary
        selected.append(OutputRequest(wanted.name, binary))
    return selected


def _as_bytes(value: object) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)  # type: ignore[call-overload]


def _json_data(name: str, array: np.ndarray, datatype: str) -> Any:
    if datatype != BYTES:
        return np.ascontiguousarray(array).reshape(-1)  # orjson writes numpy arrays natively
    try:
        return [_as_bytes(v).decode() for v in array.reshape(-1)]
    except UnicodeDecodeError:
        raise InvalidInput(
            f"output {name!r} holds non-UTF-8 bytes: request it with binary_data"
        ) from None


def raw_bytes(array: np.ndarray, datatype: str) -> bytes | memoryview:
    """A tensor's raw encoding: little-endian values, or length-prefixed BYTES elements."""
    if datatype != BYTES:
        return memoryview(np.ascontiguousarray(array).data).cast("B")
    parts = []
    for value in array.reshape(-1):
        data = _as_bytes(value)
        parts += [_LENGTH_PREFIX.pack(len(data)), data]
    return b"".join(parts)


def encode_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: Mapping[str, np.ndarray],
    selected: Sequence[OutputRequest],
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary tensors follow it."""
    tensors = []
    blobs: list[bytes | memoryview] = []
    for wanted in selected:
        array = outputs[wanted.name]
        datatype = datatype_of(array.dtype)
        entry: dict[str, Any] = {"name": wanted.name, "datatype": datatype, "shape": array.shape}
        if wanted.binary:
            blob = raw_bytes(array, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(wanted.name, array, datatype)
        tensors.append(entry)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        doc["id"] = request_id
    doc["outputs"] = tensors
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)

"""The tensor codec on its own: what the wire bytes turn into, and back."""

import json
import struct

import numpy as np
import orjson
import pytest
from kinfer_runtime.errors import InvalidInput
from kinfer_runtime.schemas.inference import (
    OutputRequest,
    decode_request,
    encode_response,
    select_outputs,
)


def binary(doc: dict, *blobs: bytes) -> tuple[bytes, int]:
    header = json.dumps(doc).encode()
    return header + b"".join(blobs), len(header)


def test_binary_input_is_a_zero_copy_view_of_the_body() -> None:
    data = np.arange(6, dtype=np.float32)
    body, n = binary(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [2, 3],
                    "parameters": {"binary_data_size": 24},
                }
            ]
        },
        data.tobytes(),
    )
    array = decode_request(body, n).inputs["x"]
    assert array.shape == (2, 3) and array.dtype == np.float32
    assert array.base is not None and not array.flags.writeable  # a view, not a copy
    assert array.ravel().tolist() == data.tolist()


def test_mixed_json_and_binary_inputs_consume_the_body_in_order() -> None:
    body, n = binary(
        {
            "inputs": [
                {
                    "name": "a",
                    "datatype": "INT32",
                    "shape": [2],
                    "parameters": {"binary_data_size": 8},
                },
                {"name": "b", "datatype": "BOOL", "shape": [2], "data": [True, False]},
                {
                    "name": "c",
                    "datatype": "UINT16",
                    "shape": [1],
                    "parameters": {"binary_data_size": 2},
                },
            ]
        },
        struct.pack("<ii", -1, 2),
        struct.pack("<H", 65535),
    )
    inputs = decode_request(body, n).inputs
    assert inputs["a"].tolist() == [-1, 2]
    assert inputs["b"].tolist() == [True, False]
    assert inputs["c"].tolist() == [65535]


def test_bytes_elements_are_length_prefixed_in_binary() -> None:
    blob = b"".join(struct.pack("<I", len(s)) + s for s in (b"ab", b"", b"\xff\x00"))
    body, n = binary(
        {
            "inputs": [
                {
                    "name": "s",
                    "datatype": "BYTES",
                    "shape": [3],
                    "parameters": {"binary_data_size": len(blob)},
                }
            ]
        },
        blob,
    )
    assert decode_request(body, n).inputs["s"].tolist() == [b"ab", b"", b"\xff\x00"]


def test_bytes_element_overrunning_its_tensor_is_rejected() -> None:
    blob = struct.pack("<I", 100) + b"short"
    body, n = binary(
        {
            "inputs": [
                {
                    "name": "s",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": len(blob)},
                }
            ]
        },
        blob,
    )
    with pytest.raises(InvalidInput, match="overruns"):
        decode_request(body, n)


def test_json_ints_are_accepted_for_floats_but_floats_not_for_ints() -> None:
    ok = {"inputs": [{"name": "x", "datatype": "FP16", "shape": [2], "data": [1, 2.5]}]}
    assert decode_request(orjson.dumps(ok), None).inputs["x"].dtype == np.float16
    bad = {"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [1.5]}]}
    with pytest.raises(InvalidInput, match="not valid INT64"):
        decode_request(orjson.dumps(bad), None)


def test_input_given_twice_is_rejected() -> None:
    tensor = {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}
    with pytest.raises(InvalidInput, match="given twice"):
        decode_request(orjson.dumps({"inputs": [tensor, tensor]}), None)


def test_both_data_and_binary_size_is_rejected() -> None:
    doc = {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": [1],
                "data": [1],
                "parameters": {"binary_data_size": 4},
            }
        ]
    }
    body, n = binary(doc, bytes(4))
    with pytest.raises(InvalidInput, match="both 'data' and binary_data_size"):
        decode_request(body, n)


def test_output_selection_resolves_binary_flags_against_the_request_default() -> None:
    doc = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "b"}, {"name": "a", "parameters": {"binary_data": False}}],
    }
    request = decode_request(orjson.dumps(doc), None)
    assert select_outputs(request, ["a", "b"]) == [
        OutputRequest("b", True),
        OutputRequest("a", False),
    ]


def test_response_puts_binary_outputs_after_the_json_header() -> None:
    outputs = {"y": np.array([[1.5, -2.0]], np.float32), "s": np.array(["hé", "x"], dtype=object)}
    body, n = encode_response(
        "m", "1", "id-1", outputs, [OutputRequest("y", True), OutputRequest("s", False)]
    )
    assert n is not None
    header = json.loads(body[:n])
    assert header["id"] == "id-1" and header["model_name"] == "m"
    y, s = header["outputs"]
    assert y == {
        "name": "y",
        "datatype": "FP32",
        "shape": [1, 2],
        "parameters": {"binary_data_size": 8},
    }
    assert s == {"name": "s", "datatype": "BYTES", "shape": [2], "data": ["hé", "x"]}
    assert np.frombuffer(body[n:], np.float32).tolist() == [1.5, -2.0]


def test_json_only_response_has_no_header_length_and_exact_floats() -> None:
    values = np.random.default_rng(0).standard_normal(50).astype(np.float32)
    body, n = encode_response("m", "1", None, {"y": values}, [OutputRequest("y", False)])
    assert n is None
    doc = json.loads(body)
    assert "id" not in doc
    np.testing.assert_array_equal(np.array(doc["outputs"][0]["data"], np.float32), values)


def test_binary_bytes_output_is_length_prefixed() -> None:
    body, n = encode_response(
        "m", "1", None, {"s": np.array([b"\xff", b"ok"], dtype=object)}, [OutputRequest("s", True)]
    )
    assert body[n:] == struct.pack("<I", 1) + b"\xff" + struct.pack("<I", 2) + b"ok"


def test_non_utf8_bytes_output_requested_as_json_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="request it with binary_data"):
        encode_response(
            "m", "1", None, {"s": np.array([b"\xff"], dtype=object)}, [OutputRequest("s", False)]
        )

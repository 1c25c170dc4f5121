"""ModelInferRequest to numpy and back, without a server: typed contents, raw bytes, errors."""

import numpy as np
import pytest
from kinfer_runtime.errors import InvalidInput
from kinfer_runtime.schemas.grpc_codec import decode_infer_request, encode_infer_response
from kinfer_runtime.schemas.inference import OutputRequest
from kinfer_runtime.schemas.proto import grpc_service_pb2 as pb


def request(**tensors: tuple[str, list[int], dict[str, list[object]]]) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="m")
    for name, (datatype, shape, contents) in tensors.items():
        tensor = message.inputs.add(name=name, datatype=datatype, shape=shape)
        for field, values in contents.items():
            getattr(tensor.contents, field).extend(values)
    return message


def test_typed_contents_become_arrays_of_the_declared_datatype() -> None:
    decoded = decode_infer_request(
        request(
            small=("INT8", [2], {"int_contents": [-128, 127]}),
            flag=("BOOL", [1, 2], {"bool_contents": [True, False]}),
            text=("BYTES", [1], {"bytes_contents": [b"hi"]}),
        )
    )
    assert decoded.inputs["small"].dtype == np.int8
    assert decoded.inputs["small"].tolist() == [-128, 127]
    assert decoded.inputs["flag"].shape == (1, 2)
    assert decoded.inputs["text"].tolist() == [b"hi"]


def test_raw_contents_are_a_view_of_the_message_bytes() -> None:
    message = request(x=("FP32", [2, 2], {}))
    message.raw_input_contents.append(np.arange(4, dtype="<f4").tobytes())
    array = decode_infer_request(message).inputs["x"]
    assert array.tolist() == [[0, 1], [2, 3]]
    assert not array.flags.owndata  # np.frombuffer over the bytes protobuf returned


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (request(x=("INT8", [1], {"int_contents": [300]})), "out of range for INT8"),
        (request(x=("FP16", [1], {})), "FP16 data must be sent as raw_input_contents"),
        (request(x=("FP32", [3], {"fp32_contents": [1.0]})), "1 elements but shape [3] needs 3"),
        (request(x=("FP32", [-1], {})), "non-negative"),
        (request(x=("COMPLEX", [1], {})), "unsupported datatype"),
        (pb.ModelInferRequest(), "non-empty"),
    ],
)
def test_malformed_requests_are_invalid_input(message: pb.ModelInferRequest, reason: str) -> None:
    with pytest.raises(InvalidInput) as info:
        decode_infer_request(message)
    assert reason in str(info.value)


def test_raw_contents_for_only_some_inputs_are_invalid() -> None:
    message = request(a=("FP32", [1], {}), b=("FP32", [1], {}))
    message.raw_input_contents.append(b"\0" * 4)
    with pytest.raises(InvalidInput, match="give every input raw, or none"):
        decode_infer_request(message)


def test_priority_and_timeout_come_from_int64_or_uint64_parameters() -> None:
    message = request(x=("FP32", [1], {"fp32_contents": [1.0]}))
    message.parameters["priority"].uint64_param = 2
    message.parameters["timeout"].int64_param = 5000
    decoded = decode_infer_request(message)
    assert (decoded.priority, decoded.timeout_us) == (2, 5000)
    message.parameters["timeout"].string_param = "soon"
    with pytest.raises(InvalidInput, match="'timeout' must be a non-negative integer"):
        decode_infer_request(message)


def test_response_carries_every_selected_output_raw_in_order() -> None:
    outputs = {"b": np.array([b"x", b"yz"], dtype=object), "a": np.ones((1, 2), np.float16)}
    selected = [OutputRequest("a", True), OutputRequest("b", True)]
    response = encode_infer_response("m", "1", "id-1", outputs, selected)
    assert (response.model_name, response.model_version, response.id) == ("m", "1", "id-1")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("a", "FP16", [1, 2]),
        ("b", "BYTES", [2]),
    ]
    assert response.raw_output_contents[0] == np.ones(2, "<f2").tobytes()
    assert response.raw_output_contents[1] == b"\x01\0\0\0x\x02\0\0\0yz"

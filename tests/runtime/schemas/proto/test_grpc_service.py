"""The checked-in protobuf modules: fresh, and wire-compatible with Triton's own definitions."""

import shutil
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor
from grpc_tools import protoc
from kinfer_runtime.routes.grpc import SERVICE_NAME, InferenceServicer, method_handlers
from kinfer_runtime.schemas.proto import grpc_service_pb2 as ours
from tritonclient.grpc import service_pb2 as triton

RUNTIME = Path(__file__).parents[4] / "runtime"
PROTO = Path("kinfer_runtime/schemas/proto/grpc_service.proto")
GENERATED = ("grpc_service_pb2.py", "grpc_service_pb2.pyi")


def test_generated_modules_match_the_proto(tmp_path: Path) -> None:
    (tmp_path / PROTO).parent.mkdir(parents=True)
    shutil.copy(RUNTIME / PROTO, tmp_path / PROTO)
    args = ["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}"]
    assert protoc.main([*args, str(tmp_path / PROTO)]) == 0
    for name in GENERATED:
        fresh = (tmp_path / PROTO.parent / name).read_text()
        checked_in = (RUNTIME / PROTO.parent / name).read_text()
        assert checked_in == fresh, (
            f"{name} is stale: regenerate it as the header of grpc_service.proto says"
        )


def _fields(message: Descriptor) -> dict[str, tuple[int, int, bool, str]]:
    return {
        f.name: (
            f.number,
            f.type,
            f.is_repeated,
            f.message_type.name if f.message_type else "",
        )
        for f in message.fields
    }


def _messages(descriptor: Descriptor) -> list[Descriptor]:
    found = [descriptor]
    for nested in descriptor.nested_types:
        found += _messages(nested)
    return found


@pytest.mark.parametrize("name", sorted(ours.DESCRIPTOR.message_types_by_name))
def test_every_message_has_tritons_field_numbers_and_types(name: str) -> None:
    """Field numbers and types are the wire format; Triton's client is the reference."""
    for message in _messages(ours.DESCRIPTOR.message_types_by_name[name]):
        full_name = message.full_name.replace("kinfer.oip.v2.", "inference.")
        reference = triton.DESCRIPTOR.pool.FindMessageTypeByName(full_name)
        ours_fields, their_fields = _fields(message), _fields(reference)
        # Ours may leave out fields of Triton's extensions, never change one.
        assert ours_fields == {k: their_fields[k] for k in ours_fields}, full_name


def test_every_rpc_of_the_proto_is_served_under_the_protocols_service_name() -> None:
    assert triton.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name == SERVICE_NAME
    rpcs = {m.name for m in ours.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods}
    servicer = InferenceServicer(None, None, None, None)  # type: ignore[arg-type]
    assert set(method_handlers(servicer)) == rpcs

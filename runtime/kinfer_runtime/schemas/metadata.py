"""Wire models for the small, non-tensor responses (pydantic is fine off the hot path)."""

from pydantic import BaseModel

from kinfer_runtime.backends.base import TensorSpec

__all__ = [
    "LiveResponse",
    "ModelMetadataResponse",
    "ModelReadyResponse",
    "ReadyResponse",
    "ServerMetadataResponse",
    "TensorMetadata",
]


class ServerMetadataResponse(BaseModel):
    name: str
    version: str
    extensions: list[str]


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]

    @classmethod
    def of(cls, spec: TensorSpec) -> "TensorMetadata":
        return cls(name=spec.name, datatype=spec.datatype, shape=list(spec.shape))


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]

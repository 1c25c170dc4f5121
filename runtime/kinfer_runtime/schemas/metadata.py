"""Wire models for the small, non-tensor responses (pydantic is fine off the hot path)."""

from pydantic import BaseModel

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


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]

"""Models served by this process, looked up by name and optional version."""

from collections.abc import Iterator

from kinfer_runtime.dataplane.model import ServedModel
from kinfer_runtime.errors import ModelNotFound

__all__ = ["ModelRegistry"]


class ModelRegistry:
    def __init__(self) -> None:
        self._models: dict[str, ServedModel] = {}

    def add(self, model: ServedModel) -> None:
        self._models[model.name] = model

    def get(self, name: str, version: str | None = None) -> ServedModel:
        model = self._models.get(name)
        if model is None:
            raise ModelNotFound(f"model {name!r} is not served here")
        if version is not None and version != model.version:
            raise ModelNotFound(f"model {name!r} has no version {version!r}")
        return model

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models.values())

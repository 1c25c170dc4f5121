"""A typed view of one InferenceModel object as read from the API server."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kinfer_operator.api import GROUP, KIND, VERSION, InferenceModelSpec

__all__ = ["InferenceModel"]


@dataclass(frozen=True)
class InferenceModel:
    """Identity and parsed spec of an InferenceModel; builders take this, never raw dicts."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: InferenceModelSpec

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> InferenceModel:
        """Parse a custom object; raises pydantic.ValidationError when the spec is invalid."""
        meta = body["metadata"]
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            generation=int(meta.get("generation", 1)),
            spec=InferenceModelSpec.model_validate(body.get("spec") or {}),
        )

    @property
    def owner_reference(self) -> dict[str, Any]:
        """Controller reference that makes every child garbage-collected with its model."""
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

"""Checks only the operator can make: objects the spec refers to must exist.

The API server validates one object at a time, so a Secret or PVC named in the spec can be
missing while the manifest is perfectly valid. Deploying anyway would only produce pods stuck in
ContainerCreating; instead the model reports InvalidSpec and names the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kinfer_operator.model import InferenceModel

__all__ = ["Reference", "references_of"]


@dataclass(frozen=True)
class Reference:
    """One object the spec depends on."""

    kind: Literal["Secret", "PersistentVolumeClaim"]
    name: str
    key: str | None
    field: str
    """The spec field that names it, for the error message."""


def references_of(model: InferenceModel) -> list[Reference]:
    """Objects in the model's namespace that must exist before pods can start."""
    refs: list[Reference] = []
    source = model.spec.model
    creds = source.credentials
    keys = source.object_store_keys
    if creds is not None and keys is not None:
        refs.extend(Reference("Secret", creds.name, key, "spec.model.credentials") for key in keys)
    elif creds is not None:
        refs.append(Reference("Secret", creds.name, creds.key, "spec.model.credentials"))
    if source.uri.startswith("pvc://"):
        claim = source.uri.removeprefix("pvc://").partition("/")[0]
        refs.append(Reference("PersistentVolumeClaim", claim, None, "spec.model.uri"))
    if source.cache is not None:
        refs.append(
            Reference(
                "PersistentVolumeClaim", source.cache.claim_name, None, "spec.model.cache.claimName"
            )
        )
    return refs

"""Objects the spec refers to that the API server cannot check: PVCs and credentials Secrets.

The API server validates one object at a time, so a Secret or PVC named in the spec can be
missing while the manifest is perfectly valid. The model then reports InvalidSpec and names
the field.

PVCs are checked before anything is deployed (`references_of`, one `get` each). Secrets are
never read: the operator has no right on Secrets at all. Pods and fill Jobs name the
credentials Secret in `secretKeyRef`s, and the kubelet reports a missing Secret or key as
`CreateContainerConfigError` on the container; `secret_problem` turns that message into the
same field-naming error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from kinfer_operator.model import InferenceModel

__all__ = ["CONFIG_ERROR", "Reference", "references_of", "secret_problem"]

CONFIG_ERROR = "CreateContainerConfigError"
"""The kubelet's waiting reason for a container whose env or volumes cannot be resolved."""

_SECRET_NOT_FOUND = re.compile(r'secret "(?P<name>[^"]+)" not found', re.IGNORECASE)
_KEY_NOT_FOUND = re.compile(
    r"couldn't find key (?P<key>\S+) in Secret (?P<namespace>[^/\s]+)/(?P<name>[^\s,;]+)"
)


@dataclass(frozen=True)
class Reference:
    """One object the spec depends on that is checked before deploying."""

    kind: Literal["PersistentVolumeClaim"]
    name: str
    field: str
    """The spec field that names it, for the error message."""


def references_of(model: InferenceModel) -> list[Reference]:
    """Claims in the model's namespace that must exist before pods can start."""
    refs: list[Reference] = []
    source = model.spec.model
    if source.uri.startswith("pvc://"):
        claim = source.uri.removeprefix("pvc://").partition("/")[0]
        refs.append(Reference("PersistentVolumeClaim", claim, "spec.model.uri"))
    if source.cache is not None:
        refs.append(
            Reference(
                "PersistentVolumeClaim", source.cache.claim_name, "spec.model.cache.claimName"
            )
        )
    return refs


def secret_problem(model: InferenceModel, kubelet_message: str | None) -> str | None:
    """The spec error behind a kubelet `CreateContainerConfigError` message, naming the field,
    the Secret and the key; None when the message is not about a Secret."""
    text = kubelet_message or ""
    creds = model.spec.model.credentials
    missing = _SECRET_NOT_FOUND.search(text)
    no_key = _KEY_NOT_FOUND.search(text)
    if missing is not None:
        name = missing["name"]
        problem = f"Secret {name!r} not found in namespace {model.namespace}"
    elif no_key is not None:
        name = no_key["name"]
        problem = f"Secret {name!r} has no key {no_key['key']!r}"
    else:
        return None
    field = "spec.model.credentials" if creds is not None and creds.name == name else None
    return f"{field}: {problem}" if field else problem

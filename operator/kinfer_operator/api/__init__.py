"""The InferenceModel API: pydantic models that are the single source of truth for the CRD."""

from kinfer_operator.api.spec import (
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    InferenceModelSpec,
)
from kinfer_operator.api.status import Condition, InferenceModelStatus

__all__ = [
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "Condition",
    "InferenceModelSpec",
    "InferenceModelStatus",
]

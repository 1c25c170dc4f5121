"""Shared pydantic configuration for API types.

Fields are snake_case in Python and camelCase on the wire, as Kubernetes APIs are. Attribute
docstrings become schema descriptions, so `kubectl explain` shows the same text a developer reads.
"""

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, JsonValue, PlainSerializer
from pydantic.alias_generators import to_camel


def format_time(moment: datetime) -> str:
    """metav1.Time's wire format: RFC 3339 in UTC, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Timestamp = Annotated[AwareDatetime, PlainSerializer(format_time, return_type=str)]
"""A point in time: a datetime in code, metav1.Time on the wire (one type end to end)."""


class ApiModel(BaseModel):
    """Base for every API object: camelCase aliases, docstrings as descriptions, no extra keys."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="forbid",
        frozen=True,
    )


def cel(*rules: dict[str, str]) -> ConfigDict:
    """Model config that attaches CEL `x-kubernetes-validations` to the model's schema.

    Pydantic merges this with the parent's config, so subclasses keep the ApiModel settings.
    """
    validations: list[JsonValue] = [dict(r) for r in rules]
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": validations})


def rule(expression: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One CEL rule; `field_path` makes the API server name the offending field."""
    out = {"rule": expression, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out

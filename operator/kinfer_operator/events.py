"""Kubernetes Events the operator posts about an InferenceModel."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Event"]


@dataclass(frozen=True)
class Event:
    """A core/v1 Event to post: Normal or Warning, a CamelCase reason, a message."""

    type: str
    reason: str
    message: str

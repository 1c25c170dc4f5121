"""InferenceModel status: rebuilt from the observed world on every reconcile, never read back
as desired state.

Conditions follow KEP-1623 (`metav1.Condition`) so `kubectl wait --for=condition=Ready`, Argo CD
and Flux (kstatus) read progress correctly. `Reconciling` and `Stalled` are the kstatus
"abnormal-true" conditions; they mirror Progressing and a terminal Degraded.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kinfer_operator.api._base import ApiModel

__all__ = ["Condition", "ConditionStatus", "InferenceModelStatus", "Phase"]

ConditionStatus = Literal["True", "False", "Unknown"]
Phase = Literal["Pending", "Progressing", "Ready", "Degraded", "Failed"]


class Condition(ApiModel):
    """One observation of the InferenceModel's state (metav1.Condition)."""

    type: str = Field(max_length=316)
    """Condition type: Ready, Available, Progressing, Degraded, Reconciling or Stalled."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: str = Field(max_length=1024)
    """CamelCase machine-readable cause, e.g. GPUUnschedulable or ModelLoadFailed."""
    message: str = Field(default="", max_length=32768)
    """Human-readable details."""
    last_transition_time: str
    """When status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """metadata.generation this condition was computed for."""


class InferenceModelStatus(ApiModel):
    """Observed state of a served model."""

    observed_generation: int | None = None
    """metadata.generation the operator last acted on."""
    phase: Phase | None = None
    """One-word summary: Pending, Progressing, Ready, Degraded or Failed."""
    replicas: int | None = None
    """Serving replicas of the stable revision (the scale subresource reads this)."""
    ready_replicas: int | None = None
    """Replicas of the stable revision that pass readiness (model loaded and warm)."""
    selector: str | None = None
    """Label selector of the stable revision's pods, for the scale subresource and HPAs."""
    endpoint: str | None = None
    """In-cluster base URL of the Open Inference Protocol endpoint."""
    stable_revision: str | None = None
    """Hash of model plus runtime template now serving all traffic."""
    stable_model_version: str | None = None
    """spec.model.version of the stable revision."""
    desired_revision: str | None = None
    """Hash of the current spec's model plus runtime template."""
    canary_revision: str | None = None
    """Revision being rolled out, if any."""
    canary_model_version: str | None = None
    """spec.model.version of the canary revision."""
    canary_weight: int | None = None
    """Percent of traffic sent to the canary revision."""
    message: str | None = None
    """The most important thing to know right now."""
    conditions: list[Condition] = Field(default_factory=list)
    """Latest observations, one per type."""

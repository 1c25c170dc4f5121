"""Status: rebuilt from the observed world, never read back as desired state."""

from kinfer_operator.events import Event
from kinfer_operator.status.compute import (
    StatusReport,
    compute_status,
    invalid_status,
    retrying_status,
)
from kinfer_operator.status.conditions import find_condition, set_condition
from kinfer_operator.status.pods import PodDiagnosis, diagnose_pods, pod_creation_reason

__all__ = [
    "Event",
    "PodDiagnosis",
    "StatusReport",
    "compute_status",
    "diagnose_pods",
    "find_condition",
    "invalid_status",
    "pod_creation_reason",
    "retrying_status",
    "set_condition",
]

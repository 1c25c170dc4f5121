"""Status: rebuilt from the observed world, never read back as desired state."""

from kinfer_operator.events import Event
from kinfer_operator.status.compute import (
    StatusReport,
    compute_status,
    invalid_status,
    retrying_status,
)
from kinfer_operator.status.conditions import find_condition, set_condition

__all__ = [
    "Event",
    "StatusReport",
    "compute_status",
    "find_condition",
    "invalid_status",
    "retrying_status",
    "set_condition",
]

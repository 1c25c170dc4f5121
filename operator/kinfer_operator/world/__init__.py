"""The observed world: children and pods as the watches last saw them, and what they say.

Everything here reads observed objects; nothing builds desired ones or talks to the API.
"""

from kinfer_operator.world.observed import DeploymentView, Observed, WriteFailure
from kinfer_operator.world.pods import PodDiagnosis, diagnose_pods, pod_creation_reason
from kinfer_operator.world.routes import (
    RouteWait,
    route_accepts,
    route_problem,
    route_status_problem,
)
from kinfer_operator.world.store import Store, WatchedKind

__all__ = [
    "DeploymentView",
    "Observed",
    "PodDiagnosis",
    "RouteWait",
    "Store",
    "WatchedKind",
    "WriteFailure",
    "diagnose_pods",
    "pod_creation_reason",
    "route_accepts",
    "route_problem",
    "route_status_problem",
]

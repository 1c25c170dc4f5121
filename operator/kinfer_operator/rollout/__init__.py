"""Canary rollouts: explicit state in status, metric analysis, traffic split, decisions."""

from kinfer_operator.rollout.analysis import AnalysisTarget, analysis_queries, run_analysis
from kinfer_operator.rollout.machine import RolloutContext, RolloutDecision, decide
from kinfer_operator.rollout.traffic import ReplicaSplit, replica_split

__all__ = [
    "AnalysisTarget",
    "ReplicaSplit",
    "RolloutContext",
    "RolloutDecision",
    "analysis_queries",
    "decide",
    "replica_split",
    "run_analysis",
]

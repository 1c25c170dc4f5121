"""Level-based reconcile: one entry point for create, update, resume and periodic resync."""

from kinfer_operator.reconcile.plan import Delete, Plan, Scale, plan
from kinfer_operator.reconcile.run import Outcome, Reconciler

__all__ = ["Delete", "Outcome", "Plan", "Reconciler", "Scale", "plan"]

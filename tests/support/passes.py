"""One reconcile pass of the model the factories build (ml/resnet50), and its conditions."""

from __future__ import annotations

from kinfer_operator.reconcile.run import Outcome, Reconciler

from support.fake_kube import FakeKube

__all__ = ["condition", "one_pass"]


def one_pass(reconciler: Reconciler) -> Outcome:
    outcome = reconciler.reconcile("ml", "resnet50")
    assert outcome is not None
    return outcome


def condition(kube: FakeKube, type_: str) -> tuple[str, str, str]:
    """(status, reason, message) of a condition in the model's status."""
    for c in kube.model["status"]["conditions"]:
        if c["type"] == type_:
            return c["status"], c["reason"], c["message"]
    raise AssertionError(f"no {type_} condition")

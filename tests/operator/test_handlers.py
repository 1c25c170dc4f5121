"""handlers._Requeue: one gate for every trigger while a higher-priority peer is active."""

from __future__ import annotations

from typing import Any

from kinfer_operator.handlers import _Requeue


class _Reconciler:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def reconcile(self, namespace: str, name: str, trigger: str) -> Any:
        self.calls.append((namespace, name, trigger))
        return None  # "the model is gone": nothing to requeue


def test_standby_replica_reconciles_nothing_whatever_the_trigger() -> None:
    reconciler = _Reconciler()
    standby = True
    requeue = _Requeue(reconciler, lambda: standby)  # type: ignore[arg-type]
    for trigger in ("model", "deployment", "pod"):
        requeue.run("ns", "m", trigger)
    assert reconciler.calls == []
    assert ("ns", "m") in requeue._timers  # it looks again at the next resync
    requeue.cancel("ns", "m")

    standby = False
    requeue.run("ns", "m", "model")
    assert reconciler.calls == [("ns", "m", "model")]

"""Pure helpers for metav1.Condition lists (the shape of apimachinery's meta.SetStatusCondition)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from kinfer_operator.api.status import Condition, ConditionStatus

__all__ = ["find_condition", "set_condition"]


def find_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    """The condition of the given type, if present."""
    return next((c for c in conditions if c.type == type_), None)


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: datetime,
    observed_generation: int | None = None,
) -> list[Condition]:
    """Return a new list with `type_` set; lastTransitionTime moves only when status changes.

    Keeping the old timestamp for an unchanged status is what makes a steady-state reconcile
    produce a byte-identical status, and so write nothing.
    """
    previous = find_condition(conditions, type_)
    since = now if previous is None or previous.status != status else previous.last_transition_time
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=observed_generation,
    )
    out = [c for c in conditions if c.type != type_]
    out.append(updated)
    return out

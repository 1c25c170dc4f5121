"""The status merge patch: what disappears anywhere in status is removed on the server."""

from __future__ import annotations

from kinfer_operator.reconcile.run import _status_patch


def test_nested_keys_that_disappear_become_null() -> None:
    old = {"phase": "Canary", "rollout": {"step": 1, "stepStartedAt": "T", "weight": 25}}
    new = {"phase": "Canary", "rollout": {"step": 1, "weight": 50}}
    assert _status_patch(old, new) == {
        "phase": "Canary",
        "rollout": {"step": 1, "weight": 50, "stepStartedAt": None},
    }


def test_top_level_keys_that_disappear_become_null_and_lists_are_replaced() -> None:
    old = {"canaryRevision": "abc", "conditions": [{"type": "Ready"}, {"type": "Stalled"}]}
    new = {"conditions": [{"type": "Ready"}]}
    assert _status_patch(old, new) == {"conditions": [{"type": "Ready"}], "canaryRevision": None}

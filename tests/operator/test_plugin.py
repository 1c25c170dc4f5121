"""kubectl kinfer status: what it says about a rollout."""

from __future__ import annotations

from kinfer_operator.plugin import _status

ROLLOUT = {"phase": "Progressing", "revision": "abc", "step": 0, "steps": 2, "weight": 0}


def _model(**rollout: object) -> dict[str, object]:
    return {"metadata": {"name": "m"}, "status": {"rollout": {**ROLLOUT, **rollout}}}


def test_status_names_the_shadow_phase_and_its_share() -> None:
    assert "abc shadow (stable mirrors 20%) weight 0%" in _status(_model(shadowPercent=20))


def test_status_names_the_step_outside_the_shadow_phase() -> None:
    assert "abc step 2/2 weight 50%" in _status(_model(step=1, weight=50))

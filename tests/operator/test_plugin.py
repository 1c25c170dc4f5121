"""`kubectl kinfer`: the cost table (from status.cost facts at a fixed time) and what status
says about a rollout."""

from __future__ import annotations

from typing import Any

from kinfer_operator.plugin import _status, cost_table
from support.gpu_pods import T0


def _model(name: str, cost: list[dict[str, Any]] | None) -> dict[str, Any]:
    status = {"cost": cost} if cost is not None else {}
    return {"metadata": {"namespace": "ml", "name": name}, "status": status}


def test_cost_table_has_a_row_per_revision_and_a_total_per_model() -> None:
    stable = {
        "revision": "aaa",
        "track": "stable",
        "retiredGpuSeconds": 3600,
        "runningGpus": 2,
        "runningGpuStartSum": 2 * T0,
    }
    canary = {"revision": "bbb", "track": "canary", "finishedGpuSeconds": 1800}
    table = cost_table([_model("resnet", [stable, canary]), _model("cpu", None)], T0 + 1800)
    rows = [line.split() for line in table.splitlines()]
    assert rows[0] == ["NAMESPACE", "MODEL", "REVISION", "TRACK", "GPUS", "GPU-HOURS"]
    assert rows[1] == ["ml", "cpu", "-", "-", "0", "0.0000"]
    assert rows[2] == ["ml", "resnet", "aaa", "stable", "2", "2.0000"]  # 1 h + 2 GPUs x 0.5 h
    assert rows[3] == ["ml", "resnet", "bbb", "canary", "0", "0.5000"]
    assert rows[4] == ["ml", "resnet", "(total)", "2", "2.5000"]


def test_cost_grows_with_the_clock_from_the_same_status() -> None:
    cost = [{"revision": "a", "track": "stable", "runningGpus": 1, "runningGpuStartSum": T0}]
    first = cost_table([_model("m", cost)], T0 + 3600).splitlines()[1].split()[-1]
    later = cost_table([_model("m", cost)], T0 + 7200).splitlines()[1].split()[-1]
    assert (first, later) == ("1.0000", "2.0000")


ROLLOUT = {"phase": "Progressing", "revision": "abc", "step": 0, "steps": 2, "weight": 0}


def _rollout_model(**rollout: object) -> dict[str, object]:
    return {"metadata": {"name": "m"}, "status": {"rollout": {**ROLLOUT, **rollout}}}


def test_status_names_the_shadow_phase_and_its_share() -> None:
    assert "abc shadow (stable mirrors 20%) weight 0%" in _status(_rollout_model(shadowPercent=20))


def test_status_names_the_step_outside_the_shadow_phase() -> None:
    assert "abc step 2/2 weight 50%" in _status(_rollout_model(step=1, weight=50))

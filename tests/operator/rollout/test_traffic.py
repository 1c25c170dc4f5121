"""replica_split: replica counts that approximate a canary weight."""

from __future__ import annotations

import pytest
from kinfer_operator.rollout.traffic import (
    ReplicaSplit,
    move_replicas,
    moved_share,
    replica_split,
    reuse_split,
)


@pytest.mark.parametrize("weight", range(1, 100))
@pytest.mark.parametrize("total", [2, 3, 5, 10])
def test_weight_1_to_99_never_rounds_to_zero_or_everything(total: int, weight: int) -> None:
    split = replica_split(total, weight, "ReplicaRatio", autoscaled=False)
    assert 1 <= split.canary <= total - 1
    assert split.canary + split.stable == total


def test_fixed_split_approximates_the_weight() -> None:
    split = replica_split(10, 30, "ReplicaRatio", autoscaled=False)
    assert (split.canary, split.stable) == (3, 7)


def test_single_replica_splits_half_and_half() -> None:
    assert replica_split(1, 10, "ReplicaRatio", autoscaled=False) == replica_split(
        1, 90, "ReplicaRatio", autoscaled=False
    )
    assert replica_split(1, 10, "ReplicaRatio", autoscaled=False).canary == 1


def test_autoscaled_stable_is_never_reduced() -> None:
    split = replica_split(4, 50, "ReplicaRatio", autoscaled=True)
    assert split.stable == 4 and split.canary == 4


def test_gateway_mode_sizes_canary_for_its_share_only() -> None:
    split = replica_split(10, 25, "GatewayAPI", autoscaled=False)
    assert (split.canary, split.stable) == (3, 10)


def test_zero_and_full_weight() -> None:
    assert replica_split(4, 0, "ReplicaRatio", autoscaled=False).canary == 0
    full = replica_split(4, 100, "ReplicaRatio", autoscaled=False)
    assert (full.canary, full.stable) == (4, 0)


# --- reuse: moving replicas under total + maxSurge ---------------------------------------


class _Track:
    """One Deployment in a toy cluster: its replicas and its pods' states."""

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self.pods = ["ready"] * replicas

    def live(self) -> int:
        return sum(p != "terminating" for p in self.pods)

    def ready(self) -> int:
        return self.pods.count("ready")

    def scale(self, replicas: int) -> None:
        """The ReplicaSet controller: start pods, or mark the excess terminating (starting
        ones first)."""
        self.replicas = replicas
        while self.live() < replicas:
            self.pods.append("starting")
        for state in ("starting", "ready"):
            while self.live() > replicas and state in self.pods:
                self.pods[self.pods.index(state)] = "terminating"

    def advance(self) -> None:
        """Starting pods become ready, terminating ones are gone."""
        self.pods = ["ready" for p in self.pods if p != "terminating"]


def _run_move(total: int, target: ReplicaSplit, max_surge: int, to: _Track, source: _Track) -> int:
    """Pass after pass until converged; asserts the bounds at every moment. Passes taken."""
    for passes in range(1, 200):
        move = move_replicas(
            total,
            target,
            max_surge,
            to_ready=to.ready(),
            source_replicas=source.replicas,
            source_pods=len(source.pods),
        )
        to.scale(move.to)
        source.scale(move.source)
        # Every pod counts, including one that is still starting or already terminating.
        assert len(to.pods) + len(source.pods) <= total + max_surge
        assert to.ready() + source.ready() >= min(total, target.canary + target.stable)
        done = (to.replicas, source.replicas) == (target.canary, target.stable)
        if done and to.ready() == target.canary and len(source.pods) == target.stable:
            return passes
        to.advance()
        assert len(to.pods) + len(source.pods) <= total + max_surge
        source.advance()
    raise AssertionError("the move did not converge")


REUSE_TABLE = [
    # (total, weight, maxSurge) -> (canary, stable) once moved
    ((4, 25, 1), (1, 3)),
    ((4, 50, 1), (2, 2)),
    ((4, 75, 2), (3, 1)),
    ((4, 100, 1), (4, 0)),
    ((10, 30, 1), (3, 7)),
    ((10, 90, 3), (9, 1)),
    ((3, 10, 1), (1, 2)),
    ((2, 50, 1), (1, 1)),
    ((1, 10, 1), (1, 1)),
    ((1, 100, 1), (1, 0)),
    ((8, 100, 4), (8, 0)),
]


@pytest.mark.parametrize(("case", "expected"), REUSE_TABLE)
def test_reuse_moves_replicas_and_never_holds_more_than_total_plus_surge(
    case: tuple[int, int, int], expected: tuple[int, int]
) -> None:
    total, weight, max_surge = case
    target = reuse_split(total, weight)
    assert (target.canary, target.stable) == expected
    canary, stable = _Track(0), _Track(total)
    _run_move(total, target, max_surge, to=canary, source=stable)
    assert (canary.replicas, stable.replicas) == expected


@pytest.mark.parametrize(("case", "expected"), REUSE_TABLE)
def test_reuse_rollback_moves_the_replicas_back_within_the_same_bound(
    case: tuple[int, int, int], expected: tuple[int, int]
) -> None:
    total, weight, max_surge = case
    canary, stable = _Track(0), _Track(total)
    _run_move(total, reuse_split(total, weight), max_surge, to=canary, source=stable)
    back = ReplicaSplit(canary=total, stable=0)  # the growing side is stable now
    _run_move(total, back, max_surge, to=stable, source=canary)
    assert (stable.replicas, canary.replicas, len(canary.pods)) == (total, 0, 0)


def test_a_surged_pod_that_never_gets_ready_lets_no_stable_pod_go() -> None:
    target = reuse_split(4, 50)
    first = move_replicas(4, target, 1, to_ready=0, source_replicas=4, source_pods=4)
    assert (first.to, first.source) == (1, 4)
    again = move_replicas(4, target, 1, to_ready=0, source_replicas=4, source_pods=4)
    assert again == first


def test_a_terminating_stable_pod_still_counts_against_the_surge() -> None:
    target = reuse_split(4, 50)
    move = move_replicas(4, target, 1, to_ready=1, source_replicas=3, source_pods=4)
    assert (move.to, move.source) == (1, 3)  # its GPU is not free yet
    move = move_replicas(4, target, 1, to_ready=1, source_replicas=3, source_pods=3)
    assert (move.to, move.source) == (2, 3)


def test_moved_share_is_the_weight_the_moved_replicas_carry() -> None:
    assert moved_share(reuse_split(4, 20)) == 25
    assert moved_share(reuse_split(10, 30)) == 30
    assert moved_share(reuse_split(1, 10)) == 50
    assert moved_share(reuse_split(4, 100)) == 100

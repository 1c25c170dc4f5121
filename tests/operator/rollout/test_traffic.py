"""replica_split: replica counts that approximate a canary weight."""

from __future__ import annotations

import pytest
from kinfer_operator.rollout.traffic import replica_split


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

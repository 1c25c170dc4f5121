"""How many replicas each track gets for a canary weight.

In ReplicaRatio mode the Service spreads requests over ready pods, so the replica ratio *is*
the traffic split, approximately. With a fixed replica count the total stays at N (canary
replicas are taken from stable, but only after they are ready); under an HPA the stable count
belongs to the HPA, so the canary is added on top. In GatewayAPI mode the route carries exact
weights and the canary only needs capacity for its share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["ReplicaSplit", "replica_split", "shadow_split"]


@dataclass(frozen=True)
class ReplicaSplit:
    """Target replicas per track for one weight."""

    canary: int
    stable: int
    """Stable's target once the canary replicas are ready (never reduced before)."""


def replica_split(
    total: int,
    weight: int,
    mode: Literal["ReplicaRatio", "GatewayAPI"],
    autoscaled: bool,
) -> ReplicaSplit:
    """Replicas for a canary `weight` (percent) when stable alone would run `total`."""
    if weight <= 0:
        return ReplicaSplit(canary=0, stable=total)
    if weight >= 100:
        return ReplicaSplit(canary=total, stable=0 if mode == "ReplicaRatio" else total)
    if mode == "GatewayAPI":
        return ReplicaSplit(canary=max(1, math.ceil(total * weight / 100)), stable=total)
    if autoscaled:
        # c / (total + c) ~= weight  =>  c = total * w / (100 - w); at least one pod.
        return ReplicaSplit(canary=max(1, round(total * weight / (100 - weight))), stable=total)
    if total < 2:
        return ReplicaSplit(canary=1, stable=1)  # the nearest split one replica allows: 50%
    # Never round a 1-99 weight to zero or to everything.
    canary = min(max(round(total * weight / 100), 1), total - 1)
    return ReplicaSplit(canary=canary, stable=total - canary)


def shadow_split(total: int, percent: int) -> ReplicaSplit:
    """Replicas for a shadow phase: stable keeps all of them (it serves every user), and the
    candidate gets capacity for the mirrored share on top, at least one replica."""
    return ReplicaSplit(canary=max(1, math.ceil(total * percent / 100)), stable=total)

"""How many replicas each track gets for a canary weight.

In ReplicaRatio mode the Service spreads requests over ready pods, so the replica ratio *is*
the traffic split, approximately. With a fixed replica count the total stays at N (canary
replicas are taken from stable, but only after they are ready); under an HPA the stable count
belongs to the HPA, so the canary is added on top. In GatewayAPI mode the route carries exact
weights and the canary only needs capacity for its share.

With `spec.rollout.canary.capacity.mode: reuse` the canary's replicas are not added but moved:
`reuse_split` is the step's target (the replica ratio, stable keeping the rest) and
`move_replicas` the next move towards it, one that never lets the model hold more than
`total + maxSurge` pods, counting pods that are still starting or still terminating. The same
move, the other way, brings the replicas back on rollback. Only fixed replica counts reuse
(the CRD refuses reuse under an HPA, which owns stable's count).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ReplicaMove",
    "ReplicaSplit",
    "live_pods",
    "move_replicas",
    "moved_share",
    "replica_split",
    "reuse_split",
    "shadow_split",
]


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


def reuse_split(total: int, weight: int) -> ReplicaSplit:
    """reuse: the replicas a step moves to the canary, stable keeping the rest. The weight
    becomes the moved share (see moved_share); one replica splits 1 + 1 (maxSurge >= 1)."""
    return replica_split(total, weight, "ReplicaRatio", autoscaled=False)


def moved_share(split: ReplicaSplit) -> int:
    """The canary weight (percent) that the moved replicas carry: each pod its equal share."""
    pods = split.canary + split.stable
    return 0 if pods == 0 else round(100 * split.canary / pods)


@dataclass(frozen=True)
class ReplicaMove:
    """Replicas to set now on the two Deployments of a move."""

    to: int
    """The growing side (the canary; stable on rollback)."""
    source: int
    """The shrinking side."""


def move_replicas(
    total: int,
    target: ReplicaSplit,
    max_surge: int,
    *,
    to_ready: int,
    source_replicas: int,
    source_pods: int,
) -> ReplicaMove:
    """One move of replicas from `source` towards `target` (its `canary` the growing side's
    final count, `stable` the shrinking side's).

    The source shrinks only by replicas the other side has ready (serving capacity never
    drops below `total`), never grows, and the growing side starts only pods that fit under
    `total + max_surge` next to every source pod still there (a terminating pod still holds
    its GPU). Called every pass with what is observed, it converges: each ready pod lets a
    source pod go, each source pod gone makes room for the next one.
    """
    source = min(source_replicas, max(target.stable, total - to_ready))
    room = total + max_surge - max(source_pods, source)
    return ReplicaMove(to=max(0, min(target.canary, room)), source=max(source, 0))


def live_pods(pods: Iterable[Mapping[str, Any]]) -> int:
    """Pods that hold (or will hold) their resources: every pod not yet Succeeded or Failed,
    starting and terminating ones included."""
    return sum(
        1 for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    )

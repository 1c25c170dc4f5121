"""Who fronts a model's endpoints this pass: one pure decision that everything else reads.

The operator alone writes the model's Service, its EndpointSlices and its Gateway API routes,
and it writes them from this one `Front`. Canary weights, header pins, the shadow pin and
scale-to-zero all land here; none of them writes endpoints of its own.

* `via="pods"`: the `<name>` Service keeps a selector over the model's pods, narrowed to one
  revision (`service_revisions`) whenever an unpinned request must not reach the candidate
  through it:

  - a GatewayAPI canary is in progress: the route carries the declared split, so the
    Service (which in-cluster clients use) serves stable only;
  - a weight-0 step (pinned requests only), in any traffic mode;
  - the shadow phase: pinned to the revision that serves (the candidate only sees mirrors).

  Otherwise (no canary, ReplicaRatio steps, surge rollouts) it selects every revision, and
  in ReplicaRatio mode the replica ratio is the split.
* `via="activator"`: the activator stands in front of the pods (`routing: leastQueue`, or a
  model that scales to zero and has no Ready pod); the Service selects no pod and the
  operator writes its EndpointSlice. Only when an activator is ready to take the traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kinfer_operator.model import InferenceModel

__all__ = ["Front", "decide_front"]


@dataclass(frozen=True)
class Front:
    """Where the model's traffic goes this pass."""

    via: Literal["pods", "activator"]
    service_revisions: tuple[str, ...] | None
    """via="pods": the revisions the `<name>` Service selects; None: every revision."""
    stable_revision: str
    canary_revision: str | None
    canary_weight: int
    """0..100: what the gateway route (or the activator) sends to the canary, unpinned."""

    @property
    def pinned(self) -> str | None:
        """The one revision the Service is pinned to, if it is pinned."""
        revisions = self.service_revisions
        return revisions[0] if revisions is not None and len(revisions) == 1 else None


def decide_front(
    model: InferenceModel,
    serving: str,
    candidate: str | None,
    weight: int,
    *,
    pinned_only_step: bool = False,
    shadow_pin: str | None = None,
    at_zero: bool = False,
    least_queue: bool = False,
    activator_ready: bool = False,
) -> Front:
    """The front for a pass that serves `serving` as stable, with `candidate` beside it at
    canary `weight`.

    `pinned_only_step`: the rollout is at a weight-0 step (pinned requests only).
    `shadow_pin`: the revision the shadow phase pins the Service to.
    `at_zero`: the model has no Ready pod of any revision.
    `least_queue`: the model routes by least queue, which only the activator can do.
    `activator_ready`: an activator is ready to take the model's traffic.
    """
    weight = min(max(weight, 0), 100) if candidate is not None else 0
    autoscaling = model.spec.autoscaling
    scales_to_zero = autoscaling is not None and autoscaling.min_replicas == 0
    if activator_ready and (least_queue or (scales_to_zero and at_zero)):
        return Front("activator", None, serving, candidate, weight)
    rollout = model.spec.rollout
    gateway = rollout is not None and rollout.traffic.mode == "GatewayAPI"
    pin: str | None = None
    if shadow_pin is not None:
        pin = shadow_pin
    elif candidate is not None and (gateway or pinned_only_step):
        # GatewayAPI: the route splits, the Service serves stable. A weight-0 step in any
        # mode: the candidate gets pinned requests alone.
        pin = serving
    return Front("pods", (pin,) if pin is not None else None, serving, candidate, weight)

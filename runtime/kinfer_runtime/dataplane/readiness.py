"""The process's serving phase, which the health endpoints and the data plane both read."""

import enum

__all__ = ["Phase", "Readiness"]


class Phase(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    # SIGTERM received: reported not-ready so Kubernetes stops routing here, yet requests that
    # still arrive are served; none is dropped.
    DRAINING = "draining"
    FAILED = "failed"


class Readiness:
    def __init__(self) -> None:
        self.phase = Phase.LOADING

    @property
    def ready(self) -> bool:
        return self.phase is Phase.READY

    @property
    def serving(self) -> bool:
        """Whether inference requests are accepted (also while draining)."""
        return self.phase in (Phase.READY, Phase.DRAINING)

    @property
    def draining(self) -> bool:
        """SIGTERM received: responses tell keep-alive clients to reconnect elsewhere."""
        return self.phase is Phase.DRAINING

    def mark_ready(self) -> None:
        if self.phase is Phase.LOADING:
            self.phase = Phase.READY

    def begin_drain(self) -> bool:
        """Returns whether the model was serving, i.e. whether there is anything to drain."""
        was_serving = self.phase is Phase.READY
        if self.phase is not Phase.FAILED:
            self.phase = Phase.DRAINING
        return was_serving

    def mark_failed(self) -> None:
        self.phase = Phase.FAILED

"""Domain exceptions.

Layers below the routes raise these and know nothing about HTTP; `routes.errors` maps each one
to a status code in a single place.
"""

__all__ = [
    "HandlerFailed",
    "HandlerInputError",
    "InferenceFailed",
    "InvalidInput",
    "KinferError",
    "MemoryBudgetFull",
    "ModelLoadError",
    "ModelNotFound",
    "ModelNotReady",
    "Overloaded",
    "PayloadTooLarge",
    "QueueFull",
    "QueueTimeout",
]


class KinferError(Exception):
    """Base class: the message is safe to show to the client."""


class InvalidInput(KinferError):
    """The request is malformed or does not match the model's signature."""


class ModelNotFound(KinferError):
    """No model (or model version) with that name is served here."""


class ModelNotReady(KinferError):
    """The model is known but not loaded yet, or is shutting down."""

    retry_after_s = 1


class Overloaded(KinferError):
    """The request did not complete in time; retrying later may succeed."""

    retry_after_s = 1
    reason = "request_timeout"  # the `reason` label of the rejection counter


class QueueFull(Overloaded):
    """No room in the queue at the request's priority level."""

    reason = "queue_full"


class MemoryBudgetFull(Overloaded):
    """The request bodies already in flight hold the memory this one needs; it was not read."""

    reason = "memory_budget"


class QueueTimeout(Overloaded):
    """The request's own queue timeout passed before a batch took it; it never ran."""

    reason = "queue_timeout"


class PayloadTooLarge(KinferError):
    """The request body is above the configured limit."""


class InferenceFailed(KinferError):
    """The model itself raised while executing a batch (a server-side fault, not bad input)."""


class ModelLoadError(KinferError):
    """The model could not be fetched, verified, loaded or warmed up; the process must exit."""


class HandlerInputError(InvalidInput):
    """Raised by a bundle's handler when the request is wrong (an undecodable image, a missing
    input): a 400 with the message."""


class HandlerFailed(KinferError):
    """A handler's preprocess or postprocess raised anything else: a 500 naming the exception
    class (its message stays in the runtime's log)."""

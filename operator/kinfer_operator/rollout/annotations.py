"""The annotations a user sets on an InferenceModel to steer its rollout by hand."""

from __future__ import annotations

from kinfer_operator.naming import DOMAIN

__all__ = ["ABORT_ANNOTATION", "PROMOTE_ANNOTATION", "RETRY_ANNOTATION"]

PROMOTE_ANNOTATION = f"{DOMAIN}/promote"
"""Set to the canary revision to skip the remaining steps."""
ABORT_ANNOTATION = f"{DOMAIN}/abort"
"""Set to the canary revision to roll it back now."""
RETRY_ANNOTATION = f"{DOMAIN}/retry"
"""Change to roll a rolled-back revision out again (like spec.rollout.retry, without git)."""

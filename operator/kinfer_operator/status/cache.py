"""What status says while the model cache holds a new revision back (fill running or failed),
and the phase a revision's pods are in while they start."""

from __future__ import annotations

from dataclasses import dataclass

from kinfer_operator.children.modelcache import cache_key, fill_job_name
from kinfer_operator.model import InferenceModel
from kinfer_operator.references import secret_problem
from kinfer_operator.world import Observed
from kinfer_operator.world.fills import fill_state

__all__ = ["CacheWait", "cache_wait", "starting_phase"]


@dataclass(frozen=True)
class CacheWait:
    """The new revision waits on its cache fill; `failed` when the fill gave up."""

    reason: str
    message: str
    failed: bool


def cache_wait(model: InferenceModel, observed: Observed, revision: str) -> CacheWait | None:
    """None unless the revision's Deployment is held back for the cache."""
    source = model.spec.model
    if source.cache is None or source.sha256 is None or observed.deployment(revision):
        return None
    job = fill_job_name(model, cache_key(source.sha256))
    state = fill_state(observed, job)
    claim = source.cache.claim_name
    if state is None:
        return CacheWait("CachingModel", f"Downloading model: starting Job {job}", False)
    if state.phase == "Failed":
        return CacheWait("ModelCacheFailed", state.message, True)
    if state.phase == "Blocked":
        problem = secret_problem(model, state.message)
        if problem is not None:
            return CacheWait("InvalidSpec", f"{problem}: cache-fill Job {job} waits for it", True)
        return CacheWait(
            "CachingModel", f"cache-fill Job {job} cannot start: {state.message}", False
        )
    if state.phase == "Filled":
        return CacheWait("CachingModel", f"Model cached in {claim}: {state.message}", False)
    return CacheWait("CachingModel", f"{state.message} into {claim} (Job {job})", False)


def starting_phase(model: InferenceModel) -> str:
    """What the pods of a revision that is not ready yet are doing."""
    source = model.spec.model
    if source.cache is not None or not source.uri.startswith("http"):
        return "Loading model"
    return "Downloading and loading model"
